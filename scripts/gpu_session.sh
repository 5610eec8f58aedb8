#!/usr/bin/env bash
# One prepared GPU session (run on the device machine from the repository root, after scripts/gpu_prepare.sh
# here; carry [".gpu"]). Results go under $OUT (default gpu-out/): a few files, as the device returns at most 8.
#   bash scripts/gpu_session.sh bench   # GPU tests + scripts/bench_gpu.py (evaluation, pipeline, training): ~8 min
#   bash scripts/gpu_session.sh study   # sn29 study --config study_scale.yaml on study-data: ~8 min
#   bash scripts/gpu_session.sh isolation  # the per-model isolation benchmark row
# Each part fits one 10-minute command; a 15-minute device budget holds one of bench/study plus set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: gpu_session.sh bench|study|isolation}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
base=$(command -v python3)
[ -x /opt/torch/.venv/bin/python3 ] && base=/opt/torch/.venv/bin/python3
if [ ! -x .gpuvenv/bin/python ]; then
    "$base" -m venv --system-site-packages .gpuvenv  # the image's CUDA torch stays
    .gpuvenv/bin/python -m pip install --quiet --no-index --no-deps .gpu/whl/*.whl
    .gpuvenv/bin/python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
fi
PY=.gpuvenv/bin/python
"$PY" - <<'PYEOF' | tee "$OUT/versions.txt"
import torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("transformers", transformers.__version__)
PYEOF
case "$part" in
bench)
    timeout 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.log" || true
    "$PY" scripts/bench_gpu.py --device cuda --budget-s 420 --out "$OUT/gpu-results.json" 2>&1 | tee "$OUT/bench.log"
    ;;
study)
    if [ ! -f study-data/manifest.json ]; then tar -xzf .gpu/study-data.tar.gz; fi
    "$PY" -m sn29_growth.cli study --config study_scale.yaml --out gpu-work/study-scale 2>&1 | tee "$OUT/study.log"
    # at most 8 files come back: the report (JSON, CSV, Markdown, plots) as one archive, no weights
    (cd gpu-work && find study-scale -maxdepth 2 -type f \( -name '*.json' -o -name '*.csv' -o -name '*.md' \
        -o -name '*.png' \) -print0 | tar --null -czf "../$OUT/study-scale.tar.gz" -T -)
    ;;
isolation)
    "$PY" scripts/bench_isolation.py --device cuda --models 2 --hidden 2048 --layers 16 --samples 400 2>&1 | tee "$OUT/isolation.log"
    ;;
*)
    echo "unknown part: $part (bench|study|isolation)" >&2
    exit 2
    ;;
esac
