#!/usr/bin/env bash
# Prepare what a bare GPU machine needs for scripts/gpu_session.sh, in .gpu/ (git-ignored, carried):
#   .gpu/whl/               wheels of the versions this checkout's .venv runs that the GPU image lacks
#                           (its torch and CUDA stay the image's own), for CPython 3.12 on x86_64
#   .gpu/study-data.tar.gz  the study's token corpus (study-data/, from scripts/build_study_corpus.py)
# Together with the repository they stay well under the 64 MiB a device run carries.
# Then, on the device: command `bash scripts/gpu_session.sh bench` (or `study`), carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run scripts/test.sh first (it makes .venv)" >&2; exit 2; }
mkdir -p .gpu/whl
pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("transformers", "tokenizers", "huggingface_hub", "hf-xet", "httpx2", "safetensors", "accelerate")))
PYEOF
)
echo "wheels: $pins"
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --dest .gpu/whl $pins
if [ -f study-data/manifest.json ]; then
    tar -C . -czf .gpu/study-data.tar.gz.partial study-data && mv .gpu/study-data.tar.gz.partial .gpu/study-data.tar.gz
else
    echo "no study-data/ (build it: python scripts/build_study_corpus.py --download --out study-data); the study part will refuse to run" >&2
fi
du -sh .gpu/* | sed 's/^/  /'
