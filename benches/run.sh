#!/usr/bin/env bash
# `make bench`: asapd's benchmarks, all in one run so every ratio compares
# numbers taken on the same machine minutes apart.
#
#   1. in-process JWT signing rate, one thread and all cores, and ES256
#      verify rate (introspection's ceiling)                (benches/sign.rs)
#   2. audit group commit vs one commit per event        (benches/audit.rs)
#   3. the release server under wrk on 127.0.0.1, SQLite then PostgreSQL:
#      /healthz, GET /v1/keys/{kid} vs nginx serving the same PEM file
#      (HTTP and HTTPS, and revalidated with If-None-Match), POST /v1/tokens
#      ES256/RS256, the same ES256 with federated authentication (an RS256
#      token of a trusted issuer, its JWKS cached; benches/federated.sh),
#      POST /oauth2/introspect of an ES256 token (by its
#      audience); peak RSS after each load; then two replicas on one
#      PostgreSQL, with the fleet-wide rate limit and with per-replica limits
#   4. benches/report.py: the table, printed and written to benches/RESULTS.md
#
# Runs on a fresh Debian 12 machine as root: installs wrk, nginx, curl,
# openssl, python3 with apt-get when missing, PostgreSQL 15 through
# scripts/pg-test-server.sh. Everything listens on 127.0.0.1 only, every
# load has a fixed duration, and everything started here is stopped on exit.
#
# Knobs (environment): BENCH_DURATION (s per measured load, default 10),
# BENCH_WARMUP (s, default 2), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
# BENCH_POSTGRES=0 to skip PostgreSQL.
#
# The load generator and the server share the machine's cores: on a 2-core
# machine wrk's two threads take CPU the server would otherwise have, so
# absolute rates are lower than a separate client machine would show; the
# ratios (asapd vs nginx, issuance vs ceiling) are measured under the same
# handicap on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
WITH_PG=${BENCH_POSTGRES:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CARGO=${CARGO:-cargo}

say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# --- tools ----------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing ${need[*]}; install them (apt-get needs root)"
    say "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- build first, so no compile overlaps a measurement ----------------------
say "cargo build --release; build the bench programs"
$CARGO build --release --locked
$CARGO bench --locked --no-run --bench sign --bench audit --bench pkcs11_sign
BIN=$CARGO_TARGET_DIR/release/asapd

# --- scratch space -----------------------------------------------------------
# Under /var/tmp, not /tmp: /tmp may be tmpfs, where an fsync costs nothing
# and SQLite/PostgreSQL commits would look cheaper than on a disk. 0755 so
# nginx's workers and the postgres user can reach their files.
WORK=$(mktemp -d /var/tmp/asapd-bench.XXXXXX)
chmod 755 "$WORK"
RES=$WORK/results
mkdir -p "$RES"
PIDS=()
PGDIR=

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $PGDIR ]]; then scripts/pg-test-server.sh stop "$PGDIR" >/dev/null || true; fi
    # Keep the raw results (wrk output, JSON, server logs) for inspection.
    if [[ -d $RES ]]; then
        rm -rf "$CARGO_TARGET_DIR/bench-results"
        mkdir -p "$CARGO_TARGET_DIR/bench-results"
        cp -r "$RES/." "$CARGO_TARGET_DIR/bench-results/" 2>/dev/null || true
        cp "$WORK"/*.log "$CARGO_TARGET_DIR/bench-results/" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port the kernel just handed out is free.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# json FIELD: one field of the JSON object on stdin.
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# Machine facts for the report.
{
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    # The results file itself does not count as a change to what was measured.
    [[ -z $(git status --porcelain --untracked-files=no -- . ':!benches/RESULTS.md' 2>/dev/null) ]] \
        || commit="$commit (uncommitted changes)"
    echo "commit=$commit"
    echo "kernel=$(uname -r)"
    echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "rustc=$(rustc --version | awk '{print $2}')"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "connections=$CONNS"
    echo "threads=$THREADS"
} >"$RES/machine.txt"

# How busy the machine is before we add anything: a neighbour's build makes
# every rate below lower, so say so up front (and per load, see load()).
read -r b0 _ < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
sleep 1
read -r b1 _ < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
busy=$(awk -v d="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", d / hz}')
echo "busy_before=$busy" >>"$RES/machine.txt"
if awk -v b="$busy" 'BEGIN {exit !(b > 0.2)}'; then
    echo "bench: warning: other processes use $busy cores right now; rates will be lower than on a quiet machine" >&2
fi

# --- 1. signing, one thread and all cores ------------------------------------
say "signing rate in process, one thread and all cores (benches/sign.rs)"
$CARGO bench --locked --bench sign -- --secs 2 >"$RES/sign.json"
cat "$RES/sign.json" >&2

# Signing in a SoftHSM2 token: C_Sign alone vs asapd's signer around it.
if command -v softhsm2-util >/dev/null; then
    say "signing in a PKCS#11 token, raw C_Sign vs asapd (benches/pkcs11_sign.rs)"
    $CARGO bench --locked --bench pkcs11_sign -- --secs 2 >"$RES/pkcs11_sign.json"
    cat "$RES/pkcs11_sign.json" >&2
else
    echo "bench: softhsm2-util missing (scripts/prereqs.sh installs it); no PKCS#11 rows" >&2
fi

# The same operations in OpenSSL, the unit of the reference figures
# (ES256 ≈ 51k/s, RS256 ≈ 3.5k/s on one core of a quiet machine): tells how
# fast this machine is today, independently of asapd's code.
openssl speed -seconds 1 ecdsap256 rsa2048 >"$RES/openssl.txt" 2>/dev/null || true

# --- PostgreSQL ------------------------------------------------------------------
PG_URL_BASE=
PG_PID=
if [[ $WITH_PG == 1 ]]; then
    say "start a throwaway PostgreSQL 15 (fsync on)"
    PGPORT=$(free_port)
    PGDIR=$WORK/pg
    if PG_TEST_FSYNC=on scripts/pg-test-server.sh start "$PGDIR" "$PGPORT" >&2; then
        PG_URL_BASE=postgres://postgres@127.0.0.1:$PGPORT
        PG_PID=$(head -n1 "$PGDIR/data/postmaster.pid")
        for db in audit_bench asapd_bench asapd_fleet; do
            /usr/lib/postgresql/15/bin/psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres \
                -c "CREATE DATABASE $db" postgres
        done
        echo "postgres=$(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}') (fsync=on, synchronous_commit=on)" >>"$RES/machine.txt"
    else
        echo "bench: PostgreSQL did not start; its rows will read n/a" >&2
        PGDIR=
    fi
fi

# --- 2. audit group commit ------------------------------------------------------
say "audit commits: one writer vs 64 writers, group commit (benches/audit.rs)"
mkdir -p "$WORK/audit"
$CARGO bench --locked --bench audit -- --secs 3 --writers 64 --sqlite-dir "$WORK/audit" \
    ${PG_URL_BASE:+--postgres "$PG_URL_BASE/audit_bench"} >"$RES/audit.json"
cat "$RES/audit.json" >&2

# --- 3. the server under load ------------------------------------------------------
ASAPD_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export ASAPD_MASTER_KEY
# No per-request log lines exist at the default level; keep the default.

SERVER_PID=
SERVER_URL=

# start_asapd NAME URL-SCHEME ARGS...: serve in the background, wait for /healthz.
start_asapd() {
    local name=$1 scheme=$2 port
    shift 2
    port=$(free_port)
    "$BIN" serve --listen "127.0.0.1:$port" "$@" >"$WORK/asapd-$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL=$scheme://127.0.0.1:$port
    for _ in $(seq 100); do
        curl -ksf "$SERVER_URL/healthz" >/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/asapd-$name.log" >&2; die "asapd ($name) exited"; }
        sleep 0.1
    done
    die "asapd ($name) did not answer /healthz within 10 s"
}

stop_asapd() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
}

# rss LABEL: the server's peak (VmHWM) and current (VmRSS) resident set, kB.
rss() {
    local hwm cur
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    cur=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    echo "$1 $hwm $cur" >>"$RES/rss.txt"
}

# --- CPU accounting ----------------------------------------------------------------
# The machine may be shared (other builds, other services): for each load we
# record how much CPU went to the server under test, to PostgreSQL, to wrk
# and to everything else, so a run disturbed by a neighbour shows it.
HZ=$(getconf CLK_TCK)
NGINX_PID=

# machine_ticks: busy and steal ticks of the whole machine since boot.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }

# tree PID: PID and its direct children (nginx workers, postgres backends).
tree() {
    [[ -n $1 ]] || return 0
    echo "$1"
    awk -v p="$1" '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null || true
}

# ticks PID...: user + system ticks of these processes (all their threads).
ticks() {
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

# preempted PID...: involuntary context switches of these processes' threads
# so far: how often a thread ready to go on was pushed off its core (by wrk,
# on shared cores).
preempted() {
    local n=0 p f v
    for p in "$@"; do
        for f in /proc/"$p"/task/*/status; do
            # A thread may end between the glob and the read.
            v=$(awk '/^nonvoluntary_ctxt_switches/ {n = $2} END {print n + 0}' "$f" 2>/dev/null) || true
            n=$((n + ${v:-0}))
        done
    done
    echo "$n"
}

# load NAME TARGET URL [VAR=value ...]: a warm-up, then the measured wrk run
# with benches/wrk/checked.lua checking every response. TARGET (asapd or
# nginx) is the server whose CPU is counted; VARs go to the Lua script.
load() {
    local name=$1 target=$2 url=$3 srv m0 m1 s0 s1 d0 d1 wall0 wall1
    shift 3
    say "wrk $name: $url (${DURATION}s, $CONNS connections, $THREADS threads)"
    env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s benches/wrk/checked.lua "$url" >/dev/null
    case $target in
        asapd) srv=$SERVER_PID ;;
        nginx) srv=$(tree "$NGINX_PID") ;;
    esac
    m0=$(machine_ticks) s0=$(ticks $srv) d0=$(ticks $(tree "$PG_PID")) wall0=$(date +%s.%N)
    local p0 p1
    p0=$(preempted $srv)
    local TIMEFORMAT='%U %S'
    { time env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
        -s benches/wrk/checked.lua "$url" >"$RES/$name.wrk"; } 2>"$RES/$name.time"
    m1=$(machine_ticks) s1=$(ticks $srv) d1=$(ticks $(tree "$PG_PID")) wall1=$(date +%s.%N)
    p1=$(preempted $srv)
    grep '^WRK_RESULT ' "$RES/$name.wrk" | sed 's/^WRK_RESULT //' >"$RES/$name.json"
    # Cores used on average during the measured run, per consumer.
    awk -v hz="$HZ" -v m0="$m0" -v m1="$m1" -v s="$((s1 - s0))" -v d="$((d1 - d0))" \
        -v w0="$wall0" -v w1="$wall1" -v wrk="$(tail -n1 "$RES/$name.time")" -v pre="$((p1 - p0))" '
        BEGIN {
            split(m0, a, " "); split(m1, b, " "); split(wrk, c, " ")
            wall = w1 - w0
            busy = (b[1] - a[1]) / hz; steal = (b[2] - a[2]) / hz
            server = s / hz; db = d / hz; load = c[1] + c[2]
            other = busy - server - db - load; if (other < 0) other = 0
            printf "{\"wall_s\":%.2f,\"server_cores\":%.2f,\"db_cores\":%.2f,\"wrk_cores\":%.2f,\"other_cores\":%.2f,\"steal_cores\":%.2f,\"server_preempted\":%d}\n",
                wall, server / wall, db / wall, load / wall, other / wall, steal / wall, pre
        }' >"$RES/$name.cpu"
    cat "$RES/$name.json" "$RES/$name.cpu" >&2
}

# admin METHOD PATH BODY: an admin API call that must succeed; prints the body.
admin() {
    local out code
    out=$(mktemp "$WORK/admin.XXXXXX")
    code=$(curl -ks -o "$out" -w '%{http_code}' -X "$1" -u "admin:$ADMIN_SECRET" \
        -H 'content-type: application/json' "$SERVER_URL$2" -d "$3")
    [[ $code == 2* ]] || { cat "$out" >&2; die "$1 $2 answered $code"; }
    cat "$out"
}

# setup_callers: a group granting svc-b, one caller per algorithm. The rate
# limit is set to its maximum: this measures issuing, not the limiter.
setup_callers() {
    admin POST /v1/admin/groups '{"name": "bench", "audiences": ["svc-b"], "max_lifetime": 600}' >/dev/null
    local alg created
    for alg in ES256 RS256; do
        created=$(admin POST /v1/admin/callers "{\"name\": \"bench-${alg,,}\", \"groups\": [\"bench\"],
            \"algorithm\": \"$alg\", \"rate_limit\": {\"per_second\": 1000000, \"burst\": 1000000}}")
        printf -v "SECRET_$alg" '%s' "$(json client_secret <<<"$created")"
        printf -v "KID_$alg" '%s' "$(json kid <<<"$created")"
        local s=SECRET_$alg k=KID_$alg
        [[ -n ${!s} && -n ${!k} ]] || die "creating caller bench-${alg,,} gave no secret or kid: $created"
    done
    # The audience, which introspects the tokens sent to it.
    created=$(admin POST /v1/admin/callers '{"name": "svc-b",
        "rate_limit": {"per_second": 1000000, "burst": 1000000}}')
    SECRET_SVCB=$(json client_secret <<<"$created")
}

# introspect DB: POST /oauth2/introspect by svc-b of one ES256 token for it,
# on the server that just measured issuance: report.py divides this rate by
# 1/(1/healthz + 1/ES256 verify on all cores), both measured just before.
introspect() {
    local db=$1 token
    # The ceiling's two rates again, right before the load it judges: the
    # machine's speed drifts by ±15 % from minute to minute, and the run's
    # first figures are minutes old by now. report.py uses these (and says
    # what the run's first ones would have given).
    $CARGO bench --locked --bench sign -- --secs 2 --verify-only >"$RES/verify-$db.json"
    load "healthz-next-$db" asapd "$SERVER_URL/healthz" BENCH_EXPECT='"ok"'
    token=$(curl -ks -u "bench-es256:$SECRET_ES256" -H 'content-type: application/json' \
        -d '{"audience": "svc-b", "lifetime": 600}' "$SERVER_URL/v1/tokens" | json token) \
        || die "no token to introspect"
    load "introspect-$db" asapd "$SERVER_URL/oauth2/introspect" BENCH_METHOD=POST \
        BENCH_BODY="token=$token" BENCH_CONTENT_TYPE=application/x-www-form-urlencoded \
        BENCH_AUTH="Basic $(printf '%s' "svc-b:$SECRET_SVCB" | base64 -w0)" BENCH_EXPECT='"active":true'
    rss "introspect-$db"
    # The same with 2,048 distinct tokens in turn: repeats of one token
    # fold into one audit row per commit (README, "Introspection and
    # revocation"); these barely do, so this is introspection paying a row
    # per request.
    python3 benches/tokens_file.py "$SERVER_URL" "bench-es256:$SECRET_ES256" svc-b 2048 \
        >"$WORK/introspect-bodies" || die "no tokens to introspect"
    load "introspect-distinct-$db" asapd "$SERVER_URL/oauth2/introspect" BENCH_METHOD=POST \
        BENCH_BODIES="$WORK/introspect-bodies" BENCH_CONTENT_TYPE=application/x-www-form-urlencoded \
        BENCH_AUTH="Basic $(printf '%s' "svc-b:$SECRET_SVCB" | base64 -w0)" BENCH_EXPECT='"active":true'
}

# tokens DB: POST /v1/tokens for each algorithm, unless the endpoint is missing.
tokens() {
    local db=$1 alg secret auth code body
    for alg in ES256 RS256; do
        secret=SECRET_$alg
        auth="Basic $(printf '%s' "bench-${alg,,}:${!secret}" | base64 -w0)"
        body=$(mktemp "$WORK/probe.XXXXXX")
        code=$(curl -ks -o "$body" -w '%{http_code}' -X POST -H "Authorization: $auth" \
            -H 'content-type: application/json' -d '{"audience": "svc-b"}' "$SERVER_URL/v1/tokens")
        if [[ $code == 404 ]]; then
            echo "POST /v1/tokens answered 404: endpoint missing in this build" >&2
            echo missing >"$RES/token-$db-$alg.missing"
            continue
        fi
        [[ $code == 200 ]] || echo "bench: warning: probe POST /v1/tokens answered $code: $(head -c 300 "$body")" >&2
        load "token-$db-$alg" asapd "$SERVER_URL/v1/tokens" BENCH_METHOD=POST \
            BENCH_BODY='{"audience": "svc-b"}' BENCH_AUTH="$auth" BENCH_EXPECT='"token":"ey'
        rss "token-$db-$alg"
    done
}

# federated_tokens DB: POST /v1/tokens by an ES256 caller that authenticates
# with a Kubernetes-like RS256 token of a trusted issuer (a second asapd over
# HTTPS, benches/federated.sh) instead of a secret, right after `tokens`:
# report.py sets it beside ES256 with a secret from the same server.
source benches/federated.sh
federated_tokens() {
    local db=$1
    federated_setup "$SERVER_URL" "$ADMIN_SECRET" "$WORK/federated-$db"
    PIDS+=("$FED_PID")
    load "token-$db-federated" asapd "$SERVER_URL/v1/tokens" BENCH_METHOD=POST \
        BENCH_BODY='{"audience": "svc-b"}' BENCH_AUTH="$FED_AUTH" BENCH_EXPECT='"token":"ey'
    federated_stop
}

# init_admin ARGS...: `asapd init --json` on a fresh database.
init_admin() {
    ADMIN_SECRET=$("$BIN" init --json "$@" 2>"$WORK/init.log" | json client_secret)
}

# --- nginx: the same PEM as a static file, same URL path ---------------------------
# A minimal config: 2 workers (one per core, like asapd's default), no
# access log, keep-alive not cut after N requests (asapd never cuts it), the
# same self-signed P-256 certificate as asapd for the HTTPS pair.
NGX=$WORK/nginx
mkdir -p "$NGX/root" "$NGX/tmp"
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$WORK/tls-key.pem" -out "$WORK/tls-cert.pem" -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 644 "$WORK/tls-key.pem"   # scratch key for 127.0.0.1; nginx workers read nothing else
NGX_HTTP=$(free_port)
NGX_HTTPS=$(free_port)
cat >"$NGX/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/x-pem-file;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_HTTP;
        root $NGX/root;
    }
    server {
        listen 127.0.0.1:$NGX_HTTPS ssl;
        ssl_certificate $WORK/tls-cert.pem;
        ssl_certificate_key $WORK/tls-key.pem;
        root $NGX/root;
    }
}
EOF

# --- 3a. SQLite server, plain HTTP ----------------------------------------------
say "asapd serve, SQLite, plain HTTP"
DATA=$WORK/data-sqlite
init_admin --data-dir "$DATA"
start_asapd sqlite http --data-dir "$DATA"
setup_callers
rss start-sqlite

# The PEM nginx serves is the one asapd serves, at the same path.
KID=$KID_ES256
mkdir -p "$NGX/root/v1/keys/$(dirname "$KID")"
curl -sf "$SERVER_URL/v1/keys/$KID" >"$NGX/root/v1/keys/$KID"
chmod -R a+rX "$NGX"
"$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$NGX_HTTP/v1/keys/$KID" >/dev/null && break; sleep 0.1; done
cmp -s <(curl -s "http://127.0.0.1:$NGX_HTTP/v1/keys/$KID") <(curl -s "$SERVER_URL/v1/keys/$KID") \
    || die "nginx does not serve the same PEM as asapd"

PEM_EXPECT='-----BEGIN PUBLIC KEY-----'
load healthz-sqlite asapd "$SERVER_URL/healthz" BENCH_EXPECT='"ok"'
rss healthz-sqlite
load keys-asapd-http asapd "$SERVER_URL/v1/keys/$KID" BENCH_EXPECT="$PEM_EXPECT"
rss keys-http
load keys-nginx-http nginx "http://127.0.0.1:$NGX_HTTP/v1/keys/$KID" BENCH_EXPECT="$PEM_EXPECT"
# What a CDN or a verifier's HTTP cache sends once its copy is stale.
ETAG=$(curl -sf -D - -o /dev/null "$SERVER_URL/v1/keys/$KID" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
[[ -n $ETAG ]] || die "GET /v1/keys/$KID has no ETag"
load keys-asapd-inm asapd "$SERVER_URL/v1/keys/$KID" BENCH_HEADER="If-None-Match: $ETAG" BENCH_STATUS=304
tokens sqlite
federated_tokens sqlite
introspect sqlite
stop_asapd

# --- 3a'. the same issuance with the keys in a SoftHSM2 token (PKCS#11) -------------
if command -v softhsm2-util >/dev/null; then
    say "asapd serve, SQLite, keys.backend = pkcs11 (SoftHSM2)"
    HSM=$WORK/hsm
    mkdir -p "$HSM/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$HSM/tokens" >"$HSM/softhsm2.conf"
    export SOFTHSM2_CONF=$HSM/softhsm2.conf
    softhsm2-util --init-token --free --label asapd-bench --so-pin 87654321 --pin 0123456 >/dev/null
    export ASAPD_KEYS__BACKEND=pkcs11 ASAPD_PKCS11__TOKEN_LABEL=asapd-bench ASAPD_PKCS11__PIN=0123456
    export ASAPD_PKCS11__MODULE=${ASAPD_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
    export ASAPD_PKCS11__SESSIONS=$(nproc)
    DATA_HSM=$WORK/data-pkcs11
    init_admin --data-dir "$DATA_HSM"
    start_asapd pkcs11 http --data-dir "$DATA_HSM"
    setup_callers
    tokens pkcs11
    stop_asapd
    unset SOFTHSM2_CONF ASAPD_KEYS__BACKEND ASAPD_PKCS11__TOKEN_LABEL ASAPD_PKCS11__PIN \
        ASAPD_PKCS11__MODULE ASAPD_PKCS11__SESSIONS
fi

# --- 3b. the same database over HTTPS (key endpoint only) --------------------------
say "asapd serve, SQLite, HTTPS (rustls)"
start_asapd sqlite-https https --data-dir "$DATA" --tls-cert "$WORK/tls-cert.pem" --tls-key "$WORK/tls-key.pem"
load keys-asapd-https asapd "$SERVER_URL/v1/keys/$KID" BENCH_EXPECT="$PEM_EXPECT"
rss keys-https
load keys-nginx-https nginx "https://127.0.0.1:$NGX_HTTPS/v1/keys/$KID" BENCH_EXPECT="$PEM_EXPECT"
stop_asapd

# --- 3c. PostgreSQL server, plain HTTP ----------------------------------------------
if [[ -n $PG_URL_BASE ]]; then
    say "asapd serve, PostgreSQL, plain HTTP"
    PG_URL=$PG_URL_BASE/asapd_bench
    init_admin --data-dir "$WORK/data-pg" --database-url "$PG_URL"
    start_asapd postgres http --data-dir "$WORK/data-pg" --database-url "$PG_URL"
    setup_callers
    rss start-postgres
    load healthz-postgres asapd "$SERVER_URL/healthz" BENCH_EXPECT='"ok"'
    rss healthz-postgres
    tokens postgres
    federated_tokens postgres
    introspect postgres
    stop_asapd
fi

# --- 3d. two replicas on one PostgreSQL: the fleet ------------------------------------
# load_pair NAME URL_A URL_B VAR=value...: one wrk per replica at the same
# time, each with half the threads and connections; NAME.json sums them.
load_pair() {
    local name=$1 url_a=$2 url_b=$3 half=$((CONNS / 2)) t=$((THREADS > 1 ? THREADS / 2 : 1)) pa pb
    shift 3
    say "wrk $name: $url_a + $url_b (${DURATION}s, $half connections and $t thread(s) each)"
    env "$@" wrk -t"$t" -c"$half" -d"${WARMUP}s" -s benches/wrk/checked.lua "$url_a" >/dev/null & pa=$!
    env "$@" wrk -t"$t" -c"$half" -d"${WARMUP}s" -s benches/wrk/checked.lua "$url_b" >/dev/null & pb=$!
    wait "$pa" "$pb"
    env "$@" wrk -t"$t" -c"$half" -d"${DURATION}s" --latency -s benches/wrk/checked.lua "$url_a" >"$RES/$name-a.wrk" & pa=$!
    env "$@" wrk -t"$t" -c"$half" -d"${DURATION}s" --latency -s benches/wrk/checked.lua "$url_b" >"$RES/$name-b.wrk" & pb=$!
    wait "$pa" "$pb"
    python3 - "$RES/$name-a.wrk" "$RES/$name-b.wrk" >"$RES/$name.json" <<'PY'
import json, sys
runs = [json.loads(next(l for l in open(p) if l.startswith("WRK_RESULT "))[11:]) for p in sys.argv[1:]]
total = {k: sum(r[k] for r in runs) for k in ("requests", "rps", "non200", "bad_body", "socket_errors")}
total.update(duration_s=max(r["duration_s"] for r in runs), p50_us=max(r["p50_us"] for r in runs),
             p99_us=max(r["p99_us"] for r in runs), max_us=max(r["max_us"] for r in runs),
             first_bad=next((r["first_bad"] for r in runs if r["first_bad"]), ""))
print(json.dumps(total))
PY
    cat "$RES/$name.json" >&2
}

if [[ -n $PG_URL_BASE ]]; then
    say "two asapd replicas on one PostgreSQL (the fleet)"
    FLEET_URL=$PG_URL_BASE/asapd_fleet
    init_admin --data-dir "$WORK/data-fleet" --database-url "$FLEET_URL"
    # The limit is set well above what the two replicas reach, so nothing
    # is refused and the run measures what leasing costs: a slice of
    # 10,000 tokens, about two leases a second per replica.
    FLEET_CALLER=no
    # Alternating the two scopes twice: a neighbour's load hits both.
    for run in fleet-1 replica-1 fleet-2 replica-2; do
        export ASAPD_TOKENS__RATE_LIMIT_SCOPE=${run%-*}
        start_asapd "$run-a" http --data-dir "$WORK/data-fleet" --database-url "$FLEET_URL"
        A_PID=$SERVER_PID A_URL=$SERVER_URL
        start_asapd "$run-b" http --data-dir "$WORK/data-fleet" --database-url "$FLEET_URL"
        B_PID=$SERVER_PID B_URL=$SERVER_URL
        if [[ $FLEET_CALLER == no ]]; then
            admin POST /v1/admin/groups '{"name": "bench", "audiences": ["svc-b"], "max_lifetime": 600}' >/dev/null
            FLEET_SECRET=$(admin POST /v1/admin/callers '{"name": "fleet-es256", "groups": ["bench"],
                "algorithm": "ES256", "rate_limit": {"per_second": 100000, "burst": 100000}}' | json client_secret)
            FLEET_CALLER=yes
        fi
        auth="Basic $(printf '%s' "fleet-es256:$FLEET_SECRET" | base64 -w0)"
        load_pair "fleet-tokens-$run" "$A_URL/v1/tokens" "$B_URL/v1/tokens" BENCH_METHOD=POST \
            BENCH_BODY='{"audience": "svc-b"}' BENCH_AUTH="$auth" BENCH_EXPECT='"token":"ey'
        SERVER_PID=$B_PID; stop_asapd
        SERVER_PID=$A_PID; stop_asapd
    done
    unset ASAPD_TOKENS__RATE_LIMIT_SCOPE
fi

# --- 4. the table ---------------------------------------------------------------------
say "report"
python3 benches/report.py "$RES" benches/RESULTS.md
