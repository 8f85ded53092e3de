#!/usr/bin/env bash
# Where does asapd's CPU go while serving one endpoint under wrk load?
#
#   bash benches/profile.sh keys|healthz|tokens [SECONDS]
#
# Starts the release binary on a fresh SQLite dir (127.0.0.1, plain HTTP),
# creates one caller (ES256, or PROFILE_ALG for `tokens`), loads the
# endpoint with wrk (2 threads, 64 connections) and samples asapd with `perf record -e cpu-clock` (a software
# event: works in VMs without hardware counters) with DWARF call graphs,
# because the release build has no frame pointers. Prints the functions
# with the largest inclusive share ("children") of asapd's samples.
# Needs perf and wrk; run `make bench` once first (it builds and installs).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-keys}
secs=${2:-4}
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/asapd
[[ -x $BIN ]] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }

W=$(mktemp -d /var/tmp/asapd-profile.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -TERM $PID 2>/dev/null; wait 2>/dev/null || true; [[ -n ${PROFILE_KEEP:-} ]] && cp "$W/perf.data" "$PROFILE_KEEP"; rm -rf "$W"' EXIT
export ASAPD_MASTER_KEY
ASAPD_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$("$BIN" init --json --data-dir "$W/data" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')
"$BIN" serve --data-dir "$W/data" --listen "127.0.0.1:$port" >"$W/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
kid=$(curl -sf -u "admin:$secret" -H 'content-type: application/json' "http://127.0.0.1:$port/v1/admin/callers" \
    -d '{"name": "profile-es", "algorithm": "ES256"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["kid"])')
script=()
case $what in
    keys) url=http://127.0.0.1:$port/v1/keys/$kid ;;
    healthz) url=http://127.0.0.1:$port/healthz ;;
    tokens)
        # A caller granted svc-b (PROFILE_ALG, default ES256), rate limit out of
        # the way, as in make bench.
        curl -sf -u "admin:$secret" -H 'content-type: application/json' "http://127.0.0.1:$port/v1/admin/groups" \
            -d '{"name": "profile", "audiences": ["svc-b"]}' >/dev/null
        tsecret=$(curl -sf -u "admin:$secret" -H 'content-type: application/json' "http://127.0.0.1:$port/v1/admin/callers" \
            -d "{\"name\": \"profile-tok\", \"groups\": [\"profile\"], \"algorithm\": \"${PROFILE_ALG:-ES256}\",
                 \"rate_limit\": {\"per_second\": 1000000, \"burst\": 1000000}}" \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')
        export BENCH_METHOD=POST BENCH_BODY='{"audience": "svc-b"}' BENCH_EXPECT='"token":"ey'
        BENCH_AUTH="Basic $(printf '%s' "profile-tok:$tsecret" | base64 -w0)"
        export BENCH_AUTH
        script=(-s benches/wrk/checked.lua)
        url=http://127.0.0.1:$port/v1/tokens ;;
    *) echo "usage: $0 keys|healthz|tokens [SECONDS]" >&2; exit 2 ;;
esac

# Load for longer than we sample: skip the first second (connections ramping up).
wrk -t2 -c64 -d"$((secs + 3))s" "${script[@]}" "$url" >"$W/wrk.txt" &
WRK=$!
sleep 1
perf record -q -e cpu-clock -F 999 --call-graph dwarf,32768 -p "$PID" -o "$W/perf.data" -- sleep "$secs" 2>/dev/null
wait "$WRK" || true
grep -E 'Requests/sec|WRK_RESULT' "$W/wrk.txt" || true
echo "Inclusive share of asapd's CPU samples (>= 2%), asapd/actix/regex/rand/kernel-net frames:"
perf report -i "$W/perf.data" --children --stdio --sort sym -g none --percent-limit 2 2>/dev/null \
    | grep -E '^ +[0-9]' | grep -v 'inlined)$' \
    | grep -E "${PROFILE_FILTER:-asapd::|actix_router|actix_web::(app_service|resource)|regex|rand|fmt::|tcp_sendmsg |tcp_recvmsg |sendto|recvfrom}" \
    | cut -c1-150
