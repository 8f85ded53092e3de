#!/usr/bin/env bash
# GET /docs in headless Chromium (Debian's `chromium`), against
# `asapd serve --dev`: the page renders every operation of /openapi.json,
# no request leaves 127.0.0.1, a screenshot lands in target/docs/, and one
# "Try it out" (GET /v1/admin/callers with Basic auth) answers 200.
# check_docs.py drives Chromium over the DevTools protocol (a pipe, no
# extra packages). Builds nothing: expects $ASAPD_BIN or the debug binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v chromium >/dev/null || { echo "docs-browser: chromium is not installed (apt-get install chromium)" >&2; exit 1; }

source scripts/dev-server.sh
mkdir -p target/docs
python3 tests/docs/check_docs.py --base "$base" --user admin --password "$secret" \
    --out target/docs
