#!/usr/bin/env bash
# Fleet test: the production topology on loopback -- PostgreSQL, two asapd
# replicas on it, nginx over TLS in front -- driven by pytest (conftest.py
# starts and stops the processes). Builds nothing: expects the asapd binary
# at $ASAPD_BIN (default target/debug/asapd). Writes the propagation figures
# to target/fleet-propagation.json.
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/fleet/harness.sh fleet
export FLEET_FIGURES=$PWD/target/fleet-propagation.json

# -p no:cacheprovider: no .pytest_cache in the source tree. -s would mix
# the figures table into the dots; pytest prints it in its summary instead.
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir tests/fleet tests/fleet "$@"
