#!/usr/bin/env bash
# How much of the issuance ceiling is there for asapd's own work, on this
# machine? Measures, in one series, token issuance with the work tree as it
# is and with the audit record taken away step by step:
#
#   bash benches/headroom.sh [ALG] [SECONDS] [ROUNDS]     (ES256 6 3)
#
# Three release binaries of the work tree:
#   as-is      the work tree;
#   no-sql     + benches/experiments/no-sql.patch: each event still goes to
#              the audit writer and back, but nothing is inserted (run with
#              commit pacing off, which would otherwise wait on a 0 ms commit);
#   no-audit   + benches/experiments/no-audit.patch: no audit record at all.
# Each patch is applied to the work tree only for its build and reverted at
# once (and on exit): do not edit src/audit/writer.rs while this runs.
#
# Then ROUNDS rounds of: POST /v1/tokens with each binary, and GET /healthz
# (benches/quick.sh: fresh SQLite, wrk -t2 -c64 on the same cores, every
# response checked), plus asapd's signer on all cores (benches/sign.rs) once.
# Prints every round and, from the medians, each variant's ratio to the
# ceiling 1/(1/healthz + 1/sign_rate_all), as make bench reports it.
# Needs what quick.sh needs; ~2 builds of asapd (~1 min each) plus the loads.
set -euo pipefail
cd "$(dirname "$0")/.."
alg=${1:-ES256}
secs=${2:-6}
rounds=${3:-3}
T=${CARGO_TARGET_DIR:-$PWD/target}
W=$(mktemp -d /var/tmp/asapd-headroom.XXXXXX)
applied=
revert() { [[ -n $applied ]] && git apply -R "$applied"; applied=; }
trap 'revert; rm -rf "$W"' EXIT

build_variant() { # NAME [PATCH]
    if [[ -n ${2:-} ]]; then
        git apply "$2"
        applied=$2
    fi
    cargo build --release --locked --quiet
    cp "$T/release/asapd" "$W/asapd-$1"
    revert
}
echo "building as-is, no-sql, no-audit …" >&2
build_variant no-sql benches/experiments/no-sql.patch
build_variant no-audit benches/experiments/no-audit.patch
build_variant as-is

sign_all=$(cargo bench --locked --quiet --bench sign -- --secs 2 2>/dev/null \
    | python3 -c "import json, sys; print(json.load(sys.stdin)['${alg}_asapd_kept_all_cores'])")
echo "sign_rate_all ($alg, benches/sign.rs): $sign_all/s"

rate() { awk '/Requests\/sec/ { print $2; exit }'; }
declare -A runs
for round in $(seq "$rounds"); do
    line="round $round:"
    for variant in as-is no-sql no-audit; do
        # Pacing would wait on no-sql's 0 ms commits; /healthz rides along
        # with the as-built server.
        case $variant in
            as-is) extra=(QUICK_HEALTHZ=1) ;;
            no-sql) extra=(ASAPD_AUDIT__COMMIT_INTERVAL_MS=0) ;;
            *) extra=() ;;
        esac
        out=$(env "${extra[@]}" SERVE_BIN="$W/asapd-$variant" bash benches/quick.sh "$alg" "$secs")
        if [[ $variant == as-is ]]; then
            runs[healthz]+="$(grep -A1 'GET /healthz' <<<"$out" | rate) "
        fi
        r=$(rate <<<"$out")
        runs[$variant]+="$r "
        cores=$(awk '/server cores/ { print $3 }' <<<"$out")
        line+=" $variant $r/s ($(awk -v c="$cores" -v r="$r" 'BEGIN { printf "%.1f", c / r * 1e6 }') µs server CPU each);"
    done
    echo "$line healthz $(awk '{ print $NF }' <<<"${runs[healthz]}")/s"
done

python3 - "$sign_all" "${runs[healthz]}" "${runs[as-is]}" "${runs[no-sql]}" "${runs[no-audit]}" <<'EOF'
import statistics, sys
sign = float(sys.argv[1])
med = [statistics.median(map(float, a.split())) for a in sys.argv[2:]]
healthz, rest = med[0], med[1:]
ceiling = 1 / (1 / healthz + 1 / sign)
print(f"medians: healthz {healthz:,.0f}/s, sign_rate_all {sign:,.0f}/s -> ceiling {ceiling:,.0f}/s")
for name, r in zip(["as-is", "no-sql (hand-off only)", "no-audit"], rest):
    print(f"  {name:24} {r:9,.0f}/s  {r / ceiling:.2f} of the ceiling")
EOF
