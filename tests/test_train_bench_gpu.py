"""scripts/bench_gpu_train.py's section on tiny shapes on the CPU: every row is there, numbers are sane.

The FSDP2 row runs ``sn29 train`` under torchrun (one gloo process) and the plain run in float32: their
per-step losses agree to float32 summation order (as tests/test_train_compile_fsdp.py checks in-process).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu_train.py"
ROW_KEYS = {"name", "baseline", "baseline_value", "value", "ratio", "unit", "note"}


def load_section():
    spec = importlib.util.spec_from_file_location("bench_gpu_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 30 s: two model saves, five short runs, a torchrun child
def test_tiny_run_on_cpu_gives_every_row(tmp_path):
    result = load_section().run(tiny=True, device="cpu", work_dir=tmp_path, budget_s=120.0)
    json.dumps(result)  # JSON-serialisable, as the orchestrator writes it
    rows = {r["name"].split(" (")[0]: r for r in result["rows"]}
    assert all(set(r) == ROW_KEYS for r in result["rows"])
    foreach = rows["train tokens/s, foreach MaskedAdamW"]
    assert foreach["value"] > 0 and foreach["baseline_value"] > 0
    assert foreach["ratio"] == pytest.approx(foreach["value"] / foreach["baseline_value"])
    assert rows["train tokens/s, activation checkpointing"]["value"] > 0
    compiled = rows["train tokens/s, torch.compile decoder layers"]
    assert compiled["value"] is None and "CUDA" in compiled["note"]  # not measured on a CPU
    assert rows["MFU, eager"]["value"] is None
    # the two optimizers and checkpointing compute the same steps: same losses
    v = result["variants"]
    assert v["per-parameter optimizer"]["losses"] == pytest.approx(v["eager"]["losses"], abs=1e-6)
    assert v["checkpointing"]["losses"] == pytest.approx(v["eager"]["losses"], abs=1e-5)
    fsdp = rows["max |loss difference| per step, FSDP2 torchrun nproc 1"]
    assert fsdp["value"] < 1e-5 and result["fsdp"]["world_size"] == 1
    assert len(result["fsdp"]["fsdp_losses"]) == 4
