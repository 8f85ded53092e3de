#!/usr/bin/env bash
# A quick A/B of token issuance, between two builds or two settings, without
# the whole `make bench`:
#
#   bash benches/quick.sh ES256|RS256|…|introspect [SECONDS]
#
# `introspect` loads POST /oauth2/introspect instead: caller svc-b
# introspecting one ES256 token issued for it, as make bench does.
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
#
# Knobs for experiments (each off unless set):
#   SERVE_BIN=PATH        another asapd binary (default target/release/asapd)
#   QUICK_SQL='…'         SQLite statements run on the live database before the
#                         load (e.g. dropping an index); SQLite only
#   QUICK_NICE=N          renice SQLite's connection threads to N (root for N<0)
#   QUICK_HEALTHZ=1       afterwards, load GET /healthz on the same server for
#                         SECONDS too (the other half of the issuance ceiling)
set -euo pipefail
cd "$(dirname "$0")/.."
alg=${1:-ES256}
secs=${2:-8}
source benches/serve.sh
W=$(mktemp -d /var/tmp/asapd-quick.XXXXXX)
trap 'serve_stop; rm -rf "$W"' EXIT
SERVE_POSTGRES=${QUICK_POSTGRES:-}
serve_start "$W"
url=$A/v1/tokens
if [[ $alg == introspect ]]; then
    token_caller ES256
    introspect_caller
    url=$A/oauth2/introspect
else
    token_caller "$alg"
fi
if [[ -n ${QUICK_SQL:-} ]]; then
    sqlite3 -cmd '.timeout 5000' "$W/data/asapd.db" "$QUICK_SQL"
fi
wrk -t2 -c64 -d2s -s benches/wrk/checked.lua "$url" >/dev/null
if [[ -n ${QUICK_NICE:-} ]]; then
    # After the warm-up: the pool has opened its connections by now.
    for task in /proc/"$PID"/task/*; do
        if [[ $(cat "$task/comm") == sqlx-sqlite* ]]; then
            renice -n "$QUICK_NICE" -p "${task##*/}" >/dev/null
        fi
    done
fi
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
# measure URL [wrk options]: one load, with the server's CPU per request.
measure() {
    local t0 t1 out n
    t0=$(ticks)
    out=$(wrk -t2 -c64 -d"${secs}s" "${@:2}" -s benches/wrk/checked.lua "$1")
    t1=$(ticks)
    grep -E 'Requests/sec|^ +(50|99)%|WRK_RESULT' <<<"$out"
    n=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$out")
    awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$secs" -v n="$n" \
        'BEGIN { printf "server cores: %.2f, server CPU per request: %.1f us\n", t / hz / s, t / hz / n * 1e6 }'
}
measure "$url" --latency
curl -sf "$A/metrics" | awk '
    /^asapd_audit_batch_size_sum/ { bs = $2 } /^asapd_audit_batch_size_count/ { bc = $2 }
    /^asapd_audit_write_seconds_sum/ { ws = $2 }
    END { if (bc) printf "audit: %.1f events per commit, %.2f ms per commit\n", bs / bc, ws / bc * 1000 }'
if [[ -n ${QUICK_HEALTHZ:-} ]]; then
    echo "GET /healthz, same server:"
    BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH= BENCH_EXPECT='"ok"' BENCH_CONTENT_TYPE= \
        measure "$A/healthz"
fi
