#!/usr/bin/env bash
# Context switches per 1,000 requests, by server thread kind, under the
# introspection load of `make bench`, for one or more builds:
#
#   bash benches/switches.sh [SECONDS] [BINARY…]
#
# Each binary (default target/release/asapd) is started on a fresh SQLite dir
# (benches/serve.sh), caller svc-b introspects one ES256 token with wrk -t2
# -c64 through benches/wrk/checked.lua (2 s warm-up, then SECONDS, default
# 5), and the voluntary (the thread slept) and involuntary (it was
# preempted) context switches of each of the server's threads are read from
# /proc before and after, summed by thread name. A count, unlike a rate,
# barely moves with the machine's load: it shows what a change does to
# wake-ups where req/s cannot (this 2-core VM's rate drifts ±10 % within
# minutes). Needs wrk, curl, python3; build first (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift $(($# < 1 ? $# : 1))
bins=("$@")
((${#bins[@]})) || bins=("${CARGO_TARGET_DIR:-$PWD/target}/release/asapd")

# per_thread: "name voluntary involuntary" per thread of $PID.
per_thread() {
    local t
    for t in /proc/"$PID"/task/*; do
        printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm")" \
            "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")" \
            "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status")"
    done
}

for bin in "${bins[@]}"; do
    (
        SERVE_BIN=$bin
        source benches/serve.sh
        W=$(mktemp -d /var/tmp/asapd-switches.XXXXXX)
        trap 'serve_stop; rm -rf "$W"' EXIT
        serve_start "$W"
        token_caller ES256
        introspect_caller
        url=$A/oauth2/introspect
        wrk -t2 -c64 -d2s -s benches/wrk/checked.lua "$url" >/dev/null
        per_thread >"$W/before"
        wrk -t2 -c64 -d"${secs}s" -s benches/wrk/checked.lua "$url" >"$W/wrk"
        per_thread >"$W/after"
        python3 - "$bin" "$W/before" "$W/after" "$W/wrk" <<'PY'
import json, sys
from collections import defaultdict
bin, before, after, out = sys.argv[1:5]
result = json.loads(next(l for l in open(out) if l.startswith("WRK_RESULT "))[11:])
assert result["non200"] == 0 and result["bad_body"] == 0, result
def read(path):
    # Thread ids are not kept here: a thread that started or ended during
    # the load would misalign; names are summed instead.
    return [l.split() for l in open(path) if l.strip()]
totals = defaultdict(lambda: [0, 0])
for sign, rows in ((-1, read(before)), (1, read(after))):
    for name, vol, invol in rows:
        totals[name][0] += sign * int(vol)
        totals[name][1] += sign * int(invol)
n = result["requests"]
print(f"{bin}: {n} introspections, {result['rps']:,.0f}/s")
print(f"  {'thread':<18}{'voluntary':>12}{'involuntary':>13}   per 1,000 requests")
for name, (vol, invol) in sorted(totals.items()):
    if vol + invol > 0:
        print(f"  {name:<18}{vol * 1000 / n:>12.1f}{invol * 1000 / n:>13.1f}")
PY
    )
done
