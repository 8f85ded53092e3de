# Sourced, from the repository root, by tests/fleet/run.sh and
# benches/soak.sh: what the processes of tests/fleet/procs.py need.
#
#   source tests/fleet/harness.sh NAME   # NAME prefixes messages
#
# Exports ASAPD_BIN (absolute; default target/debug/asapd), FLEET_NGINX and
# FLEET_WORK, a fresh directory for everything the run starts, removed on
# exit (FLEET_KEEP=1 keeps it) after ending what a dead harness left
# running; sets venv to target/interop-venv, with the verifier libraries.

harness=$1

bin=${ASAPD_BIN:-target/debug/asapd}
[[ -x $bin ]] || { echo "$harness: no asapd binary at $bin (run cargo build, or set ASAPD_BIN)" >&2; exit 1; }
ASAPD_BIN=$(realpath "$bin")
export ASAPD_BIN

# Debian's nginx lives in /usr/sbin, which a non-login PATH may lack.
nginx_bin() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }; }
if ! nginx_bin >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo "$harness: nginx is missing; install Debian's nginx (needs root)" >&2; exit 1; }
    echo "$harness: installing nginx (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nginx
fi
FLEET_NGINX=$(nginx_bin)
export FLEET_NGINX

# The interop tests' venv: the same verifier library, pinned once.
venv=target/interop-venv
if [[ ! -x $venv/bin/python ]]; then
    echo "$harness: creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/requirements.txt

# Everything the run starts lives here. PostgreSQL runs as user postgres,
# nginx as nobody: both must be able to enter it.
FLEET_WORK=$(mktemp -d "/tmp/asapd-$harness.XXXXXX")
chmod 755 "$FLEET_WORK"
export FLEET_WORK

# procs.py stops everything and forgets each pid as it reaps it; this is
# for a harness that died without doing so. Only a recorded pid that still
# runs asapd or nginx is ended (SIGTERM: nginx's master takes its workers
# along), then PostgreSQL.
cleanup() {
    local pidfile pid
    for pidfile in "$FLEET_WORK"/pids/*.pid; do
        [[ -f $pidfile ]] || continue
        pid=$(<"$pidfile")
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq '(asapd|nginx)'; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if [[ -d $FLEET_WORK/pg ]]; then scripts/pg-test-server.sh stop "$FLEET_WORK/pg" >/dev/null || true; fi
    if [[ ${FLEET_KEEP:-} == 1 ]]; then echo "$harness: kept $FLEET_WORK"; else rm -rf "$FLEET_WORK"; fi
}
trap cleanup EXIT
