#!/usr/bin/env bash
# A quick A/B of token issuance, between two builds or two settings, without
# the whole `make bench`:
#
#   bash benches/quick.sh ES256|RS256|… [SECONDS]
#
# Starts target/release/asapd on a fresh SQLite dir (127.0.0.1, plain HTTP),
# creates one caller with the algorithm (rate limit out of the way), warms up
# 2 s, then loads POST /v1/tokens with wrk -t2 -c64 for SECONDS (default 8)
# through benches/wrk/checked.lua. Prints req/s, p50/p99, the server's cores
# used, and the audit batch figures from /metrics (mean events per commit,
# mean commit time). Needs wrk, curl, python3; build first
# (`cargo build --release`). QUICK_POSTGRES=postgres://user@host:port (a
# server URL, e.g. `PG_TEST_FSYNC=on scripts/pg-test-server.sh start DIR
# PORT`) runs against a fresh database there instead of SQLite (needs psql).
set -euo pipefail
cd "$(dirname "$0")/.."
alg=${1:-ES256}
secs=${2:-8}
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/asapd
[[ -x $BIN ]] || { echo "build first: cargo build --release" >&2; exit 1; }

W=$(mktemp -d /var/tmp/asapd-quick.XXXXXX)
PID=
db=
trap '[[ -n $PID ]] && kill -TERM $PID 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"
      [[ -n $db ]] && psql -q "$QUICK_POSTGRES/postgres" -c "DROP DATABASE $db" || true' EXIT
export ASAPD_MASTER_KEY
ASAPD_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
if [[ -n ${QUICK_POSTGRES:-} ]]; then
    db=asapd_quick_$RANDOM$RANDOM
    psql -q "$QUICK_POSTGRES/postgres" -c "CREATE DATABASE $db"
    export ASAPD_DATABASE_URL=$QUICK_POSTGRES/$db
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
A=http://127.0.0.1:$port
json() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
admin=$("$BIN" init --json --data-dir "$W/data" 2>/dev/null | json client_secret)
"$BIN" serve --data-dir "$W/data" --listen "127.0.0.1:$port" >"$W/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "$A/healthz" >/dev/null && break; sleep 0.1; done
post() { curl -sf -u "admin:$admin" -H 'content-type: application/json' "$A$1" -d "$2"; }
post /v1/admin/groups '{"name": "quick", "audiences": ["svc-b"], "max_lifetime": 600}' >/dev/null
secret=$(post /v1/admin/callers "{\"name\": \"quick\", \"groups\": [\"quick\"], \"algorithm\": \"$alg\",
    \"rate_limit\": {\"per_second\": 1000000, \"burst\": 1000000}}" | json client_secret)
export BENCH_METHOD=POST BENCH_BODY='{"audience": "svc-b"}' BENCH_EXPECT='"token":"ey'
BENCH_AUTH="Basic $(printf '%s' "quick:$secret" | base64 -w0)"
export BENCH_AUTH
wrk -t2 -c64 -d2s -s benches/wrk/checked.lua "$A/v1/tokens" >/dev/null
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
t0=$(ticks)
wrk -t2 -c64 -d"${secs}s" --latency -s benches/wrk/checked.lua "$A/v1/tokens" \
    | grep -E 'Requests/sec|^ +(50|99)%'
t1=$(ticks)
awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$secs" \
    'BEGIN { printf "server cores: %.2f\n", t / hz / s }'
curl -sf "$A/metrics" | awk '
    /^asapd_audit_batch_size_sum/ { bs = $2 } /^asapd_audit_batch_size_count/ { bc = $2 }
    /^asapd_audit_write_seconds_sum/ { ws = $2 }
    END { if (bc) printf "audit: %.1f events per commit, %.2f ms per commit\n", bs / bc, ws / bc * 1000 }'
