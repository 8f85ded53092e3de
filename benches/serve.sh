# Sourced by quick.sh and profile.sh: one release asapd on a fresh database,
# 127.0.0.1, plain HTTP, and a token caller loaded as in make bench.
#
#   serve_start WORKDIR   starts it (SQLite in WORKDIR, or a fresh database on
#                         the PostgreSQL server at $SERVE_POSTGRES when set);
#                         sets PID, A (base URL) and ADMIN (the admin secret)
#   serve_stop            stops it and drops that database; for a trap
#   token_caller ALG      a caller granted svc-b with ALG, rate limit out of the
#                         way; exports the BENCH_* that wrk/checked.lua reads
#   admin_post PATH JSON  POST as admin, prints the response body
#   introspect_caller     after token_caller ES256: caller svc-b introspecting
#                         one ES256 token issued for it, as in make bench;
#                         exports the BENCH_* for POST /oauth2/introspect

BIN=${SERVE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/asapd}
[[ -x $BIN ]] || { echo "build first: cargo build --release" >&2; exit 1; }
PID=
serve_db=

json() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

serve_start() {
    local dir=$1 port
    export ASAPD_MASTER_KEY
    ASAPD_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
    if [[ -n ${SERVE_POSTGRES:-} ]]; then
        serve_db=asapd_bench_$RANDOM$RANDOM
        psql -q "$SERVE_POSTGRES/postgres" -c "CREATE DATABASE $serve_db"
        export ASAPD_DATABASE_URL=$SERVE_POSTGRES/$serve_db
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    A=http://127.0.0.1:$port
    ADMIN=$("$BIN" init --json --data-dir "$dir/data" 2>/dev/null | json client_secret)
    "$BIN" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do curl -sf "$A/healthz" >/dev/null && break; sleep 0.1; done
}

serve_stop() {
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null
    wait 2>/dev/null || true
    if [[ -n $serve_db ]]; then
        psql -q "$SERVE_POSTGRES/postgres" -c "DROP DATABASE $serve_db" || true
    fi
}

admin_post() {
    curl -sf -u "admin:$ADMIN" -H 'content-type: application/json' "$A$1" -d "$2"
}

token_caller() {
    local secret
    admin_post /v1/admin/groups '{"name": "bench", "audiences": ["svc-b"], "max_lifetime": 600}' >/dev/null
    secret=$(admin_post /v1/admin/callers "{\"name\": \"bench-tok\", \"groups\": [\"bench\"],
        \"algorithm\": \"$1\", \"rate_limit\": {\"per_second\": 1000000, \"burst\": 1000000}}" \
        | json client_secret)
    export BENCH_METHOD=POST BENCH_BODY='{"audience": "svc-b"}' BENCH_EXPECT='"token":"ey'
    BENCH_AUTH="Basic $(printf '%s' "bench-tok:$secret" | base64 -w0)"
    export BENCH_AUTH
}

introspect_caller() {
    local secret token
    secret=$(admin_post /v1/admin/callers '{"name": "svc-b",
        "rate_limit": {"per_second": 1000000, "burst": 1000000}}' | json client_secret)
    token=$(curl -sf -H "Authorization: $BENCH_AUTH" -H 'content-type: application/json' \
        -d '{"audience": "svc-b", "lifetime": 600}' "$A/v1/tokens" | json token)
    export BENCH_METHOD=POST BENCH_BODY="token=$token" BENCH_EXPECT='"active":true'
    export BENCH_CONTENT_TYPE=application/x-www-form-urlencoded
    BENCH_AUTH="Basic $(printf '%s' "svc-b:$secret" | base64 -w0)"
}
