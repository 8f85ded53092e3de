#!/usr/bin/env bash
# Memory while the audit store is stalled:
#
#   bash benches/audit_stall.sh [SECONDS]
#
# Starts target/release/asapd on a fresh SQLite dir (or, with
# STALL_POSTGRES=postgres://user@host:port, a fresh database on that
# server), issues one ES256 token for svc-b, warms up 2 s, then has a
# second connection hold the audit table's write lock (SQLite: BEGIN
# IMMEDIATE from python3's sqlite3; PostgreSQL: LOCK TABLE audit_events IN
# EXCLUSIVE MODE from psql) while wrk -t2 -c64 loads POST
# /oauth2/introspect for SECONDS (default 60). Samples the server's VmRSS
# from /proc every second and prints the peak (and VmHWM), wrk's summary
# line, and the audit counters from /metrics. Introspection records have
# nowhere to go during the stall: before they were dropped and counted,
# each waited in a task of its own and memory grew with the load.
# Needs wrk, curl, python3 (and psql for PostgreSQL); build first
# (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
source benches/serve.sh
W=$(mktemp -d /var/tmp/asapd-stall.XXXXXX)
LOCKER=
cleanup() {
    [[ -n $LOCKER ]] && kill "$LOCKER" 2>/dev/null
    serve_stop
    rm -rf "$W"
}
trap cleanup EXIT
SERVE_POSTGRES=${STALL_POSTGRES:-}
serve_start "$W"
token_caller ES256
token=$(curl -sf -H "authorization: $BENCH_AUTH" -H 'content-type: application/json' \
    -d '{"audience": "svc-b", "lifetime": 600}' "$A/v1/tokens" | json token)
svcb=$(admin_post /v1/admin/callers \
    '{"name": "svc-b", "rate_limit": {"per_second": 1000000, "burst": 1000000}}' | json client_secret)
export BENCH_METHOD=POST BENCH_BODY="token=$token" BENCH_EXPECT='"active":true' \
    BENCH_CONTENT_TYPE=application/x-www-form-urlencoded
BENCH_AUTH="Basic $(printf '%s' "svc-b:$svcb" | base64 -w0)"
wrk -t2 -c64 -d2s -s benches/wrk/checked.lua "$A/oauth2/introspect" >/dev/null
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
echo "before the stall: VmRSS $(( $(rss VmRSS) / 1024 )) MiB"

# The lock outlasts the load by a few seconds, so all of it runs stalled.
hold=$((secs + 3))
if [[ -n $SERVE_POSTGRES ]]; then
    psql -q "$ASAPD_DATABASE_URL" >"$W/locker" 2>&1 <<SQL &
BEGIN;
LOCK TABLE audit_events IN EXCLUSIVE MODE;
\echo locked
SELECT pg_sleep($hold);
ROLLBACK;
SQL
else
    python3 - "$W/data/asapd.db" "$hold" >"$W/locker" 2>&1 <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
PY
fi
LOCKER=$!
for _ in $(seq 100); do grep -q locked "$W/locker" && break; sleep 0.1; done
grep -q locked "$W/locker" || { cat "$W/locker" >&2; echo "could not lock the audit table" >&2; exit 1; }

wrk -t2 -c64 -d"${secs}s" -s benches/wrk/checked.lua "$A/oauth2/introspect" >"$W/wrk" &
WRK=$!
peak=0
samples=0
while kill -0 "$WRK" 2>/dev/null; do
    now=$(rss VmRSS)
    (( now > peak )) && peak=$now
    samples=$((samples + 1))
    sleep 1
done
wait "$WRK"
echo "during ${secs} s of stall under wrk -c64: peak VmRSS $((peak / 1024)) MiB" \
    "($samples samples, 1 s apart); VmHWM $(( $(rss VmHWM) / 1024 )) MiB"
grep WRK_RESULT "$W/wrk" || cat "$W/wrk"
curl -sf "$A/metrics" | grep -E '^asapd_audit_(dropped_total|write_failures_total|queue_depth)'
