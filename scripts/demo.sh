#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default: `sn29 demo` (no chain, no Hub, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "==> sn29 demo $*"
exec .venv/bin/sn29 demo "$@"
