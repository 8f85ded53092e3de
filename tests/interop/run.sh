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

# npm atlassian-jwt, the qsh reference of test_qsh.py, pinned by
# tests/interop/qsh/package-lock.json and installed with `npm ci` under
# target/ (never into the source tree); reinstalled when the lock changes.
qsh_npm=target/qsh-npm
if ! cmp -s tests/interop/qsh/package-lock.json "$qsh_npm/package-lock.json" \
        || [[ ! -d $qsh_npm/node_modules/atlassian-jwt ]]; then
    command -v npm >/dev/null || { echo "interop: npm is needed for the qsh vectors (Debian: apt-get install nodejs npm)" >&2; exit 1; }
    echo "interop: npm ci into $qsh_npm"
    rm -rf "$qsh_npm"
    mkdir -p "$qsh_npm"
    cp tests/interop/qsh/package.json tests/interop/qsh/package-lock.json "$qsh_npm/"
    (cd "$qsh_npm" && npm ci --no-audit --no-fund --loglevel=error)
fi
QSH_NODE_MODULES=$(realpath "$qsh_npm/node_modules")
export QSH_NODE_MODULES

# -p no:cacheprovider: no .pytest_cache left in the source tree.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/interop "$@"
