# Sourced by tests/docs/run.sh and tests/postman/run.sh: starts
# `asapd serve --dev` (HTTPS, self-signed certificate, SQLite, the first
# admin created and its secret printed once) on a free loopback port in a
# temporary data dir, and stops it on exit.
#
# Sets: work (temp dir), base (https://127.0.0.1:PORT), secret (admin's),
# cacert (the dev certificate), server_pid. Expects $ASAPD_BIN or the debug
# binary.

bin=${ASAPD_BIN:-target/debug/asapd}
[[ -x $bin ]] || { echo "no asapd binary at $bin (run cargo build, or set ASAPD_BIN)" >&2; exit 1; }
bin=$(realpath "$bin")

work=$(mktemp -d)
server_pid=
stop_dev_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_dev_server EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=https://127.0.0.1:$port
cacert=$work/data/dev-cert.pem
: >"$work/stdout"
# Only the variables set here: an ASAPD_* of the caller's shell must not
# change the server under test.
env $(env | grep -o '^ASAPD_[A-Z0-9_]*' | sed 's/^/-u /') ASAPD_LOG="${ASAPD_LOG:-warn}" \
    "$bin" serve --dev --data-dir "$work/data" --listen "127.0.0.1:$port" \
    >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
secret=
for _ in $(seq 300); do
    secret=$(awk '/^client_secret:/ {print $2}' "$work/stdout")
    if [[ -n $secret ]] && curl -fsS --cacert "$cacert" "$base/readyz" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $secret ]] || { echo "serve --dev printed no admin secret" >&2; cat "$work/server.log" >&2; exit 1; }
