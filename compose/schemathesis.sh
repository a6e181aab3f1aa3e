#!/usr/bin/env bash
# Runs Schemathesis (property-based API testing from the OpenAPI document) against a running
# gateway: its examples, coverage, fuzzing and stateful phases (the stateful one follows the
# document's links: create an entity, then read, patch, associate, list, delete it), every
# check, and fails on any failure and on the warnings that mean the document misstates the
# API (compose/schemathesis.toml). Exits non-zero on any of them.
#
# Start a stack first, e.g. `cargo build --workspace --bins` then
# `BUILD=0 PROFILE=debug NODES=3 BOT_RATE=0 ADMIN_TOKEN=… bash compose/run-local.sh`.
#
# `GET /api/events` is a websocket: an HTTP client that completes its handshake (the
# document states the headers) is left holding a socket it cannot use, so it is left out
# (gateway/tests/api.rs drives it with a websocket client).
#
# The unplug route cuts nodes off (the document's own example names n1), so it gets a run of
# its own at the end, only with ADMIN_TOKEN set (the token the gateway was started with),
# after which every member is plugged back in. Without ADMIN_TOKEN it is left out.
#
# Settings (environment):
#   GATEWAY_URL     the gateway (default http://127.0.0.1:8080)
#   ADMIN_TOKEN     the gateway's admin token: also test the unplug route
#   MAX_EXAMPLES    test cases per operation and phase (default 60)
#   MAX_TIME        time budget of the main run in seconds (default 600; fuzzing and
#                   stateful testing repeat until it is spent, or stop at MAX_EXAMPLES)
#   PHASES          default examples,coverage,fuzzing,stateful
#   SEED            a seed, to repeat a run
#   REPORT_DIR      where the JUnit report goes (default target/schemathesis)
#   ST_VENV         the virtualenv Schemathesis is installed into (default
#                   /opt/instaface-schemathesis; made on first use, from PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8080}
MAX_EXAMPLES=${MAX_EXAMPLES:-60}
MAX_TIME=${MAX_TIME:-600}
PHASES=${PHASES:-examples,coverage,fuzzing,stateful}
REPORT_DIR=${REPORT_DIR:-target/schemathesis}
ST_VENV=${ST_VENV:-/opt/instaface-schemathesis}
ST_VERSION=4.32.5

say() { echo "schemathesis.sh: $*"; }
die() { say "ERROR: $*" >&2; exit 2; }

[[ $MAX_EXAMPLES =~ ^[1-9][0-9]*$ ]] || die "MAX_EXAMPLES ($MAX_EXAMPLES) must be a positive number"
[[ $MAX_TIME =~ ^[1-9][0-9]*$ ]] || die "MAX_TIME ($MAX_TIME) must be a positive number of seconds"

# Schemathesis, pinned, in a virtualenv of its own.
st="$ST_VENV/bin/schemathesis"
if ! "$st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
  say "installing schemathesis $ST_VERSION from PyPI into $ST_VENV"
  command -v python3 >/dev/null || die "python3 is missing (apt-get install python3 python3-venv)"
  if [[ -d $ST_VENV && -n $(ls -A "$ST_VENV") && ! -f $ST_VENV/pyvenv.cfg ]]; then
    die "$ST_VENV is not a virtualenv; refusing to replace it (set ST_VENV elsewhere)"
  fi
  mkdir -p "$(dirname "$ST_VENV")"
  [[ -f $ST_VENV/pyvenv.cfg ]] || python3 -m venv "$ST_VENV" \
    || die "python3 -m venv $ST_VENV failed (Debian: apt-get install python3-venv)"
  "$ST_VENV/bin/python" -m pip --disable-pip-version-check --no-input -q install "schemathesis==$ST_VERSION" \
    || die "pip install schemathesis==$ST_VERSION failed"
fi
say "$("$st" --version)"

# The gateway must answer, with a leader.
for ((i = 0; i < 60; i++)); do
  health=$(curl -fsS "$GATEWAY_URL/healthz" 2>/dev/null || true)
  [[ $health == *'"leader":"'* ]] && break
  sleep 0.5
done
[[ $health == *'"leader":"'* ]] || die "no gateway with a leader at $GATEWAY_URL (/healthz: ${health:-no answer})"
say "gateway: $health"

mkdir -p "$REPORT_DIR"
# The rules JSON Schema cannot state (a template's types over all levels, `to` is not
# `from`), for the generator: compose/schemathesis_hooks.py.
export PYTHONPATH="$PWD/compose${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=schemathesis_hooks
common=(
  --url "$GATEWAY_URL"
  --checks all
  --max-examples "$MAX_EXAMPLES"
  --request-timeout 30
  --workers 1
  --report junit
)
[[ -n ${SEED:-} ]] && common+=(--seed "$SEED")

status=0
say "main run: every operation but the unplug switch and the websocket; phases $PHASES; at most $MAX_EXAMPLES examples, ${MAX_TIME}s"
"$st" --config-file compose/schemathesis.toml run "$GATEWAY_URL/api/openapi.json" "${common[@]}" \
  --phases "$PHASES" --max-time "$MAX_TIME" \
  --exclude-operation-id set_unplugged --exclude-operation-id events \
  --report-junit-path "$REPORT_DIR/junit.xml" || status=$?

if [[ -n ${ADMIN_TOKEN:-} ]]; then
  say "the unplug switch, with the admin token"
  "$st" --config-file compose/schemathesis.toml run "$GATEWAY_URL/api/openapi.json" "${common[@]}" \
    --phases examples,coverage,fuzzing --max-time 120 \
    --include-operation-id set_unplugged \
    -H "Authorization: Bearer $ADMIN_TOKEN" \
    --report-junit-path "$REPORT_DIR/junit-unplug.xml" || status=$?
  # Plug every member back in.
  members=$(curl -fsS "$GATEWAY_URL/api/cluster" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["members"]))')
  for m in $members; do
    curl -fsS -o /dev/null -X PUT "$GATEWAY_URL/api/cluster/nodes/$m/unplugged" \
      -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{"unplugged":false}' \
      || { say "could not plug $m back in"; status=1; }
  done
  say "plugged back in: $members"
else
  say "ADMIN_TOKEN is not set: the unplug switch was left out"
fi

if ((status == 0)); then
  say "PASSED (reports in $REPORT_DIR)"
else
  say "FAILED with status $status (reports in $REPORT_DIR)"
fi
exit "$status"
