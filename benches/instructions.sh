#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a figure that does not
# move with the machine's load, for changes too small to see in req/s.
#
#   bash benches/instructions.sh introspect|healthz [BINARY…]
#
# For each binary (default target/release/asapd): the server under
# `valgrind --tool=callgrind` on a fresh SQLite dir, the load of
# `quick.sh` (introspect: svc-b introspecting one ES256 token) from
# `wrk -t1 -c4` for 15 s with counting switched on for exactly that window,
# then the server's user-space instructions per request, all threads
# (the audit writer and SQLite's thread included), and the part of them
# spent in the ES256 verify (`Jws::verify`) and outside it. The kernel's
# share is not counted. Under valgrind aws-lc takes its generic x86-64 code
# (valgrind hides some CPU features), so the verify counts more
# instructions than on the bare machine; compare builds with each other.
# Needs valgrind, wrk, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-introspect}
shift || true
bins=("$@")
((${#bins[@]})) || bins=("${CARGO_TARGET_DIR:-$PWD/target}/release/asapd")
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
W=$(mktemp -d /var/tmp/asapd-instr.XXXXXX)
trap 'rm -rf "$W"' EXIT

# The wrapper serve.sh starts: `serve` under callgrind, anything else as is.
cat >"$W/asapd" <<'EOF'
#!/usr/bin/env bash
if [[ $1 == serve ]]; then
    exec valgrind --tool=callgrind --callgrind-out-file="$INSTR_OUT" \
        --instr-atstart=no "$INSTR_REAL" "$@" 2>"$INSTR_OUT.log"
fi
exec "$INSTR_REAL" "$@"
EOF
chmod +x "$W/asapd"

n=0
for bin in "${bins[@]}"; do
    n=$((n + 1))
    (
        export SERVE_BIN=$W/asapd INSTR_REAL=$bin INSTR_OUT=$W/callgrind.out
        source benches/serve.sh
        trap 'serve_stop' EXIT
        serve_start "$W/run-$n"
        # Under valgrind the server starts slower than serve.sh waits.
        for _ in $(seq 120); do curl -sf "$A/healthz" >/dev/null && break; sleep 0.5; done
        url=$A/healthz
        if [[ $what == introspect ]]; then
            token_caller ES256
            introspect_caller
            url=$A/oauth2/introspect
        else
            export BENCH_METHOD=GET BENCH_BODY= BENCH_AUTH= BENCH_EXPECT='"ok"'
        fi
        wrk -t1 -c4 -d3s -s benches/wrk/checked.lua "$url" >/dev/null
        callgrind_control -i on "$PID" >/dev/null
        wrk -t1 -c4 -d15s -s benches/wrk/checked.lua "$url" >"$W/wrk.txt"
        callgrind_control -i off "$PID" >/dev/null
        kill -TERM "$PID"
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
        PID=
        requests=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$W/wrk.txt")
        grep -q '"non200":0,"bad_body":0' "$W/wrk.txt" || { cat "$W/wrk.txt" >&2; exit 1; }
        callgrind_annotate --inclusive=yes --threshold=100 "$W/callgrind.out" 2>/dev/null \
            >"$W/annotate.txt"
        python3 -c '
import re, sys
bin, n = sys.argv[1], int(sys.argv[2])
total = verify = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(", line)
    if not m:
        continue
    count = int(m.group(1).replace(",", ""))
    if "PROGRAM TOTALS" in line:
        total = count
    elif re.search(r"/crypto/jws\.rs:asapd::crypto::jws::Jws::verify( \[|$)", line.rstrip()):
        verify = max(verify, count)
print(f"{bin}: {n} requests; per request {total / n:,.0f} instructions, "
      f"{verify / n:,.0f} in the verify, {(total - verify) / n:,.0f} outside it")
' "$bin" "$requests" <"$W/annotate.txt"
        rm -f "$W/callgrind.out"
    )
done
