#!/usr/bin/env bash
# The main job on the bundled sample: install, generate the sample retailer, train, serve, ask, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh train
exec .venv/bin/recsvc demo --workdir "${RECSVC_DEMO_DIR:-demo}" "$@"
