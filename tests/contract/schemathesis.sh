#!/usr/bin/env bash
# Contract test: schemathesis (a tool nobody here wrote) generates requests
# from openapi/openapi.json and checks asapd's answers against it with all
# of its checks. Runs the debug binary on a fresh SQLite data dir, as the
# admin that `asapd init` creates. Builds nothing: expects $ASAPD_BIN.
#
# Bounded: MAX_EXAMPLES cases per operation and phase, MAX_TIME seconds for
# the whole run (a few minutes on 2 cores). Extra arguments go to
# `schemathesis run` (e.g. --seed 1 to replay a run).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-25}
MAX_TIME=${MAX_TIME:-240}

bin=${ASAPD_BIN:-target/debug/asapd}
[[ -x $bin ]] || { echo "contract: no asapd binary at $bin (run cargo build, or set ASAPD_BIN)" >&2; exit 1; }
bin=$(realpath "$bin")

venv=target/contract-venv
if [[ ! -x $venv/bin/schemathesis ]]; then
    echo "contract: creating $venv with schemathesis $SCHEMATHESIS_VERSION"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export ASAPD_DATA_DIR=$work/data ASAPD_LISTEN=127.0.0.1:$port ASAPD_LOG=${ASAPD_LOG:-warn}
# Schemathesis sends thousands of requests with wrong credentials from one
# address (its ST401 check, on every operation). At the default failed-auth
# limit (60/min) the later operations would answer 429 to all of them, so
# their 401s and their logic would go untested (the limit itself is tested
# in tests/api: tokens, admin_auth, admin_gate).
export ASAPD_TOKENS__FAILED_AUTH_PER_MINUTE=1000000 ASAPD_TOKENS__FAILED_AUTH_BURST=1000000
ASAPD_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export ASAPD_MASTER_KEY

secret=$("$bin" init --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')
"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

# A caller whose secrets the secret-revoking operation may fuzz (below).
curl -fsS -u "admin:$secret" -H 'content-type: application/json' \
    -d '{"name": "fuzz-target"}' "$base/v1/admin/callers" >/dev/null

# --request-timeout 60 --max-response-time 60: the debug binary generates an
# RSA-4096 key (PS512, RS512) in 10 s or more on a busy 2-core machine; the
# default 10 s limits then report a network error or a slow response that is
# only the debug build's speed.
#
# Exclusions, each narrow and for a reason:
# - DELETE /v1/admin/callers/{name}/secrets/{id} is fuzzed only on the
#   caller fuzz-target (schemathesis.toml pins `name`): revoking admin's own
#   secret would lock the run out. Disabling, deleting or demoting the last
#   admin is refused (409) by the product, so those routes are fuzzed as is.
status=0
config=$(realpath tests/contract/schemathesis.toml)
venv=$(realpath "$venv")
# Run from the temporary dir: schemathesis keeps a cache (.schemathesis/)
# in its working directory, which must not land in the source tree.
cd "$work"
"$venv/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
    --url "$base" --auth "admin:$secret" \
    -c all --phases examples,coverage,fuzzing \
    -n "$MAX_EXAMPLES" --max-time "$MAX_TIME" \
    --request-timeout 60 --max-response-time 60 \
    --generation-database none --no-color "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "contract: schemathesis failed; server log tail:" >&2
    tail -n 40 "$work/server.log" >&2
fi
exit "$status"
