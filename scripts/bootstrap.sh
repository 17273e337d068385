#!/usr/bin/env bash
# Create .venv (once) and install recsvc with the given extras, pinned by constraints.txt.
# Usage: scripts/bootstrap.sh EXTRAS   (e.g. "train" or "train,dev")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
  touch "$stamp"
fi
