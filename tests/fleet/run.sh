#!/usr/bin/env bash
# Fleet test: the production topology on loopback -- PostgreSQL, two asapd
# replicas on it, nginx over TLS in front -- driven by pytest (conftest.py
# starts and stops the processes). Builds nothing: expects the asapd binary
# at $ASAPD_BIN (default target/debug/asapd). Writes the propagation figures
# to target/fleet-propagation.json.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${ASAPD_BIN:-target/debug/asapd}
[[ -x $bin ]] || { echo "fleet: no asapd binary at $bin (run cargo build, or set ASAPD_BIN)" >&2; exit 1; }
ASAPD_BIN=$(realpath "$bin")
export ASAPD_BIN

# Debian's nginx lives in /usr/sbin, which a non-login PATH may lack.
nginx_bin() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }; }
if ! nginx_bin >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo "fleet: nginx is missing; install Debian's nginx (needs root)" >&2; exit 1; }
    echo "fleet: installing nginx (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nginx
fi
FLEET_NGINX=$(nginx_bin)
export FLEET_NGINX

# The interop tests' venv: the same verifier library, pinned once.
venv=target/interop-venv
if [[ ! -x $venv/bin/python ]]; then
    echo "fleet: creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/requirements.txt

# Everything the run starts lives here. PostgreSQL runs as user postgres,
# nginx as nobody: both must be able to enter it.
work=$(mktemp -d /tmp/asapd-fleet.XXXXXX)
chmod 755 "$work"
export FLEET_WORK=$work
export FLEET_FIGURES=$PWD/target/fleet-propagation.json

# conftest.py stops everything and forgets each pid as it reaps it; this is
# for a pytest that died without doing so. Only a recorded pid that still
# runs asapd or nginx is ended (SIGTERM: nginx's master takes its workers
# along), then PostgreSQL.
cleanup() {
    local pidfile pid
    for pidfile in "$work"/pids/*.pid; do
        [[ -f $pidfile ]] || continue
        pid=$(<"$pidfile")
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq '(asapd|nginx)'; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if [[ -d $work/pg ]]; then scripts/pg-test-server.sh stop "$work/pg" >/dev/null || true; fi
    if [[ ${FLEET_KEEP:-} == 1 ]]; then echo "fleet: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# -p no:cacheprovider: no .pytest_cache in the source tree. -s would mix
# the figures table into the dots; pytest prints it in its summary instead.
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir tests/fleet tests/fleet "$@"
