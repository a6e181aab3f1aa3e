#!/usr/bin/env bash
# The issue-13 figures in one command, on a quiet machine (nothing else compiling or
# running): a release build of every binary, then
#   1. write scaling: raw MariaDB single-row INSERTs beside instaface creates at the same
#      concurrency, lease and async (`actors/benches/datapath`, part e);
#   2. reads through the gateway beside a trivial axum handler and a direct-MySQL service
#      (`gateway/benches/reads`), cached entity reads and a TAO-shaped mix.
# Services first (NATS, MariaDB, Redis: compose/services.sh). The reports (Markdown) go to
# stdout, progress to stderr; each prints its load average. Environment passes through
# (BENCH_WRITE_LEVELS, BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONCURRENCY, …: see each bench's
# top comment). `BENCH_ONLY=writes` or `BENCH_ONLY=reads` runs one of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
bash compose/services.sh
cargo build --release --workspace --bins
export INSTAFACE_BIN_DIR=$PWD/target/release
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ ${BENCH_ONLY:-writes} == writes ]]; then
  BENCH_PARTS=e cargo bench -p instaface-actors --bench datapath
fi
if [[ ${BENCH_ONLY:-reads} == reads ]]; then
  command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
  cargo bench -p instaface-gateway --bench reads
fi
