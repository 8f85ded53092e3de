#!/usr/bin/env bash
# A throwaway PostgreSQL 15 on 127.0.0.1 for tests: trust auth, no fsync,
# socket and data inside DIR, so nothing outside DIR is touched.
#
#   scripts/pg-test-server.sh start DIR PORT   # URL: postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg-test-server.sh stop DIR
#
# PG_TEST_FSYNC=on keeps fsync on (benches/run.sh: commits then cost what
# they cost in production); the default, off, is for test speed.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin

die() { echo "pg-test-server: error: $*" >&2; exit 1; }
say() { echo "pg-test-server: $*"; }

usage() { die "usage: $0 start DIR PORT | stop DIR"; }

# initdb and postgres refuse to run as root: root runs them as postgres,
# anyone else as themselves (the data directory is theirs).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The PID of a live postmaster for DIR, or nothing. A stale postmaster.pid
# (left by a crash) does not count.
running_pid() {
    local pidfile=$1/data/postmaster.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(head -n1 "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

ensure_installed() {
    [[ -x $PGBIN/initdb ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "$PGBIN/initdb is missing; install postgresql-15 (needs root)"
    say "installing postgresql-15 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql-15
    [[ -x $PGBIN/initdb ]] || die "postgresql-15 installed but $PGBIN/initdb is still missing"
}

start() {
    local dir=$1 port=$2
    [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    local fsync=${PG_TEST_FSYNC:-off}
    [[ $fsync == on || $fsync == off ]] || die "PG_TEST_FSYNC must be on or off, got '$fsync'"
    ensure_installed
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)   # the socket dir (-k) must be absolute
    if [[ -n $(running_pid "$dir") ]]; then
        say "already running in $dir (pid $(running_pid "$dir")); leaving it"
        return 0
    fi
    [[ $(id -u) -ne 0 ]] || chown postgres: "$dir"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
            --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed in $dir/data"; }
    fi
    # max_connections: the test suites open many pools in parallel.
    if ! as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=$fsync -c max_connections=300" \
            start >/dev/null; then
        tail -n 20 "$dir/log" >&2 || true
        die "PostgreSQL did not start on 127.0.0.1:$port (port taken? see $dir/log)"
    fi
    say "running on 127.0.0.1:$port (data $dir/data, log $dir/log)"
}

stop() {
    local dir=$1 pid i
    pid=$(running_pid "$dir")
    if [[ -z $pid ]]; then say "not running in $dir"; return 0; fi
    # SIGINT = "fast" shutdown: abort sessions, no checkpoint wait worth having.
    kill -INT "$pid"
    # The postmaster removes postmaster.pid as it exits; checking the file too
    # covers a reaped-late (zombie) process, which kill -0 still sees.
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null || [[ ! -f $dir/data/postmaster.pid ]]; then
            say "stopped (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    die "PostgreSQL (pid $pid) did not stop within 30 s; see $dir/log"
}

case ${1:-} in
    start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    *) usage ;;
esac
