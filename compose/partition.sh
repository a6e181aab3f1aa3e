#!/usr/bin/env bash
# A routed NATS cluster whose servers can really be cut off from each other.
#
# Each nats-server runs in a network namespace of its own, joined to the root namespace
# by a veth pair on a bridge:
#
#     root namespace (nodes, gateway, tests, MariaDB, Redis stay on 127.0.0.1)
#       bridge ifpb-<id>  10.77.K.254/24
#         ├─ veth ─► namespace ifp-<name>-0   eth0 10.77.K.1   nats-server s0 :4222 client, :6222 routes, :8222 monitor
#         ├─ veth ─► namespace ifp-<name>-1   eth0 10.77.K.2   nats-server s1
#         └─ …
#
# Processes in the root namespace reach every server's client port (nats://10.77.K.<i+1>:4222);
# the servers reach each other's route ports across the bridge. `cut A B` makes A's
# namespace silently drop every packet arriving from B and B's drop every packet from A
# (a policy-routing `blackhole` rule matching the peer's source address on eth0, ahead of
# the local table): no RST, no ICMP, so the route between them dies the way a real
# partition kills it — by missed PINGs, or TCP giving up on unacknowledged data — in
# about 1.5 s with the settings below, while both keep talking to the root namespace and
# to the other servers. After `heal`, nats-server's own reconnect loop (a dial every ~2 s
# per missing route) restores the route, typically within 0.1-2 s.
# Only iproute2 is needed (no iptables/nft).
#
# Usage: bash compose/partition.sh [--name NAME] [--log-dir DIR] COMMAND [ARGS]
#   up [N]        start N (default 3, at most 50) servers as one cluster, wait until they
#                 all route to each other, print their client URLs
#   urls          the client URLs, one a line (server 0 first)
#   cut A B       cut the network between servers A and B, both ways
#   isolate A     cut server A from every other server (clients still reach it)
#   heal [A [B]]  undo every cut, every cut of A, or the cut between A and B
#   wait [SECS]   wait (default 20 s) until every running server routes to exactly the
#                 servers it is not cut from
#   routes A      the servers A has a route to right now (from its /routez)
#   stop A        kill server A (its namespace stays);  start A  starts it again
#   status        servers, pids, URLs, routes and cuts
#   down          kill the servers, delete the namespaces, veths and bridge (logs stay)
#   ls            the instances on this machine;  prune  tears down the ones whose
#                 owner (PARTITION_OWNER_PID at `up`) has exited
# Servers are numbered from 0. Needs root, iproute2 and nats-server.
#
# Settings (environment):
#   PARTITION_NAME          instance name (default instaface); --name wins. Everything the
#                           instance creates carries it (or a hash of it), so instances
#                           with different names run side by side.
#   PARTITION_LOG_DIR       server logs (default /tmp/instaface-partition/NAME); --log-dir wins
#   PARTITION_NET           the subnet's first three octets (default: the first free 10.77.K)
#   PARTITION_PING_INTERVAL nats-server ping_interval, clients and routes (default 250ms)
#   PARTITION_PING_MAX      nats-server ping_max (default 3): a cut route is dropped after
#                           about interval × (max + 1)
#   PARTITION_TCP_RETRIES2  net.ipv4.tcp_retries2 inside the servers' namespaces only
#                           (default 1: a connection whose data goes unacknowledged dies
#                           after ~1.4 s, where the host default of 15 takes ~15 minutes)
#   PARTITION_OWNER_PID     recorded at `up` for `prune`
#   NATS_SERVER             the nats-server binary (default: PATH, then /usr/sbin/nats-server)
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # ip, and nats-server from Debian's package

NAME=${PARTITION_NAME:-instaface}
LOG_DIR=${PARTITION_LOG_DIR:-}
STATE_ROOT=${PARTITION_STATE_DIR:-/run/instaface-partition}
NET_BASE=10.77
PING_INTERVAL=${PARTITION_PING_INTERVAL:-250ms}
PING_MAX=${PARTITION_PING_MAX:-3}
TCP_RETRIES2=${PARTITION_TCP_RETRIES2:-1}
CLIENT_PORT=4222
ROUTE_PORT=6222
MONITOR_PORT=8222
RULE_PREF=100  # the drop rules; the local table moves behind them, to LOCAL_PREF
LOCAL_PREF=200

say() { echo "partition[$NAME]: $*"; }
die() { echo "partition[$NAME]: ERROR: $*" >&2; exit 1; }

args=()
while (($#)); do
  case $1 in
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --name=*) NAME=${1#--name=}; shift ;;
    --log-dir) LOG_DIR=${2:?--log-dir needs a value}; shift 2 ;;
    --log-dir=*) LOG_DIR=${1#--log-dir=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"
CMD=${1:-}
(($#)) && shift

[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$ ]] \
  || die "instance name '$NAME' must be 1-32 letters, digits, '-' or '_'"
STATE=$STATE_ROOT/$NAME
# Interface names are limited to 15 characters: a short hash of the name keeps them unique.
ID=$(printf %s "$NAME" | md5sum | cut -c1-6)
BRIDGE=ifpb-$ID
ns() { echo "ifp-$NAME-$1"; }
veth() { echo "ifpv-$ID-$1"; }
# Our links carry the instance name as their alias, so a hash collision cannot make one
# instance delete another's links.
ALIAS="instaface-partition:$NAME"
ours() { [[ $(cat "/sys/class/net/$1/ifalias" 2>/dev/null) == "$ALIAS" ]]; }

# --- state ----------------------------------------------------------------------------

have_state() { [[ -f $STATE/n && -f $STATE/net ]]; }
load() {
  have_state || die "instance '$NAME' is not up (bash $0 --name $NAME up)"
  N=$(<"$STATE/n")
  NET=$(<"$STATE/net")
  LOG_DIR=$(<"$STATE/logdir")
}
ip_of() { echo "$NET.$(($1 + 1))"; }
index_of_ip() { local last=${1##*.}; echo $((last - 1)); }
server_arg() { # server_arg VALUE: validates a server index
  [[ $1 =~ ^[0-9]+$ ]] && (($1 < N)) || die "no server '$1' (servers are 0..$((N - 1)))"
}
pid_of() { [[ -f $STATE/s$1.pid ]] && cat "$STATE/s$1.pid" || true; }
# running I: server I's recorded pid is alive and inside I's namespace (so not a reused pid).
running() {
  local pid
  pid=$(pid_of "$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(ip netns identify "$pid" 2>/dev/null) == "$(ns "$1")" ]]
}

need_root() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces); run as root or with sudo"
  command -v ip >/dev/null || die "iproute2 ('ip') is not installed: apt-get install -y iproute2"
}

nats_bin() {
  if [[ -n ${NATS_SERVER:-} ]]; then echo "$NATS_SERVER"; return; fi
  command -v nats-server 2>/dev/null && return
  [[ -x /usr/sbin/nats-server ]] && { echo /usr/sbin/nats-server; return; }
  die "nats-server is not installed (compose/services.sh installs it)"
}

# http_get HOST PORT PATH: the body of an HTTP/1.0 GET (bash /dev/tcp; no curl needed).
http_get() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3
    sed "1,/^\r\{0,1\}$/d" <&3' "$1" "$2" "$3" 2>/dev/null
}

# routes_of I: the indexes of the servers I has a route to, sorted, one a line.
routes_of() {
  local body ips a
  body=$(http_get "$(ip_of "$1")" $MONITOR_PORT /routez) || return 1
  [[ $body == *num_routes* ]] || return 1
  ips=$(sed -n 's/.*"ip": *"\([0-9.]*\)".*/\1/p' <<<"$body")
  for a in $ips; do index_of_ip "$a"; done | sort -n -u
}

# cut_between I J: true when the network between I and J is cut (either way).
drops_from() { # drops_from I J: I's namespace drops what comes from J
  local rules
  # Not `ip … | grep -q`: under pipefail, grep quitting early can fail the pipeline.
  rules=$(ip -n "$(ns "$1")" rule show 2>/dev/null) || return 1
  grep -qF "from $(ip_of "$2") iif eth0 blackhole" <<<"$rules"
}
cut_between() { drops_from "$1" "$2" || drops_from "$2" "$1"; }

# --- topology -------------------------------------------------------------------------

pick_net() {
  if [[ -n ${PARTITION_NET:-} ]]; then
    [[ $PARTITION_NET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "PARTITION_NET must look like 10.77.3"
    echo "$PARTITION_NET"
    return
  fi
  local k taken addrs
  addrs=$(ip -4 -o addr show; ip -4 route show)
  taken=$(cat "$STATE_ROOT"/*/net 2>/dev/null || true)
  for ((k = 0; k < 256; k++)); do
    grep -qxF "$NET_BASE.$k" <<<"$taken" && continue
    grep -qE "(^|[^0-9])${NET_BASE//./\\.}\.$k\.[0-9]" <<<"$addrs" && continue
    echo "$NET_BASE.$k"
    return
  done
  die "no free /24 left in $NET_BASE.0.0/16"
}

# teardown: removes whatever exists of this instance (state or not), quietly.
teardown() {
  local i pid nsname
  # Whatever runs inside our namespaces is ours (our servers); nothing else is signalled.
  for nsname in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ifp-$NAME-[0-9]*$" || true); do
    for pid in $(ip netns pids "$nsname" 2>/dev/null || true); do
      kill -TERM "$pid" 2>/dev/null || true
    done
  done
  for ((i = 0; i < 30; i++)); do
    local alive=0
    for nsname in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ifp-$NAME-[0-9]*$" || true); do
      [[ -n $(ip netns pids "$nsname" 2>/dev/null) ]] && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for nsname in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ifp-$NAME-[0-9]*$" || true); do
    for pid in $(ip netns pids "$nsname" 2>/dev/null || true); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$nsname" 2>/dev/null || true # takes its end of the veth, and so the pair
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^ifpv-$ID-" || true) "$BRIDGE"; do
    if ours "$link"; then ip link del "$link" 2>/dev/null || true; fi
  done
  rm -rf "$STATE"
}

start_server() { # start_server I
  local i=$1 log=$LOG_DIR/s$1.log
  echo "=== $(date -Is) starting s$i in $(ns "$i") ===" >>"$log"
  # setsid: a Ctrl-C in the terminal that ran `up` does not reach the servers. `ip netns
  # exec` and setsid exec in place, so $! is nats-server's pid.
  ip netns exec "$(ns "$i")" setsid "$(nats_bin)" -c "$STATE/s$i.conf" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$STATE/s$i.pid"
}

write_config() { # write_config I
  local i=$1 j routes=""
  for ((j = 0; j < N; j++)); do
    ((j == i)) || routes+="    nats-route://$(ip_of "$j"):$ROUTE_PORT"$'\n'
  done
  cat >"$STATE/s$i.conf" <<EOF
# Written by compose/partition.sh for instance $NAME; server s$i in namespace $(ns "$i").
server_name: "$NAME-s$i"
listen: "$(ip_of "$i"):$CLIENT_PORT"
http: "$(ip_of "$i"):$MONITOR_PORT"
# Short pings, for clients and routes alike: a cut route is closed as stale after about
# ping_interval × (ping_max + 1) without a PONG.
ping_interval: "$PING_INTERVAL"
ping_max: $PING_MAX
cluster {
  name: "$NAME"
  listen: "$(ip_of "$i"):$ROUTE_PORT"
  # Clients stay on the server they were given (no gossiped URLs to fail over to), so a
  # test decides who is on which side of a cut.
  no_advertise: true
  # Explicit routes (below) are retried forever, once a second, by nats-server itself;
  # this bounds only routes learned by gossip.
  connect_retries: 600
  routes: [
$routes  ]
}
EOF
}

wait_routed() { # wait_routed SECONDS
  local secs=$1 started=$SECONDS i j ok want got
  while :; do
    ok=1
    for ((i = 0; i < N; i++)); do
      running "$i" || continue
      want=""
      for ((j = 0; j < N; j++)); do
        ((j != i)) && running "$j" && ! cut_between "$i" "$j" && want+="$j "
      done
      if ! got=$(routes_of "$i"); then ok=0; break; fi
      # shellcheck disable=SC2086 # word splitting normalises both lists
      [[ $(echo $got) == "$(echo $want)" ]] || { ok=0; break; }
    done
    ((ok)) && return 0
    ((SECONDS - started < secs)) || return 1
    sleep 0.1
  done
}

# --- commands -------------------------------------------------------------------------

cmd_up() {
  local n=${1:-3} i
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 50)) || die "up N: N must be 1..50"
  need_root
  nats_bin >/dev/null
  mkdir -p "$STATE_ROOT"
  exec 9>"$STATE_ROOT/.lock"
  flock -w 30 9 || die "could not lock $STATE_ROOT/.lock"
  have_state && die "instance '$NAME' is already up (bash $0 --name $NAME down)"
  # Leftovers of a crashed run with this name would collide: clear them.
  teardown
  N=$n
  NET=$(pick_net)
  LOG_DIR=${LOG_DIR:-/tmp/instaface-partition/$NAME}
  mkdir -p "$STATE" "$LOG_DIR"
  LOG_DIR=$(cd "$LOG_DIR" && pwd)
  echo "$N" >"$STATE/n"
  echo "$NET" >"$STATE/net"
  echo "$LOG_DIR" >"$STATE/logdir"
  echo "${PARTITION_OWNER_PID:-}" >"$STATE/owner"
  trap 'echo "partition[$NAME]: up failed; tearing down" >&2; teardown' EXIT

  ip link add "$BRIDGE" type bridge \
    || die "cannot create bridge $BRIDGE (kernel without bridge support, or another instance's name hashes the same?)"
  ip link set "$BRIDGE" alias "$ALIAS"
  ip addr add "$NET.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 0; i < N; i++)); do
    ip netns add "$(ns "$i")" || die "cannot create network namespace $(ns "$i")"
    ip link add "$(veth "$i")" type veth peer name eth0 netns "$(ns "$i")"
    ip link set "$(veth "$i")" alias "$ALIAS" master "$BRIDGE" up
    ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev eth0
    ip -n "$(ns "$i")" link set eth0 up
    ip -n "$(ns "$i")" link set lo up
    # The kernel's first rule (pref 0) looks up the local table, which would deliver a
    # peer's packets before any drop rule is consulted: move it behind the drop rules.
    ip -n "$(ns "$i")" rule add pref $LOCAL_PREF lookup local
    ip -n "$(ns "$i")" rule del pref 0
    # A server that keeps sending on a cut route never misses a PONG in nats-server 2.9
    # (its own outbound traffic postpones its PINGs), so it would keep the dead route for
    # minutes; TCP gives up on the unacknowledged data instead, after about 1.4 s with one
    # retransmission (this namespace's sysctl only; the host's stays as it is).
    ip netns exec "$(ns "$i")" sh -c "echo $TCP_RETRIES2 >/proc/sys/net/ipv4/tcp_retries2"
  done
  flock -u 9

  for ((i = 0; i < N; i++)); do
    write_config "$i"
    start_server "$i"
  done
  local ok=0
  if wait_routed 20; then
    ok=1
    for ((i = 0; i < N; i++)); do running "$i" || ok=0; done
  fi
  if ((!ok)); then
    for ((i = 0; i < N; i++)); do
      running "$i" && continue
      say "s$i exited; the end of its log ($LOG_DIR/s$i.log):" >&2
      tail -n 5 "$LOG_DIR/s$i.log" >&2
    done
    die "the servers did not all start and route to each other within 20s (logs in $LOG_DIR)"
  fi
  trap - EXIT
  say "$N servers up on $NET.0/24 (root side $NET.254, bridge $BRIDGE), logs in $LOG_DIR"
  for ((i = 0; i < N; i++)); do
    say "  s$i  nats://$(ip_of "$i"):$CLIENT_PORT   (monitor http://$(ip_of "$i"):$MONITOR_PORT, namespace $(ns "$i"))"
  done
  local all=""
  for ((i = 0; i < N; i++)); do all+="${all:+,}nats://$(ip_of "$i"):$CLIENT_PORT"; done
  say "all of them: NATS_URL=$all"
}

cmd_urls() {
  load
  local i
  for ((i = 0; i < N; i++)); do echo "nats://$(ip_of "$i"):$CLIENT_PORT"; done
}

add_drop() { # add_drop I J: I drops packets from J
  drops_from "$1" "$2" && return 0
  ip -n "$(ns "$1")" rule add pref $RULE_PREF from "$(ip_of "$2")" iif eth0 blackhole
}
del_drop() { # del_drop I J
  while drops_from "$1" "$2"; do
    ip -n "$(ns "$1")" rule del pref $RULE_PREF from "$(ip_of "$2")" iif eth0 blackhole
  done
}

cmd_cut() {
  (($# == 2)) || die "usage: cut A B"
  need_root; load
  server_arg "$1"; server_arg "$2"
  (($1 != $2)) || die "cut A B: A and B must differ"
  add_drop "$1" "$2"
  add_drop "$2" "$1"
  say "cut s$1 <-/-> s$2"
}

cmd_isolate() {
  (($# == 1)) || die "usage: isolate A"
  need_root; load
  server_arg "$1"
  local j
  for ((j = 0; j < N; j++)); do
    ((j == $1)) && continue
    add_drop "$1" "$j"
    add_drop "$j" "$1"
  done
  say "isolated s$1 from every other server (clients still reach it)"
}

cmd_heal() {
  need_root; load
  local i j
  case $# in
    0)
      for ((i = 0; i < N; i++)); do
        for ((j = 0; j < N; j++)); do ((i == j)) || del_drop "$i" "$j"; done
      done
      say "healed every cut" ;;
    1)
      server_arg "$1"
      for ((j = 0; j < N; j++)); do
        ((j == $1)) && continue
        del_drop "$1" "$j"
        del_drop "$j" "$1"
      done
      say "healed every cut of s$1" ;;
    2)
      server_arg "$1"; server_arg "$2"
      del_drop "$1" "$2"
      del_drop "$2" "$1"
      say "healed s$1 <---> s$2" ;;
    *) die "usage: heal [A [B]]" ;;
  esac
}

cmd_wait() {
  load
  local secs=${1:-20} started=$SECONDS
  wait_routed "$secs" || die "routes do not match the cuts after ${secs}s (bash $0 --name $NAME status)"
  say "routes match the cuts (waited $((SECONDS - started))s)"
}

cmd_routes() {
  (($# == 1)) || die "usage: routes A"
  load
  server_arg "$1"
  routes_of "$1" | tr '\n' ' ' | sed 's/ $//'
  echo
}

cmd_stop() {
  (($# == 1)) || die "usage: stop A"
  need_root; load
  server_arg "$1"
  local pid i
  pid=$(pid_of "$1")
  if running "$1"; then
    kill -TERM "$pid"
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/s$1.pid"
  say "stopped s$1"
}

cmd_start() {
  (($# == 1)) || die "usage: start A"
  need_root; load
  server_arg "$1"
  running "$1" && die "s$1 is running"
  start_server "$1"
  say "started s$1 (pid $(pid_of "$1"))"
}

cmd_status() {
  load
  local i j state routes cuts
  say "$N servers on $NET.0/24 (root side $NET.254, bridge $BRIDGE), logs in $LOG_DIR"
  for ((i = 0; i < N; i++)); do
    if running "$i"; then
      state="pid $(pid_of "$i")"
      routes=$(routes_of "$i" | tr '\n' ' ' | sed 's/ $//') || routes="?"
    else
      state="stopped"; routes="-"
    fi
    cuts=""
    for ((j = 0; j < N; j++)); do
      ((j != i)) && cut_between "$i" "$j" && cuts+="${cuts:+ }$j"
    done
    printf '  s%-2s nats://%s:%s  %-12s routes to: %-10s cut from: %s\n' \
      "$i" "$(ip_of "$i")" $CLIENT_PORT "$state" "${routes:--}" "${cuts:--}"
  done
}

cmd_down() {
  need_root
  local logs=""
  have_state && logs=$(<"$STATE/logdir")
  teardown
  say "down${logs:+ (logs kept in $logs)}"
}

cmd_ls() {
  local d
  for d in "$STATE_ROOT"/*/; do
    [[ -f $d/n ]] || continue
    echo "$(basename "$d")  $(<"$d/n") servers on $(<"$d/net").0/24  owner pid $(cat "$d/owner" 2>/dev/null)"
  done
}

cmd_prune() {
  need_root
  local d owner
  for d in "$STATE_ROOT"/*/; do
    [[ -f $d/owner ]] || continue
    owner=$(<"$d/owner")
    [[ -n $owner ]] || continue
    kill -0 "$owner" 2>/dev/null && continue
    bash "$0" --name "$(basename "$d")" down
  done
}

case $CMD in
  up) cmd_up "$@" ;;
  urls) cmd_urls "$@" ;;
  cut) cmd_cut "$@" ;;
  isolate) cmd_isolate "$@" ;;
  heal) cmd_heal "$@" ;;
  wait) cmd_wait "$@" ;;
  routes) cmd_routes "$@" ;;
  stop) cmd_stop "$@" ;;
  start) cmd_start "$@" ;;
  status) cmd_status "$@" ;;
  down) cmd_down "$@" ;;
  ls) cmd_ls "$@" ;;
  prune) cmd_prune "$@" ;;
  "") die "no command (bash $0 --help)" ;;
  *) die "unknown command '$CMD' (bash $0 --help)" ;;
esac
