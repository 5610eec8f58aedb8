#!/usr/bin/env bash
# Create or reuse .venv/ in the repo root: torch==2.13.0 (CPU build) first, then the package with [test].
# Idempotent: a stamp of pyproject.toml skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
else
  echo "==> reusing .venv ($(.venv/bin/python --version 2>&1))"
fi
stamp=".venv/.sn29-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
tokenizer_stack() {
  # The network's tokenizer stack (transformers 4.44.0 + tokenizers 0.19.1, no torch), in which every
  # tokenization runs: built once into .venv/sn29-network-tokenizers (~15 s), then only checked.
  echo "==> the network's tokenizer stack"
  .venv/bin/python -m sn29_growth.network.sidevenv
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import torch, sn29_growth, transformers_llama" 2>/dev/null; then
  echo "==> dependencies up to date (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
  tokenizer_stack
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  echo "==> installing torch==2.13.0 first (CPU build; otherwise pip resolves a multi-GB CUDA build)"
  .venv/bin/pip install -q torch==2.13.0
fi
echo "==> installing sn29-growth (editable) with test extras"
.venv/bin/pip install -q -e ".[test]"
echo "$want" > "$stamp"
tokenizer_stack
echo "==> ready: $(.venv/bin/python -c 'import torch, transformers, bittensor; print("torch", torch.__version__, "| transformers", transformers.__version__, "| bittensor", bittensor.__version__)')"
