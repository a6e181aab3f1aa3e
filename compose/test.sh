#!/usr/bin/env bash
# The test command: makes sure NATS, MariaDB and Redis are up (compose/services.sh), builds
# every binary (multi-process tests start real instaface-node and instaface-gateway
# processes from target/debug), then runs the whole workspace's tests.
# Extra arguments go to `cargo test` (e.g. `bash compose/test.sh -p instaface-bus`).
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES_QUIET=1 bash compose/services.sh
cargo build --workspace --bins
cargo test --workspace "$@"
