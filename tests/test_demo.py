"""`sn29 demo` end to end, with fewer training steps: every stage runs and tells the truth."""

from __future__ import annotations

import json

from sn29_growth.cli import main


def test_demo_runs_every_stage_offline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--base-steps", "10", "--train-steps", "30"]) == 0
    printed = capsys.readouterr().out
    assert all(f"[{i}/5]" in printed for i in range(1, 6))
    report = json.loads((out / "demo_report.json").read_text())
    assert set(report["base_models"]) == {"llama", "phi3"}
    assert report["base_models"]["llama"]["class"] == "transformers_llama.LlamaForCausalLM"
    growth = report["growth"]
    assert growth["parameters_after"] > growth["parameters_before"]
    assert abs(growth["loss_delta"]) <= 1e-5 and growth["stuck_slices"] == 0
    assert growth["network"]["ok"] and growth["network"]["findings"] == []
    assert report["miner"]["status"] == "published"
    weights = {int(k): v for k, v in report["validator"]["weights"].items()}
    rows = {r["label"]: r for r in report["validator"]["rows"]}
    assert rows["bob/tiny-llama-grown"]["win_rate"] == 1.0
    assert weights[rows["bob/tiny-llama-grown"]["uid"]] == 1.0
    # Running it again starts a fresh round and reuses the deterministic models.
    assert main(["demo", "--out", str(out), "--base-steps", "10", "--train-steps", "30"]) == 0
    again = json.loads((out / "demo_report.json").read_text())
    assert again["growth"]["loss_after"] == growth["loss_after"]
