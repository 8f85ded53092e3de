#!/usr/bin/env bash
# What `make test` needs besides a Rust toolchain, checked in its first
# seconds rather than found missing a quarter of an hour in. As root it
# installs the missing Debian packages (what `.ci/run` relies on on a fresh
# Debian 12 machine); otherwise it prints the exact `apt-get install` line
# and exits 1.
#
#   scripts/prereqs.sh            # check, install as root
#   PREREQS_NO_INSTALL=1 scripts/prereqs.sh   # check only, even as root
#
# It also checks, when a step's pinned packages are not installed under
# target/ yet, that the package registries those steps install from answer
# (PyPI for the Python venvs, the npm registry for npm atlassian-jwt and
# newman): every step of `make test` after the Rust suites needs them once.
set -euo pipefail
# No dirname: this must run with nothing on PATH but bash.
here=${BASH_SOURCE[0]}
[[ $here == */* ]] || here=./$here
cd "${here%/*}/.."

PGBIN=/usr/lib/postgresql/15/bin

say() { echo "prereqs: $*"; }

has_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 && return 0
        [[ $c == /* && -x $c ]] && return 0
    done
    return 1
}
has_pg15() { [[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl && -x $PGBIN/createdb ]]; }
has_venv() { python3 -c 'import venv, ensurepip' 2>/dev/null; }

# One line per Debian package: the package, what needs it, and the check
# that it is there. Tools apt cannot provide are checked further down.
PACKAGES=(
    "gcc|aws-lc-rs's C code (cargo build)|has_cmd cc gcc"
    "python3|the interop, contract and fleet harnesses|has_cmd python3"
    "python3-venv|the venvs under target/ (Debian's python3 lacks ensurepip without it)|has_venv"
    "curl|readiness polls of tests/contract and scripts/dev-server.sh|has_cmd curl"
    "postgresql-15|the API suite on PostgreSQL (make test-postgres) and make fleet|has_pg15"
    "nginx|the balancer of make fleet|has_cmd nginx /usr/sbin/nginx"
    "prometheus|promtool for make promtool|has_cmd promtool"
    "chromium|GET /docs rendered headless (make docs-browser)|has_cmd chromium"
    "nodejs|npm atlassian-jwt, the qsh reference of make interop|has_cmd node nodejs"
    "npm|installs npm atlassian-jwt (interop) and newman (make postman)|has_cmd npm"
    "softhsm2|a PKCS#11 token for the HSM tests (tests/api/pkcs11.rs, make bench)|has_cmd softhsm2-util"
    "opensc|pkcs11-tool for the HSM tests|has_cmd pkcs11-tool"
)

missing=()
for entry in "${PACKAGES[@]}"; do
    IFS='|' read -r pkg why check <<<"$entry"
    # shellcheck disable=SC2086 # the check is a command and its arguments
    if ! $check; then
        say "missing $pkg: $why"
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    line="apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $EUID -eq 0 && -z ${PREREQS_NO_INSTALL:-} ]]; then
        say "$line"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends ${missing[*]}
    else
        echo "prereqs: make test cannot run all of its steps. As root, run:" >&2
        echo "" >&2
        echo "    apt-get update && $line" >&2
        echo "" >&2
        exit 1
    fi
fi

# Not from apt: the Rust toolchain (rustup.rs), at the rust-version of Cargo.toml.
if ! has_cmd cargo; then
    echo "prereqs: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi

# Reachable with a 10 s timeout: registries answer in well under that.
reachable() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=10).close()
except Exception as e:  # noqa: BLE001 -- any failure means "not reachable"
    print(f"prereqs: {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

unreachable=()
if [[ ! -x target/interop-venv/bin/pytest || ! -x target/contract-venv/bin/schemathesis ]]; then
    index=${PIP_INDEX_URL:-https://pypi.org/simple/}
    reachable "${index%/}/pip/" || unreachable+=("PyPI ($index; set PIP_INDEX_URL for a mirror)")
fi
if [[ ! -d target/qsh-npm/node_modules/atlassian-jwt || ! -x target/newman/node_modules/.bin/newman ]]; then
    registry=$(npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)
    reachable "${registry%/}/newman" || unreachable+=("the npm registry ($registry; npm config set registry for a mirror)")
fi
if ((${#unreachable[@]})); then
    for r in "${unreachable[@]}"; do echo "prereqs: not reachable: $r" >&2; done
    echo "prereqs: the first make test installs pinned packages from these into target/" >&2
    exit 1
fi
say "everything make test needs is here"
