#!/usr/bin/env bash
# clients/postman/ run by newman against `asapd serve --dev`: every request's
# tests (written in the collection) must pass. newman is pinned and
# installed under target/newman (npm), not globally. Builds nothing:
# expects $ASAPD_BIN or the debug binary. Extra arguments go to newman.
set -euo pipefail
cd "$(dirname "$0")/../.."

NEWMAN_VERSION=6.2.2
prefix=target/newman
newman=$prefix/node_modules/.bin/newman
if [[ ! -x $newman ]] || [[ $("$newman" --version) != "$NEWMAN_VERSION" ]]; then
    command -v npm >/dev/null || { echo "postman: npm is not installed (apt-get install npm)" >&2; exit 1; }
    echo "postman: installing newman $NEWMAN_VERSION under $prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "newman@$NEWMAN_VERSION"
fi

source scripts/dev-server.sh
# The admin's secret and the server's URL replace the environment file's
# placeholders; the CA is the dev server's self-signed certificate.
"$newman" run clients/postman/asapd.postman_collection.json \
    -e clients/postman/asapd-dev.postman_environment.json \
    --env-var "baseUrl=$base" --env-var "adminClientSecret=$secret" \
    --ssl-extra-ca-certs "$cacert" \
    --reporters cli,json --reporter-json-export target/newman/report.json \
    --bail "$@"
