#!/usr/bin/env bash
# Set up (idempotent) and run the offline test suite and the linter. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1
echo "==> ruff check ."
.venv/bin/ruff check .
echo "==> pytest (slow and gpu tests deselected; run with -m slow / -m gpu)"
exec .venv/bin/python -m pytest -q "$@"
