#!/usr/bin/env bash
# `make soak`: the fleet topology under mixed traffic for DURATION (default
# 10m; 90s, 3m, 1h or plain seconds), checked and written to
# benches/RESULTS.md by benches/soak.py. Not part of `make test` or CI.
#
# Knobs (environment): DURATION, SOAK_RATE (requests/s offered, default
# 100), ASAPD_BIN (default: the release build, built here), FLEET_KEEP=1 to
# keep the work directory (logs of both replicas, nginx, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${ASAPD_BIN:-} ]]; then
    echo "soak: cargo build --release"
    ${CARGO:-cargo} build --release --locked
    ASAPD_BIN=target/release/asapd
fi
source tests/fleet/harness.sh soak

"$venv/bin/python" benches/soak.py
