#!/usr/bin/env bash
# Where does asapd's CPU go while serving one endpoint under wrk load?
#
#   bash benches/profile.sh keys|healthz|tokens|introspect [SECONDS]
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
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }
source benches/serve.sh
W=$(mktemp -d /var/tmp/asapd-profile.XXXXXX)
trap 'serve_stop; [[ -n ${PROFILE_KEEP:-} ]] && cp "$W/perf.data" "$PROFILE_KEEP"; rm -rf "$W"' EXIT
serve_start "$W"
kid=$(admin_post /v1/admin/callers '{"name": "profile-es", "algorithm": "ES256"}' | json kid)
script=()
case $what in
    keys) url=$A/v1/keys/$kid ;;
    healthz) url=$A/healthz ;;
    tokens)
        # A caller granted svc-b (PROFILE_ALG, default ES256), as in make bench.
        token_caller "${PROFILE_ALG:-ES256}"
        script=(-s benches/wrk/checked.lua)
        url=$A/v1/tokens ;;
    introspect)
        # svc-b introspecting one ES256 token issued for it, as in make bench.
        token_caller ES256
        introspect_caller
        script=(-s benches/wrk/checked.lua)
        url=$A/oauth2/introspect ;;
    *) echo "usage: $0 keys|healthz|tokens|introspect [SECONDS]" >&2; exit 2 ;;
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
