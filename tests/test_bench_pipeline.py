"""The GPU benchmark's pipeline section runs end to end on a tiny model on the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_gpu_pipeline  # noqa: E402

KEYS = {"name", "baseline", "baseline_value", "value", "ratio", "unit", "note"}


def test_tiny_run_reports_every_stage(tmp_path):
    result = bench_gpu_pipeline.run(tiny=True, device="cpu", work_dir=tmp_path, budget_s=60)
    json.dumps(result)
    rows = {r["name"].split(" (")[0]: r for r in result["rows"]}
    assert all(set(r) == KEYS for r in result["rows"])
    assert result["shards"] > 1 and result["samples"] == 32
    hashed = rows["content hash"]
    assert hashed["value"] > 0 and hashed["baseline_value"] > 0 and hashed["ratio"] > 0
    load = rows["load onto cpu"]
    assert load["value"] > 0 and load["baseline_value"] > 0
    assert "max |direct - stock| = 0" in load["note"]
    assert rows["outside the forward passes / evaluation time"]["value"] > 0
    snap = next(tmp_path.glob("models--*/snapshots/*"))
    assert all(p.is_symlink() for p in snap.iterdir())


def test_the_full_size_shapes_are_llama_3_8b():
    shared = Path("/work/shared/data/configs/llama-3-8b.json")
    config = bench_gpu_pipeline.model_config(tiny=False)
    from sn29_growth.eval.checks import count_parameters_safe

    assert count_parameters_safe(config) == 8_030_261_248
    if shared.is_file():
        reference = json.loads(shared.read_text())
        for key, value in bench_gpu_pipeline.LLAMA3_8B.items():
            assert reference[key] == pytest.approx(value), key
