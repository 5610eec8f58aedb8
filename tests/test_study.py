"""The growth study: config validation, the depth-copy arm, statistics, and a micro study end to end."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from sn29_growth.study import load_study_config, parse_study, summarize
from sn29_growth.study.config import GPU_CONFIG, packaged_config_text

MICRO = {
    "name": "micro",
    "seeds": [0],
    "device": "cpu",
    "dtype": "float32",
    "threads": 0,
    "keep_models": True,
    "base": {
        "variant": "llama-mha",
        "shape": {
            "hidden_size": 32,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
        },
        "steps": 3,
        "lr": 3.0e-3,
    },
    "target": {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
    },
    "train": {
        "steps": 3,
        "lr": 2.0e-3,
        "warmup_steps": 1,
        "batch_size": 2,
        "seq_len": 32,
        "eval_every": 2,
        "eval_windows": 4,
    },
    "arms": [
        {"name": "divisor", "kind": "grow", "hidden_method": "divisor"},
        {"name": "clone", "kind": "grow", "hidden_method": "clone"},
        {"name": "depth-copy", "kind": "grow", "depth": "copy"},
        {"name": "continue", "kind": "continue"},
        {"name": "scratch", "kind": "scratch"},
    ],
}
REPORT_FILES = (
    "study.json",
    "runs.csv",
    "curves.csv",
    "summary.csv",
    "summary.md",
    "loss_vs_tokens.png",
    "final_loss.png",
)


@pytest.fixture(scope="module")
def micro_study(tmp_path_factory):
    from sn29_growth.cli import main

    root = tmp_path_factory.mktemp("study")
    config = root / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO), encoding="utf-8")
    out, report = root / "out", root / "report"
    assert main(["study", "--config", str(config), "--out", str(out), "--report-dir", str(report)]) == 0
    return out, report, json.loads((report / "study.json").read_text(encoding="utf-8"))


def test_packaged_configs_load():
    default = load_study_config()
    assert len(default.seeds) >= 3
    kinds = {a.kind for a in default.arms}
    assert kinds == {"grow", "continue", "scratch"}
    methods = {a.hidden_method for a in default.arms if a.kind == "grow"}
    assert methods == {"divisor", "stock", "clone"}
    assert {a.init for a in default.arms if a.kind == "grow"} == {"trainable", "zeros"}
    assert {a.depth for a in default.arms if a.kind == "grow"} == {"identity", "copy"}
    gpu = parse_study(packaged_config_text(GPU_CONFIG), GPU_CONFIG)
    assert gpu.device == "cuda" and len(gpu.seeds) >= 3
    assert {a.name for a in gpu.arms} == {a.name for a in default.arms}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["arms"].append({"name": "divisor"}), "arms"),
        (lambda d: d["arms"][0].update(kind="shrink"), "arms[divisor].kind"),
        (lambda d: d["arms"][0].update(colour="red"), "arms[0].colour"),
        (lambda d: d["arms"][0].update(depth="stack"), "arms[divisor].depth"),
        (lambda d: d["target"].update(vocab_size=2048), "target.vocab_size"),
        (lambda d: d.update(target={}), "target"),
        (lambda d: d.update(seeds=[]), "seeds"),
        (lambda d: d.update(seeds=[1, 1]), "seeds"),
        (lambda d: d["train"].update(lr=0), "train.lr"),
        (lambda d: d["train"].update(schedule="step"), "train.schedule"),
        (lambda d: d["base"].update(variant="gpt2"), "base.variant"),
        (lambda d: d.update(device="tpu"), "device"),
        (lambda d: d.update(extra=1), "study.extra"),
    ],
)
def test_config_errors_name_the_field(change, field):
    data = json.loads(json.dumps(MICRO))
    change(data)
    with pytest.raises(ValueError, match=re.escape(field)):
        parse_study(yaml.safe_dump(data))


def _record(arm, seed, final, kind="grow"):
    curve = [{"step": 0, "tokens": 0, "val_loss": 5.0}, {"step": 2, "tokens": 64, "val_loss": final}]
    return {
        "arm": arm,
        "label": arm,
        "kind": kind,
        "seed": seed,
        "preserving": True,
        "parameters": 10,
        "tokens": 64,
        "epochs": 0.1,
        "epochs_total": 0.2,
        "loss_after_growth": 5.0,
        "delta_after_growth": 0.0,
        "final_loss": final,
        "wall_s": 1.0,
        "flops_total": 1.0,
        "curve": curve,
    }


def test_summary_pairs_gaps_by_seed():
    # b is worse than a by exactly 0.1 on every seed, although the seeds spread by 0.5: a clear gap
    # c is worse on average but not on every seed: not clear
    records = []
    for seed, offset in enumerate((0.0, 0.5, 1.0)):
        records += [_record("a", seed, 3.0 + offset), _record("b", seed, 3.1 + offset)]
        records.append(_record("c", seed, 3.0 + offset + (0.3 if seed else -0.05)))
    by = {s.arm: s for s in summarize(records)}
    assert by["a"].gap_to_best == 0.0
    assert by["b"].gap_to_best == pytest.approx(0.1)
    assert by["b"].gap_std == pytest.approx(0.0, abs=1e-12)
    assert not by["b"].exceeds_seed_spread  # 0.1 < the 0.5 seed spread of the losses themselves
    assert not by["c"].exceeds_seed_spread
    assert by["a"].final_std == pytest.approx(0.5)


def test_micro_study_outputs(micro_study):
    _, report, doc = micro_study
    for name in REPORT_FILES:
        assert (report / name).stat().st_size > 0, name
    assert (report / "loss_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((report / "runs.csv").open(encoding="utf-8")))
    assert sorted(r["arm"] for r in rows) == sorted(a["name"] for a in MICRO["arms"])
    assert "| `divisor` |" in (report / "summary.md").read_text(encoding="utf-8")


def test_micro_study_equal_terms(micro_study):
    _, _, doc = micro_study
    runs = {r["arm"]: r for r in doc["runs"]}
    base = doc["bases"][0]
    # every arm trains the same number of tokens (steps × batch × seq_len) and reports its epochs
    assert {r["tokens"] for r in runs.values()} == {3 * 2 * 32}
    assert all(
        r["epochs"] == pytest.approx(r["tokens"] / doc["data"]["tokens_per_epoch"]) for r in runs.values()
    )
    assert runs["continue"]["epochs_total"] > runs["continue"]["epochs"] == runs["scratch"]["epochs_total"]
    # every grown arm, and the scratch baseline, has the target shape's parameter count
    target = {r["parameters"] for name, r in runs.items() if name != "continue"}
    assert len(target) == 1 and target.pop() > runs["continue"]["parameters"] == base["parameters"]
    for name in ("divisor", "clone", "continue"):
        assert runs[name]["preserving"]
        assert abs(runs[name]["loss_after_growth"] - base["loss"]) <= 1e-5, name
        assert runs[name]["starts_at_base"]
    # depth copy is the non-preserving stack: it starts elsewhere
    assert not runs["depth-copy"]["preserving"]
    assert abs(runs["depth-copy"]["delta_after_growth"]) > 1e-4
    assert abs(runs["scratch"]["delta_after_growth"]) > 1e-2
    # the curve starts at step 0 and ends at the final loss
    for r in runs.values():
        assert r["curve"][0]["step"] == 0 and r["curve"][-1]["val_loss"] == r["final_loss"]


def test_depth_copy_copies_the_neighbour_writers(micro_study):
    from safetensors.torch import load_file

    out, _, doc = micro_study
    runs = {r["arm"]: r for r in doc["runs"]}
    assert runs["depth-copy"]["copied_blocks"] == [[1, 0]]
    copy = load_file(Path(out, "runs/seed-0/depth-copy/start/model.safetensors"))
    ident = load_file(Path(out, "runs/seed-0/divisor/start/model.safetensors"))
    for name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
        assert ident[f"model.layers.1.{name}"].abs().max() == 0  # identity block
        assert copy[f"model.layers.1.{name}"].abs().max() > 0
        assert (copy[f"model.layers.1.{name}"] == copy[f"model.layers.0.{name}"]).all()
    recipe = json.loads(Path(out, "runs/seed-0/depth-copy/start/growth_recipe.json").read_text())
    assert {"name": "model.layers.1.mlp.down_proj.weight", "index": None} in recipe["new_slices"]


def test_micro_study_rerun_reuses_finished_arms(micro_study, capsys):
    from sn29_growth.cli import main

    out, report, doc = micro_study
    config = out.parent / "micro.yaml"
    assert (
        main(["study", "--config", str(config), "--out", str(out), "--report-dir", str(report), "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert {s["arm"] for s in summary} == {a["name"] for a in MICRO["arms"]}
    again = json.loads((report / "study.json").read_text(encoding="utf-8"))
    assert [r["final_loss"] for r in again["runs"]] == [r["final_loss"] for r in doc["runs"]]
