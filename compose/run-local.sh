#!/usr/bin/env bash
# Runs the whole Instaface stack on this machine without Docker: makes sure NATS, MariaDB
# and Redis are up (compose/services.sh), builds the binaries, writes the membership, then
# starts the nodes, the gateway (with the monitor UI) and the bot, each with its output
# prefixed by its name, and prints the URL once the gateway answers /healthz.
#
# Ctrl-C (or SIGTERM, SIGHUP) stops everything, in order: the bot, the gateway, then the
# nodes with SIGTERM (a leader hands over before it goes); whatever has not exited after a
# grace period is killed. Only the processes this launcher started are signalled. If the
# gateway exits by itself, everything is stopped; a node that exits (say you `kill -9` the
# leader to watch the failover) is reported and the rest keep running.
#
# Settings (environment):
#   NODES             number of nodes n1…nN (default 5)
#   LISTEN_ADDR       gateway address (default 127.0.0.1:8080)
#   INSTAFACE_PREFIX  NATS subject and Redis key prefix (default instaface)
#   BOT_RATE          bot operations per second (default 20; 0 = no bot). Other bot
#                     settings through its own variables: BOT_CONCURRENCY, BOT_MIX, BOT_SEED…
#   PROFILE           release (default) or debug: which binaries to build and run
#   BUILD             1 (default) builds first; 0 runs the binaries already in target/PROFILE
#   METRICS_PORT_BASE node i serves Prometheus metrics on 127.0.0.1:BASE+i (default 9100;
#                     0 = none)
#   STATE_DIR         where the nodes keep their term and vote across restarts
#                     (default target/instaface-state)
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
export STATE_DIR=${STATE_DIR:-target/instaface-state}

say() { echo "launcher: $*"; }
die() { say "ERROR: $*" >&2; exit 2; }

[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "NODES ($NODES) must be a positive number"
[[ $PROFILE == release || $PROFILE == debug ]] || die "PROFILE ($PROFILE) must be release or debug"
[[ $METRICS_PORT_BASE =~ ^[0-9]+$ ]] || die "METRICS_PORT_BASE ($METRICS_PORT_BASE) must be a port number or 0"
[[ $BOT_RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BOT_RATE ($BOT_RATE) must be a number of operations per second"

SERVICES_COMPOSE_PARSER=0 bash compose/services.sh   # the stack needs no compose parser
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
node_pids=() gateway_pid='' bot_pid=''

# run NAME CMD…: starts CMD in the background with its output prefixed by NAME; the pid in
# $! is CMD's own. Job control (set -m) gives each child a process group of its own, so a
# Ctrl-C at the terminal reaches only this script, which then stops the children in order
# (and the prefixing sed, a child of CMD, lives until CMD's last line is out).
run() {
  local name=$1
  shift
  set -m
  "$@" </dev/null > >(exec sed -u "s/^/[$name] /") 2>&1 &
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

port_base=$METRICS_PORT_BASE
for i in $(seq 1 "$NODES"); do
  metrics=()
  ((port_base == 0)) || metrics=(METRICS_ADDR="127.0.0.1:$((port_base + i))")
  run "n$i" env NODE_ID="n$i" "${metrics[@]}" "$BIN/instaface-node"
  node_pids+=("$!")
done
run gateway "$BIN/instaface-gateway"
gateway_pid=$!
if [[ ! $BOT_RATE =~ ^0+([.]0*)?$ ]]; then
  run bot "$BIN/instaface-bot" --rate "$BOT_RATE"
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
  sleep 0.2
  waited=$((waited + 1))
  ((waited % 150 == 0)) && say "still waiting for $url/healthz"
done
say "monitor and API at $url/ — Ctrl-C stops everything"
say "eavesdrop: $BIN/instaface-node tap --only events   (INSTAFACE_PREFIX=$INSTAFACE_PREFIX)"

# Watch the children: a node may exit (and the rest carry on); the gateway may not.
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
done
