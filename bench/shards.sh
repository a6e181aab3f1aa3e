#!/usr/bin/env bash
# Write throughput with 1, 2 and 4 shards at the same client concurrency, how long the
# leaderships take to spread, and failover with shards.
#
# For each shard count it starts the local launcher's stack (compose/run-local.sh: three
# nodes, roles and cluster key on, no bot) on a prefix and databases of its own — shard k
# on the MariaDB at 3306 for even k and 3307 for odd k, the second server
# compose/services.sh runs — waits for every shard's leader, then until the leaderships
# have spread over the nodes (noting how long that took), runs the bot with
# `--mix create_user=1,rename_user=3` at CONCURRENCY for DURATION, then kills the node
# leading shard 0 with SIGKILL and notes how long until every shard has a leader again.
# One table at the end; the first row is the baseline the others are divided by.
#
# Then reads through the gateway of the users the bot made (wrk: one id a request, and
# four ids a request, split across the shards), and with several shards the lag of
# cross-shard intents: the bot befriends and likes across shards for INTENT_SECONDS, and
# once all are delivered, each intent's time from its commit to the other shard's answer
# is read from the intents tables.
#
# Settings: SHARD_COUNTS (default "1 2 4"), CONCURRENCY (32), DURATION (10s), SEED (7),
# READ_SECONDS (10), INTENT_SECONDS (10). Needs wrk.
# Release binaries must be built (cargo build --release --bins). Nothing else should run.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARD_COUNTS=${SHARD_COUNTS:-"1 2 4"}
CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-10s}
SEED=${SEED:-7}
INTENT_SECONDS=${INTENT_SECONDS:-10}
PORT=${BENCH_PORT:-8181}
NATS_PORT=${BENCH_NATS_PORT:-4422}
SECRETS=target/bench-shards-secrets.env
for b in instaface-node instaface-gateway instaface-bot; do
  [[ -x target/release/$b ]] || { echo "bench: target/release/$b is missing: cargo build --release --bins" >&2; exit 2; }
done

say() { echo "bench: $*" >&2; }
# Both MariaDB servers (the launcher starts the second one only for shards of its own).
SERVICES_COMPOSE_PARSER=0 SERVICES_QUIET=1 bash compose/services.sh
rows=()
launcher=

stop_stack() {
  if [[ -n $launcher ]] && kill -0 "$launcher" 2>/dev/null; then
    kill -INT "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
  launcher=
}
trap stop_stack EXIT

# busy_jiffies: CPU time the whole machine spent busy so far (user+nice+system+irq+softirq+steal), in clock ticks.
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
TICK=$(getconf CLK_TCK)

# cpu_by_command: "command ticks" for every process, CPU time so far summed by command name.
cpu_by_command() {
  for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; echo; done |
    awk 'NF { match($0, /\(.*\)/); comm = substr($0, RSTART + 1, RLENGTH - 2); rest = substr($0, RSTART + RLENGTH + 1);
              split(rest, a, " "); t[comm] += a[12] + a[13] } END { for (c in t) print c, t[c] }'
}

# cpu_split BEFORE AFTER: the commands' shares of the CPU used in between, biggest first.
cpu_split() {
  python3 - "$1" "$2" <<'PY'
import sys
def load(text):
    out = {}
    for line in text.splitlines():
        name, _, ticks = line.rpartition(' ')
        if name:
            out[name] = out.get(name, 0) + int(ticks)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
d = {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0}
total = sum(d.values()) or 1
print(' '.join(f'{k} {v * 100 // total}%' for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:5]))
PY
}

# port_of K: the MariaDB port shard K's database is on (even shards 3306, odd 3307).
port_of() { echo $(($1 % 2 ? 3307 : 3306)); }

# read_bench: "one-id req/s,p99 ms,four-id req/s,p99 ms" through the gateway.
READ_SECONDS=${READ_SECONDS:-10}
read_bench() {
  local ids lua=target/bench-shards-reads.lua out1 out4
  ids=$(curl -fsS "http://127.0.0.1:$PORT/api/random/user?count=400" | python3 -c "import json,sys; print(','.join(map(str, json.load(sys.stdin)['ids'])))")
  cat >"$lua" <<LUA
ids = {${ids}}
four = os.getenv("FOUR") == "1"
request = function()
  local path
  if four then
    path = "/api/entities?ids=" .. ids[math.random(#ids)] .. "," .. ids[math.random(#ids)] .. "," .. ids[math.random(#ids)] .. "," .. ids[math.random(#ids)]
  else
    path = "/api/entities/" .. ids[math.random(#ids)]
  end
  return wrk.format("GET", path)
end
LUA
  # Warm the caches, then measure.
  wrk -t2 -c32 -d2s -s "$lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
  FOUR=1 wrk -t2 -c32 -d2s -s "$lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
  out1=$(wrk -t2 -c32 -d"${READ_SECONDS}s" --latency -s "$lua" "http://127.0.0.1:$PORT" 2>&1)
  out4=$(FOUR=1 wrk -t2 -c32 -d"${READ_SECONDS}s" --latency -s "$lua" "http://127.0.0.1:$PORT" 2>&1)
  python3 - "$out1" "$out4" <<'PY'
import re, sys
def parse(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    p = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return f"{float(rps.group(1)) if rps else 0:.0f},{p:.1f},{non2xx.group(1) if non2xx else 0}"
print(parse(sys.argv[1]) + ";" + parse(sys.argv[2]))
PY
}

# intent_lag PREFIX N: once no intent of the N shard databases is undelivered (30 s at
# most), "count,p50,p99,max" of delivered - created over every intent, in ms.
intent_lag() {
  local prefix=$1 n=$2 q k i
  for ((i = 0; i < 300; i++)); do
    local left=0
    for ((k = 0; k < n; k++)); do
      q="SELECT COUNT(*) FROM ${prefix}_s$k.intents WHERE delivered IS NULL"
      left=$((left + $(mariadb -N -h 127.0.0.1 -P $(port_of $k) -u root -e "$q")))
    done
    ((left == 0)) && break
    sleep 0.1
  done
  for ((k = 0; k < n; k++)); do
    mariadb -N -h 127.0.0.1 -P $(port_of $k) -u root \
      -e "SELECT delivered - created FROM ${prefix}_s$k.intents WHERE delivered IS NOT NULL"
  done | python3 -c "
import sys
v = sorted(int(x) for x in sys.stdin if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else '-'
print(f'{len(v)},{q(0.5)},{q(0.99)},{v[-1] if v else \"-\"}')"
}

# leaders_json: the gateway's per-shard leaders.
leaders_json() { curl -fsS "http://127.0.0.1:$PORT/api/cluster" 2>/dev/null || echo '{}'; }

# all_led N: true when all N shards have a leader.
all_led() {
  leaders_json | python3 -c "import json,sys; d=json.load(sys.stdin); s=d.get('shards',[]); sys.exit(0 if len(s)==$1 and all(x.get('leader') for x in s) else 1)"
}

for n in $SHARD_COUNTS; do
  tag=$RANDOM
  prefix=benchshards${n}x$tag
  urls=()
  for ((k = 0; k < n; k++)); do
    urls+=("mysql://root@127.0.0.1:$(port_of $k)/${prefix}_s$k")
  done
  log=target/bench-shards-$n.log
  say "$n shard(s): starting the stack (log $log)"
  INSTAFACE_PREFIX=$prefix SHARDS=$n SHARD_MYSQL_URLS=$(IFS=,; echo "${urls[*]}") \
    MYSQL_URL=${urls[0]} NODES=3 BOT_RATE=0 BUILD=0 LISTEN_ADDR=127.0.0.1:$PORT \
    NATS_PORT=$NATS_PORT NATS_SECRETS=$SECRETS METRICS_PORT_BASE=0 \
    STATE_DIR=target/bench-shards-state-$tag RUST_LOG=warn \
    bash compose/run-local.sh >"$log" 2>&1 &
  launcher=$!
  for ((i = 0; i < 600; i++)); do all_led "$n" && break; sleep 0.1; done
  all_led "$n" || { say "no leader for every shard within 60 s; see $log"; exit 1; }
  # The leaderships spread over the three nodes (BALANCE_LEADERS: none leads more than
  # ceil(shards / 3)) once the cluster is stable: measure then, and note how long it took.
  led_at=$(date +%s.%N)
  spread=-
  for ((i = 0; i < 300; i++)); do
    if leaders_json | python3 -c "
import json,sys
s=[x['leader'] for x in json.load(sys.stdin).get('shards',[]) if x.get('leader')]
share=-(-$n // 3)
sys.exit(0 if len(s)==$n and max(s.count(x) for x in s)<=share else 1)"; then
      spread=$(python3 -c "print(f'{$(date +%s.%N) - $led_at:.1f}')")
      break
    fi
    sleep 0.1
  done
  bot_pw=$(grep '^NATS_BOT_PASSWORD=' "$SECRETS" | cut -d= -f2-)
  busy_before=$(busy_jiffies)
  procs_before=$(cpu_by_command)
  summary=$(NATS_URL="nats://bot:$bot_pw@127.0.0.1:$NATS_PORT" NATS_INBOX_PREFIX=_INBOX_bot \
    INSTAFACE_PREFIX=$prefix SHARDS=$n RUST_LOG=warn target/release/instaface-bot \
    --mix create_user=1,rename_user=3 --concurrency "$CONCURRENCY" --duration "$DURATION" --seed "$SEED" --json | tail -1)
  busy=$(( $(busy_jiffies) - busy_before ))
  split=$(cpu_split "$procs_before" "$(cpu_by_command)")
  # Reads through the gateway of what the bot made: one id a request (its shard alone),
  # and four ids a request (split across the shards): wrk -t2 -c32 for READ_SECONDS each.
  reads=$(read_bench)
  # Cross-shard associations (several shards): the bot befriends and likes across shards
  # for INTENT_SECONDS; once every intent is delivered, the lag of each from its commit to
  # the other shard's answer (applied and covered there), read from the intents tables.
  lag=-
  if ((n > 1)); then
    NATS_URL="nats://bot:$bot_pw@127.0.0.1:$NATS_PORT" NATS_INBOX_PREFIX=_INBOX_bot \
      INSTAFACE_PREFIX=$prefix SHARDS=$n RUST_LOG=warn target/release/instaface-bot \
      --mix create_user=1,post=1,befriend=4,like=4 --concurrency "$CONCURRENCY" --duration "${INTENT_SECONDS}s" \
      --seed "$SEED" --json >/dev/null
    lag=$(intent_lag "$prefix" "$n")
  fi
  leaders=$(leaders_json | python3 -c "import json,sys; print(','.join(str(s.get('leader')) for s in json.load(sys.stdin)['shards']))")
  # Failover: SIGKILL the node leading shard 0; time until every shard has a leader again.
  victim=$(leaders_json | python3 -c "import json,sys; print(json.load(sys.stdin)['shards'][0]['leader'])")
  start=$(date +%s.%N)
  node_pid=$(for p in $(pgrep -x instaface-node); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "NODE_ID=$victim" &&
       tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "INSTAFACE_PREFIX=$prefix"; then echo "$p"; fi
  done | head -1)
  failover=-
  if [[ -n $node_pid ]]; then
    kill -9 "$node_pid"
    sleep 0.05
    for ((i = 0; i < 400; i++)); do
      if leaders_json | python3 -c "import json,sys; s=json.load(sys.stdin).get('shards',[]); sys.exit(0 if s and all(x.get('leader') and x.get('leader')!='$victim' for x in s) else 1)"; then
        failover=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
        break
      fi
      sleep 0.05
    done
  fi
  rows+=("$n|$summary|$leaders ($spread s)|$failover|$busy|$split|$reads|$lag")
  stop_stack
  for ((k = 0; k < n; k++)); do
    mariadb -h 127.0.0.1 -P $(port_of $k) -u root -e "DROP DATABASE IF EXISTS \`${prefix}_s$k\`" || true
  done
  rm -rf "target/bench-shards-state-$tag"
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "${rows[@]}" | python3 -c "
import json, sys
rows = [l.rstrip('\n').split('|') for l in sys.stdin if l.strip()]
base = None
print('shards | writes/s (bot, c=$CONCURRENCY) | × 1 shard | machine CPU per write, µs | p99 create / rename ms | failed / unknown | leaders (spread after all led) | all led again after SIGKILL of shard 0\\'s leader, s')
print('--- | --- | --- | --- | --- | --- | --- | ---')
splits = []
reads = []
lags = []
for n, summary, leaders, failover, busy, split, rd, lag in rows:
    if lag != '-':
        lags.append((n, lag.split(',')))
    splits.append(f'{n} shard(s): {split}')
    one, four = rd.split(';')
    reads.append((n, one.split(','), four.split(',')))
    s = json.loads(summary)
    ops = s['ops_per_sec']
    base = base or ops
    def p99(kind):
        return (s['kinds'].get(kind) or {}).get('latency_ms', {}).get('p99', '-')
    t = s.get('totals', {})
    cpu_us = int(busy) / $TICK * 1e6 / max(s['ops'], 1)
    print(f\"{n} | {ops:,.0f} | {ops / base:.2f} | {cpu_us:.0f} | {p99('create_user')} / {p99('rename_user')} | {t.get('failed')} / {t.get('outcome_unknown')} | {leaders} | {failover}\")
print()
print('reads through the gateway (wrk -t2 -c32, warm), of the users the bot made:')
print('shards | one id: req/s | p99 ms | non-2xx | four ids (split by shard): req/s | p99 ms | non-2xx')
print('--- | --- | --- | --- | --- | --- | ---')
for n, one, four in reads:
    print(f'{n} | {int(one[0]):,} | {one[1]} | {one[2]} | {int(four[0]):,} | {four[1]} | {four[2]}')
print()
print('cross-shard intents (bot befriending and liking across shards, c=$CONCURRENCY, ${INTENT_SECONDS} s): commit to the other shard\\'s answer, ms')
print('shards | intents | p50 | p99 | max')
print('--- | --- | --- | --- | ---')
for n, (count, p50, p99, mx) in lags:
    print(f'{n} | {count} | {p50} | {p99} | {mx}')
print()
print('where the CPU went during the bot run (by process name; both MariaDB servers are mariadbd):')
for line in splits:
    print('  ' + line)
print(f'load before the table: {\"$load\"}')
"
