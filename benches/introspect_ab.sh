#!/usr/bin/env bash
# Introspection against its ceiling, make bench's way, for one or more
# builds in alternation, without the whole run:
#
#   bash benches/introspect_ab.sh [SECONDS] [ROUNDS] [BINARY…]
#
# Each round measures, one after the other: asapd's ES256 verify rate on all
# cores (benches/sign.rs, built by `cargo bench --no-run --bench sign`),
# then per binary (default target/release/asapd) `benches/quick.sh
# introspect` with `/healthz` on the same server (fresh SQLite, wrk -t2 -c64
# on the same cores, every response checked). Prints per load req/s and the
# server's CPU per request, and per binary:
#   ratio      req/s ÷ 1/(1/healthz + 1/verify_all), as make bench reports it;
#   cpu ratio  (healthz CPU/request + verify CPU/verify) ÷ introspection CPU
#              /request: the same comparison in CPU time, which neighbours on
#              a shared machine move much less than req/s.
# The load average is printed with each round: note it with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-2}
shift $(($# < 2 ? $# : 2))
bins=("$@")
((${#bins[@]})) || bins=("${CARGO_TARGET_DIR:-$PWD/target}/release/asapd")
sign=$(ls -t "${CARGO_TARGET_DIR:-$PWD/target}"/release/deps/sign-* 2>/dev/null | grep -v '\.d$' | head -1)
[[ -x $sign ]] || { echo "build the verify bench first: cargo bench --no-run --bench sign" >&2; exit 1; }
for round in $(seq "$rounds"); do
    echo "round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    read -r v_all v_cpu < <("$sign" --secs 2 2>/dev/null | python3 -c "
import json, sys; d = json.load(sys.stdin)
print(d['ES256_verify_kept_all_cores'], d['ES256_verify_kept_all_cores_per_cpu_s'])")
    echo "  ES256 verify, all cores: $v_all/s ($v_cpu per CPU-s)"
    for bin in "${bins[@]}"; do
        out=$(SERVE_BIN=$bin QUICK_HEALTHZ=1 bash benches/quick.sh introspect "$secs")
        python3 - "$bin" "$v_all" "$v_cpu" "$out" <<'PY'
import re, sys
bin, v_all, v_cpu, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rps = [float(x) for x in re.findall(r"Requests/sec:\s+([\d.]+)", out)]
cpu = [float(x) for x in re.findall(r"server CPU per request: ([\d.]+) us", out)]
bad = re.findall(r'"non200":(\d+),"bad_body":(\d+)', out)
i, h = rps[0], rps[1]
ceiling = 1 / (1 / h + 1 / v_all)
line = f"  {bin}: introspect {i:,.0f}/s ({cpu[0]:.1f} us), healthz {h:,.0f}/s"
if len(cpu) > 1:
    line += f" ({cpu[1]:.1f} us)"
line += f"; ratio {i / ceiling:.2f} of {ceiling:,.0f}"
if len(cpu) > 1:
    line += f", cpu ratio {(cpu[1] + 1e6 / v_cpu) / cpu[0]:.2f}"
if any(a != "0" or b != "0" for a, b in bad):
    line += f"  ERRORS {bad}"
print(line)
PY
    done
done
