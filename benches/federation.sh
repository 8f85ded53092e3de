#!/usr/bin/env bash
# Tokens per second with federated authentication next to tokens per second
# with a secret, on one server in one run:
#
#   bash benches/federation.sh [SECONDS]
#
# Starts target/release/asapd on a fresh SQLite dir (plain HTTP), a caller
# authenticating with a secret (bench-tok) and one bound to a federated
# identity (bench-fed, benches/federated.sh: an RS256 token as Kubernetes
# signs them, from a second asapd trusted over HTTPS); both issue ES256
# tokens for svc-b. Loads POST /v1/tokens with wrk -t2 -c64, alternating
# secret, federated, secret, federated for SECONDS each (default 5), and
# prints each rate, the means and federated ÷ secret (target ≥ 0.7). The
# issuer's keys are fetched once and cached: no request reaches it during
# the loads. Every request presents the same token, as a pod does until the
# kubelet replaces it, so its signature is checked once and its claims on
# every request. Needs wrk, curl, openssl, python3; build first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
source benches/serve.sh
source benches/federated.sh
W=$(mktemp -d /var/tmp/asapd-fed.XXXXXX)
trap 'federated_stop; serve_stop; rm -rf "$W"' EXIT
serve_start "$W"
token_caller ES256
SECRET_AUTH=$BENCH_AUTH
federated_setup "$A" "$ADMIN" "$W"
rate() { # AUTH SECONDS
    BENCH_AUTH=$1 wrk -t2 -c64 -d"$2s" -s benches/wrk/checked.lua "$A/v1/tokens" \
        | sed -n 's/^WRK_RESULT //p'
}
rate "$SECRET_AUTH" 2 >/dev/null
rate "$FED_AUTH" 2 >/dev/null
results=()
for run in secret federated secret federated; do
    auth=$SECRET_AUTH
    [[ $run == federated ]] && auth=$FED_AUTH
    results+=("$run $(rate "$auth" "$secs")")
done
printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
runs = {}
for line in sys.stdin:
    kind, result = line.split(" ", 1)
    r = json.loads(result)
    bad = r["non200"] + r["bad_body"] + r["socket_errors"]
    rps, p50, p99, first = r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000, r["first_bad"]
    print(f"{kind:9} {rps:9.0f} tokens/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms  errors {bad} {first}")
    runs.setdefault(kind, []).append(r["rps"] if bad == 0 else float("nan"))
mean = {k: sum(v) / len(v) for k, v in runs.items()}
ratio = mean["federated"] / mean["secret"]
print(json.dumps({"secret_rps": round(mean["secret"]), "federated_rps": round(mean["federated"]),
                  "ratio": round(ratio, 3), "target": 0.7, "met": ratio >= 0.7}))
'
