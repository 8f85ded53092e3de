#!/usr/bin/env bash
# Interop tests: asapd's key repository and JWKS, read by the client libraries
# real verifiers use. Builds nothing: expects the asapd binary at $ASAPD_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${ASAPD_BIN:-target/debug/asapd}
[[ -x $bin ]] || { echo "interop: no asapd binary at $bin (run cargo build, or set ASAPD_BIN)" >&2; exit 1; }
# Absolute, so the tests do not depend on their working directory.
ASAPD_BIN=$(realpath "$bin")
export ASAPD_BIN

venv=target/interop-venv
if [[ ! -x $venv/bin/python ]]; then
    echo "interop: creating $venv"
    python3 -m venv "$venv"
fi
# Cheap when everything is already installed; picks up requirement changes.
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/requirements.txt

# -p no:cacheprovider: no .pytest_cache left in the source tree.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/interop "$@"
