"""The GPU benchmark orchestrator and its evaluation section, run at tiny shapes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_gpu  # noqa: E402
import bench_gpu_eval  # noqa: E402

ROW_KEYS = {"name", "baseline", "baseline_value", "value", "ratio", "unit", "note"}


def test_orchestrator_records_ok_missing_and_failing_sections(tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "bench_gpu_eval.py").write_text(
        "def run(*, tiny, device, work_dir, budget_s):\n"
        "    assert tiny and work_dir.is_dir() and budget_s > 0\n"
        "    return {'rows': [{'name': 'x', 'baseline': 'y', 'baseline_value': 1.0, 'value': 2.0,\n"
        "                      'ratio': 2.0, 'unit': 'tokens/s', 'note': ''}], 'device': device}\n"
    )
    (mods / "bench_gpu_train.py").write_text("def run(**kw):\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(mods))
    for name in ("bench_gpu_eval", "bench_gpu_train", "bench_gpu_pipeline"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(bench_gpu.importlib, "import_module", _only_from(mods))
    out = tmp_path / "r.json"
    results = bench_gpu.run_all(
        ["eval", "pipeline", "train"], tiny=True, device="cpu", budget_s=30, out=out, command="cmd"
    )
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(results))
    sections = written["sections"]
    assert sections["eval"]["status"] == "ok" and sections["eval"]["device"] == "cpu"
    assert sections["pipeline"]["status"] == "missing"
    assert sections["train"]["status"] == "error" and "boom" in sections["train"]["error"]
    assert all("wall_s" in s for s in sections.values())
    assert written["command"] == "cmd" and written["machine"]["torch"] and written["date"]
    assert "eval: x: 2.0 tokens/s vs y 1.0 (2.00x)" in bench_gpu.format_rows(results)


def _only_from(folder: Path):
    """import_module restricted to ``folder`` (so the real section modules in scripts/ stay out)."""
    import importlib.util

    def load(name):
        path = folder / f"{name}.py"
        if not path.exists():
            raise ModuleNotFoundError(name, name=name)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_orchestrator_flags(capsys):
    with pytest.raises(SystemExit):
        bench_gpu.main(["--sections", "eval,bogus"])
    assert "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_gpu.main(["--budget-s", "0"])


def test_sn29_like_mix():
    lengths = bench_gpu_eval.sample_lengths("mix", 400_000, 4096, seed=0)
    assert sum(lengths) >= 400_000 and max(lengths) == 4096 and min(lengths) >= 64
    share = {
        "short": sum(n for n in lengths if n < 512),
        "medium": sum(n for n in lengths if 512 <= n < 4096),
        "capped": sum(n for n in lengths if n == 4096),
    }
    total = sum(lengths)
    assert 0.05 < share["short"] / total < 0.12  # the docstring's 8 / 45 / 47 % of tokens
    assert 0.38 < share["medium"] / total < 0.52
    assert 0.40 < share["capped"] / total < 0.54
    assert set(bench_gpu_eval.sample_lengths("capped", 10_000, 4096, seed=1)) == {4096}
    assert max(bench_gpu_eval.sample_lengths("short", 10_000, 4096, seed=1)) < 512


@pytest.mark.slow
def test_tiny_run_on_cpu_writes_the_json(tmp_path):
    """The whole script as whoever has a GPU would run it, at tiny shapes on the CPU (~15-40 s);
    sections that are not there are recorded as missing."""
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "scripts/bench_gpu.py"), "--tiny", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["tiny"] and results["machine"]["device"] == "cpu"
    assert results["command"].startswith("python scripts/bench_gpu.py --tiny")
    assert set(results["sections"]) == {"eval", "pipeline", "train"}
    assert all(s["status"] in ("ok", "missing") for s in results["sections"].values()), results["sections"]
    assert proc.returncode == 0
    evaluation = results["sections"]["eval"]
    assert evaluation["status"] == "ok"
    methods = {r["name"].split(" ", 2)[2] for r in evaluation["rows"]}
    assert {"padded", "packed"} <= methods
    for row in evaluation["rows"]:
        assert set(row) == ROW_KEYS and row["ratio"] > 0
    measured = [m for m in evaluation["measurements"] if "tokens_per_s" in m]
    assert {m["set"] for m in measured} == {"mix", "short", "capped"}
    assert all(m["losses_equal"] for m in measured), measured
