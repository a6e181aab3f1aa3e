#!/usr/bin/env bash
# Runs the whole Instaface stack on this machine without Docker: makes sure MariaDB and
# Redis are up and nats-server is installed (compose/services.sh), builds the binaries,
# writes the membership, starts a NATS server of its own with a user per role, then the
# nodes, the gateway (with the monitor UI) and the bot, each with its output prefixed by
# its name, and prints the URL once the gateway answers /healthz.
#
# NATS: the launcher's server listens on 127.0.0.1:NATS_PORT with the users of
# compose/nats-auth.sh (node, gateway, bot, observer; each allowed only what its role
# does). Their passwords are made on the first start into NATS_SECRETS (mode 0600) and
# reused afterwards; delete that file to have new ones made. Each process connects as its
# role's user with NATS_INBOX_PREFIX=_INBOX_<role>. With NATS_URL set, every process uses
# that as it is and the launcher starts no NATS server (nor roles).
#
# Ctrl-C (or SIGTERM, SIGHUP) stops everything, in order: the bot, the gateway, then the
# nodes with SIGTERM (a leader hands over before it goes), then the NATS server; whatever
# has not exited after a grace period is killed. Only the processes this launcher started
# are signalled. If the gateway or the NATS server exits by itself, everything is stopped;
# a node that exits (say you `kill -9` the leader to watch the failover) is reported and
# the rest keep running.
#
# Settings (environment):
#   NODES             number of nodes n1…nN (default 5)
#   SHARDS            shards of the graph (default 1). With more, unless SHARD_MYSQL_URLS is
#                     set, shard k's database is instaface_s<k> (shard 0's: instaface) as root
#                     on the MariaDB at 127.0.0.1:3306 for even k and at :3307 for odd k (the
#                     second server compose/services.sh runs; MYSQL_URL is then not used).
#                     With one shard, or SHARD_MYSQL_URLS set, no second server is started.
#   LISTEN_ADDR       gateway address (default 127.0.0.1:8080)
#   INSTAFACE_PREFIX  NATS subject and Redis key prefix (default instaface)
#   BOT_RATE          bot operations per second (default 20; 0 = no bot). Other bot
#                     settings through its own variables: BOT_CONCURRENCY, BOT_MIX, BOT_SEED…
#   PROFILE           release (default) or debug: which binaries to build and run
#   BUILD             1 (default) builds first; 0 runs the binaries already in target/PROFILE
#   METRICS_PORT_BASE node i serves Prometheus metrics on 127.0.0.1:BASE+i (default 9100;
#                     0 = none)
#   NODE_GATEWAY_PORT_BASE  node i serves the REST API too on 127.0.0.1:BASE+i, its cached
#                     reads from its own cache (GATEWAY_LISTEN; as the gateway's NATS role);
#                     default 8080, so n1 is on 8081; 0 = none
#   STATE_DIR         where the nodes keep their term and vote across restarts
#                     (default target/instaface-state)
#   NATS_PORT         the launcher's NATS server's port on 127.0.0.1 (default 4322)
#   NATS_SECRETS      the file of the NATS users' passwords and the cluster key
#                     (default target/instaface-secrets.env)
#   CLUSTER_KEY       the key nodes and the gateway authenticate cluster messages with
#                     (default: made once into NATS_SECRETS)
#   plus anything the binaries read (MYSQL_URL, NATS_URL, REDIS_URL, ADMIN_TOKEN, RUST_LOG…).
set -euo pipefail
# A shell started in the background by a script ignores SIGINT, and bash cannot trap a
# signal ignored on entry: start again with the default handling so Ctrl-C and `kill -INT`
# always stop the stack in order.
if [[ -z ${INSTAFACE_LAUNCHER_REEXEC:-} ]] && env --default-signal=INT true 2>/dev/null; then
  INSTAFACE_LAUNCHER_REEXEC=1 exec env --default-signal=INT,QUIT bash "$0" "$@"
fi
unset INSTAFACE_LAUNCHER_REEXEC
cd "$(dirname "$0")/.."

NODES=${NODES:-5}
export INSTAFACE_PREFIX=${INSTAFACE_PREFIX:-instaface}
export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:8080}
BOT_RATE=${BOT_RATE:-20}
PROFILE=${PROFILE:-release}
BUILD=${BUILD:-1}
METRICS_PORT_BASE=${METRICS_PORT_BASE:-9100}
NODE_GATEWAY_PORT_BASE=${NODE_GATEWAY_PORT_BASE:-8080}
export STATE_DIR=${STATE_DIR:-target/instaface-state}
export SHARDS=${SHARDS:-1}
NATS_PORT=${NATS_PORT:-4322}
NATS_SECRETS=${NATS_SECRETS:-target/instaface-secrets.env}

say() { echo "launcher: $*"; }
die() { say "ERROR: $*" >&2; exit 2; }

[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "NODES ($NODES) must be a positive number"
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "SHARDS ($SHARDS) must be a positive number"
# The second MariaDB (3307) only for shards of our own making.
MYSQL2=0
if ((SHARDS > 1)) && [[ -z ${SHARD_MYSQL_URLS:-} ]]; then
  MYSQL2=1
  urls=()
  for ((k = 0; k < SHARDS; k++)); do
    db=instaface; ((k > 0)) && db=instaface_s$k
    urls+=("mysql://root@127.0.0.1:$((k % 2 ? 3307 : 3306))/$db")
  done
  SHARD_MYSQL_URLS=$(IFS=,; echo "${urls[*]}")
  export SHARD_MYSQL_URLS
fi
[[ $PROFILE == release || $PROFILE == debug ]] || die "PROFILE ($PROFILE) must be release or debug"
[[ $METRICS_PORT_BASE =~ ^[0-9]+$ ]] || die "METRICS_PORT_BASE ($METRICS_PORT_BASE) must be a port number or 0"
[[ $NODE_GATEWAY_PORT_BASE =~ ^[0-9]+$ ]] ||
  die "NODE_GATEWAY_PORT_BASE ($NODE_GATEWAY_PORT_BASE) must be a port number or 0"
[[ $BOT_RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BOT_RATE ($BOT_RATE) must be a number of operations per second"
[[ $NATS_PORT =~ ^[1-9][0-9]*$ ]] && ((NATS_PORT < 65536)) || die "NATS_PORT ($NATS_PORT) must be a port number"

# With NATS_URL set, every process uses it as it is; otherwise the launcher runs its own
# NATS server with a user per role.
OWN_NATS=1
[[ -n ${NATS_URL:-} ]] && OWN_NATS=0

if ((OWN_NATS)); then
  # the stack needs no compose parser, nor the shared NATS server of the tests
  SERVICES_COMPOSE_PARSER=0 SERVICES_NATS=0 SERVICES_MYSQL2=$MYSQL2 bash compose/services.sh
else
  SERVICES_COMPOSE_PARSER=0 SERVICES_MYSQL2=$MYSQL2 bash compose/services.sh
fi
BIN=target/$PROFILE
if [[ $BUILD != 0 ]]; then
  say "building $PROFILE binaries (the first build takes a few minutes)"
  if [[ $PROFILE == release ]]; then
    cargo build --release --bins
  else
    cargo build --bins
  fi
fi
for b in instaface-node instaface-gateway instaface-bot; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run with BUILD=1 (the default) to build it"
done

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ((OWN_NATS)); then
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  [[ -x $NATS_BIN ]] || die "nats-server is missing (compose/services.sh installs it as root)"
  port_open "$NATS_PORT" && die "127.0.0.1:$NATS_PORT is taken (another launcher?): set NATS_PORT to a free port"
  if [[ -e $NATS_SECRETS ]]; then
    secrets_were="from an earlier run"
  else
    secrets_were="made now"
  fi
  sh compose/nats-auth.sh secrets "$NATS_SECRETS" || die "NATS_SECRETS ($NATS_SECRETS) cannot be made or read"
  # secret NAME: a value from the secrets file (not exported: each process gets only the
  # URL of its own role).
  secret() { sed -n "s/^$1=//p" "$NATS_SECRETS" | tail -n 1; }
  NATS_CONF=$(dirname "$NATS_SECRETS")/instaface-nats.$NATS_PORT.conf
  env NATS_NODE_PASSWORD="$(secret NATS_NODE_PASSWORD)" NATS_GATEWAY_PASSWORD="$(secret NATS_GATEWAY_PASSWORD)" \
    NATS_BOT_PASSWORD="$(secret NATS_BOT_PASSWORD)" NATS_OBSERVER_PASSWORD="$(secret NATS_OBSERVER_PASSWORD)" \
    sh compose/nats-auth.sh config "$NATS_CONF" || die "cannot write the NATS configuration $NATS_CONF"
  # The cluster key (messages between nodes, and unplugs, carry its MAC): made once into
  # the same file, unless given.
  if [[ -z ${CLUSTER_KEY:-} ]] && [[ -z $(secret CLUSTER_KEY) ]]; then
    { echo "# The cluster key (CLUSTER_KEY): nodes and the gateway sign their messages with it."
      echo "CLUSTER_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"; } >>"$NATS_SECRETS"
    chmod 600 "$NATS_SECRETS"
  fi
  CLUSTER_KEY=${CLUSTER_KEY:-$(secret CLUSTER_KEY)}
  declare -A role_env=() # role → "NATS_URL=… NATS_INBOX_PREFIX=…" words for `run`
  while read -r role inbox; do
    pw=$(secret "NATS_${role^^}_PASSWORD")
    role_env[$role]="NATS_URL=nats://$role:$pw@127.0.0.1:$NATS_PORT NATS_INBOX_PREFIX=$inbox"
  done < <(sh compose/nats-auth.sh roles)
  unset pw
fi
# role_words ROLE: sets `words` to the environment of ROLE's processes (none without
# roles).
role_words() {
  if ((OWN_NATS)); then
    read -ra words <<<"${role_env[$1]}"
  else
    words=()
  fi
}

mkdir -p "$STATE_DIR" || die "STATE_DIR ($STATE_DIR) cannot be created"
members=$(seq -s, -f 'n%g' 1 "$NODES")
export MEMBERS=$members
read -ra member_ids <<<"${members//,/ }"
registered=$("$BIN/instaface-node" members "${member_ids[@]}")
echo "$registered"
# The membership only grows (a node never campaigns on fewer members than it has seen), so
# ids left from an earlier run with more nodes count towards the quorum.
extra=$(tr ',' '\n' <<<"${registered#*: }" | grep -vxF -f <(tr ',' '\n' <<<"$members") | paste -sd, || true)
if [[ -n $extra ]]; then
  say "warning: the membership of $INSTAFACE_PREFIX also lists $extra (from an earlier run); they count" \
    "towards the quorum. To reset it, stop every node and delete the Redis key $INSTAFACE_PREFIX:members."
fi

declare -A name_of=() # pid → name
node_pids=() gateway_pid='' bot_pid='' nats_pid=''

# run NAME [VAR=VALUE…] CMD…: starts CMD in the background, with the VAR=VALUE pairs in
# its environment (not on a command line, where `ps` would show the passwords in them),
# with its output prefixed by NAME; the pid in $! is CMD's own. Job control (set -m) gives
# each child a process group of its own, so a Ctrl-C at the terminal reaches only this
# script, which then stops the children in order (and the prefixing sed, a child of CMD,
# lives until CMD's last line is out).
run() {
  local name=$1
  shift
  set -m
  (
    while [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
      export "${1?}"
      shift
    done
    exec "$@"
  ) </dev/null > >(exec sed -u "s/^/[$name] /") 2>&1 &
  set +m
  name_of[$!]=$name
}

# alive PID…: the given pids that are still running.
alive() {
  local p
  for p in "$@"; do
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"
  done
  return 0
}

# stop SECONDS PID…: SIGTERM, then SIGKILL for whatever is still there after SECONDS.
stop() {
  local secs=$1
  shift
  local live
  mapfile -t live < <(alive "$@")
  ((${#live[@]})) || return 0
  kill -TERM "${live[@]}" 2>/dev/null
  set -m
  (
    sleep "$secs"
    for p in "${live[@]}"; do
      if kill -0 "$p" 2>/dev/null; then
        echo "launcher: ${name_of[$p]} did not stop within ${secs}s; killing it"
        kill -KILL "$p" 2>/dev/null
      fi
    done
  ) &
  local watchdog=$!
  set +m
  wait "${live[@]}" 2>/dev/null
  kill -TERM -- "-$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  return 0
}

# kill_all: SIGKILL to every child's process group (a second Ctrl-C while stopping).
kill_all() {
  local p
  say "killing everything"
  for p in "${!name_of[@]}"; do
    kill -KILL -- "-$p" 2>/dev/null
  done
}

STOPPING=0
stop_all() {
  ((STOPPING)) && return 0
  STOPPING=1
  trap kill_all INT TERM HUP
  # `run-local.sh | tee log` and Ctrl-C: tee is gone, and writing to it must not kill the
  # launcher halfway through stopping (the children ignore the Ctrl-C; see `run`).
  trap '' PIPE
  set +e
  say "stopping"
  stop 15 "$bot_pid"
  stop 10 "$gateway_pid"
  stop 15 "${node_pids[@]}"
  stop 5 "$nats_pid"
  [[ -n ${NATS_CONF:-} ]] && rm -f "$NATS_CONF"
  # Backstop: anything left in a child's process group (a prefixing sed that is somehow
  # still there) goes too.
  local p
  for p in "${!name_of[@]}"; do
    kill -KILL -- "-$p" 2>/dev/null
  done
  wait 2>/dev/null
  trap - INT TERM HUP
  say "stopped"
}
trap 'stop_all; exit 0' INT TERM HUP
trap 'stop_all' EXIT

if ((OWN_NATS)); then
  say "NATS on 127.0.0.1:$NATS_PORT with a user per role (node, gateway, bot, observer); their" \
    "passwords are in $NATS_SECRETS ($secrets_were; delete it to have new ones made at the next start)"
  run nats "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -c "$NATS_CONF"
  nats_pid=$!
  for ((i = 0; i < 100; i++)); do
    port_open "$NATS_PORT" && break
    [[ -n $(alive "$nats_pid") ]] || die "the NATS server exited at start (see its lines above)"
    sleep 0.1
  done
  port_open "$NATS_PORT" || die "the NATS server does not listen on 127.0.0.1:$NATS_PORT after 10 s"
fi

port_base=$METRICS_PORT_BASE
# Nodes and the gateway hold the cluster key; the bot does not.
key=()
[[ -n ${CLUSTER_KEY:-} ]] && key=(CLUSTER_KEY="$CLUSTER_KEY")
unset CLUSTER_KEY
# The gateway each node serves connects as the gateway role (GATEWAY_NATS_URL, …).
role_words gateway
node_gateway_role=("${words[@]/#/GATEWAY_}")
role_words node
for i in $(seq 1 "$NODES"); do
  metrics=()
  ((port_base == 0)) || metrics=(METRICS_ADDR="127.0.0.1:$((port_base + i))")
  gateway=()
  ((NODE_GATEWAY_PORT_BASE == 0)) ||
    gateway=(GATEWAY_LISTEN="127.0.0.1:$((NODE_GATEWAY_PORT_BASE + i))" "${node_gateway_role[@]}")
  run "n$i" "${words[@]}" "${key[@]}" NODE_ID="n$i" "${metrics[@]}" "${gateway[@]}" "$BIN/instaface-node"
  node_pids+=("$!")
done
role_words gateway
if [[ -z ${ADMIN_TOKEN:-} ]]; then
  # Without a token the gateway only lets loopback clients unplug; this developer stack
  # lets anyone who reaches it (by default that is this machine only).
  export ADMIN_OPEN=${ADMIN_OPEN:-1}
  say "no ADMIN_TOKEN: anyone who reaches the gateway may unplug nodes (ADMIN_OPEN=1); set ADMIN_TOKEN to require one"
fi
run gateway "${words[@]}" "${key[@]}" "$BIN/instaface-gateway"
gateway_pid=$!
if [[ ! $BOT_RATE =~ ^0+([.]0*)?$ ]]; then
  role_words bot
  run bot "${words[@]}" "$BIN/instaface-bot" --rate "$BOT_RATE"
  bot_pid=$!
fi

# The address to reach the gateway at (a wildcard bind is reached on loopback).
host=${LISTEN_ADDR%:*}
port=${LISTEN_ADDR##*:}
case $host in 0.0.0.0 | '') host=127.0.0.1 ;; '[::]') host='[::1]' ;; esac
url="http://$host:$port"

# healthz: true when the gateway answers GET /healthz with 200.
healthz() {
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null -m 2 "$url/healthz" 2>/dev/null
  else
    local h=${host#[}
    h=${h%]}
    (
      exec 3<>"/dev/tcp/$h/$port" || exit 1
      printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
      IFS= read -r -t 2 status <&3 && [[ $status == *" 200 "* ]]
    ) 2>/dev/null
  fi
}

set +e
waited=0
until healthz; do
  if [[ -z $(alive "$gateway_pid") ]]; then
    say "ERROR: the gateway exited before answering $url/healthz (see its lines above)"
    exit 1
  fi
  if ((OWN_NATS)) && [[ -z $(alive "$nats_pid") ]]; then
    say "ERROR: the NATS server exited (see its lines above)"
    exit 1
  fi
  sleep 0.2
  waited=$((waited + 1))
  ((waited % 150 == 0)) && say "still waiting for $url/healthz"
done
say "monitor and API at $url/ — Ctrl-C stops everything"
((NODE_GATEWAY_PORT_BASE == 0)) ||
  say "each node serves the API too (cached reads from its own cache): n1 at http://127.0.0.1:$((NODE_GATEWAY_PORT_BASE + 1))/ … n$NODES at :$((NODE_GATEWAY_PORT_BASE + NODES))"
if ((OWN_NATS)); then
  # As the observer, which may listen to everything under the prefix and publish nothing
  # there.
  say "eavesdrop: (. $NATS_SECRETS; NATS_URL=nats://observer:\$NATS_OBSERVER_PASSWORD@127.0.0.1:$NATS_PORT" \
    "INSTAFACE_PREFIX=$INSTAFACE_PREFIX $BIN/instaface-node tap --only events)"
else
  say "eavesdrop: $BIN/instaface-node tap --only events   (INSTAFACE_PREFIX=$INSTAFACE_PREFIX)"
fi

# Watch the children: a node may exit (and the rest carry on); the gateway and the NATS
# server may not.
while true; do
  who=''
  wait -n -p who
  status=$?
  [[ -n $who ]] || break # no child left
  name=${name_of[$who]:-?}
  say "$name exited (status $status)"
  if [[ $who == "$gateway_pid" ]]; then
    say "ERROR: the gateway is gone"
    exit 1
  fi
  if [[ $who == "$nats_pid" ]]; then
    say "ERROR: the NATS server is gone"
    exit 1
  fi
done
