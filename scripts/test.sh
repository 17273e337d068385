#!/usr/bin/env bash
# The whole check, as CI runs it: install, generated code up to date, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh train,dev
. .venv/bin/activate
python scripts/generate_proto.py --check
ruff check .
mypy -p recsvc -p recsvc_training -p benchmarks
pytest "$@"
