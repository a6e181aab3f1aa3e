#!/usr/bin/env bash
# Runs the whole Instaface stack on this machine without Docker: makes sure NATS, MariaDB
# and Redis are up (compose/services.sh), builds release binaries, writes the membership,
# then starts five nodes, the gateway (with the monitor UI) and the bot, each with its
# output prefixed by its name. Ctrl-C (or SIGTERM) stops everything, leader last-but-one:
# nodes get SIGTERM so a leader hands over before it goes.
#
# Settings (environment): NODES (default 5), LISTEN_ADDR (127.0.0.1:8080),
# INSTAFACE_PREFIX (instaface), BOT_RATE (ops/s, default 20; 0 = no bot), PROFILE
# (release), plus anything the binaries read (MYSQL_URL, NATS_URL, ADMIN_TOKEN, …).
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-5}
export INSTAFACE_PREFIX=${INSTAFACE_PREFIX:-instaface}
export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:8080}
BOT_RATE=${BOT_RATE:-20}
PROFILE=${PROFILE:-release}

bash compose/services.sh
echo "launcher: building $PROFILE binaries (first build takes a few minutes)"
if [[ $PROFILE == release ]]; then
  cargo build --release --bins
else
  cargo build --bins
fi
BIN=target/$PROFILE

members=$(seq -s, -f 'n%g' 1 "$NODES")
export MEMBERS=$members
"$BIN/instaface-node" members ${members//,/ }

pids=()
# run NAME CMD…: starts CMD with its output prefixed by NAME.
run() {
  local name=$1
  shift
  ( "$@" 2>&1 | sed -u "s/^/[$name] /" ) &
  pids+=($!)
}

stop_all() {
  trap - INT TERM EXIT
  echo "launcher: stopping"
  pkill -TERM -P $$ 2>/dev/null || true
  # Each `run` is a subshell; signal the binaries themselves.
  for name in instaface-bot instaface-gateway instaface-node; do
    pkill -TERM -f "$BIN/$name" 2>/dev/null || true
  done
  local i
  for ((i = 0; i < 100; i++)); do
    pgrep -f "$BIN/instaface-" >/dev/null || break
    sleep 0.1
  done
  pkill -KILL -f "$BIN/instaface-" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "launcher: stopped"
}
trap stop_all INT TERM EXIT

for i in $(seq 1 "$NODES"); do
  run "n$i" env NODE_ID="n$i" METRICS_ADDR="127.0.0.1:$((9100 + i))" "$BIN/instaface-node"
done
run gateway "$BIN/instaface-gateway"
if [[ $BOT_RATE != 0 ]]; then
  run bot "$BIN/instaface-bot" --rate "$BOT_RATE" --duration 24h
fi

echo "launcher: monitor and API at http://$LISTEN_ADDR/ — Ctrl-C stops everything"
wait
