"""The growth study at scale: token-corpus data (single epoch, disjoint slices), the arm knobs (bf16-stored
weights, no re-warm, new-only steps), the tokens-saved metrics, and the packaged scale configs run end to
end at tiny size on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from sn29_growth.study import parse_study
from sn29_growth.study.config import packaged_config_text
from sn29_growth.study.speedup import (
    arm_metrics,
    long_scratch_reached,
    loss_at,
    markdown_tokens_table,
    stat,
    study_metrics,
    summarize_metrics,
    tokens_to_reach,
)
from sn29_growth.study.token_data import TokenSlice, phase_tokens, study_slices

TINY_SHAPES = {
    "base": {
        "hidden_size": 16,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
    },
    "target": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
    },
}
ARM_NAMES = {
    "divisor",
    "stock",
    "clone",
    "zeros",
    "depth-copy",
    "continue",
    "scratch",
    "stock-bf16",
    "divisor-bf16",
    "divisor-no-rewarm",
    "divisor-new-only",
    "scratch-long",
}


@pytest.fixture(scope="module")
def token_corpus(tmp_path_factory):
    """The embedded corpus as a token corpus folder (embedded tokenizer, vocabulary 1024)."""
    from sn29_growth.study.token_data import write_embedded_token_corpus

    folder = tmp_path_factory.mktemp("tokens") / "corpus"
    write_embedded_token_corpus(folder)
    return folder


# ------------------------------------------------------------------------------------------- data


def test_slices_are_single_epoch_and_disjoint(token_corpus):
    s = study_slices(token_corpus, base_steps=5, arm_steps=3, global_batch=2, seq_len=16)
    assert (s.base.start, s.base.count) == (0, phase_tokens(5, 2, 16)) == (0, 161)
    assert s.arms.start == s.base.start + s.base.count  # the base's last target is never an arm's token
    assert s.arms.count == 97
    base, arms = s.base.token_ids(0), s.arms.token_ids(0)
    assert base.dtype == torch.int32 and base.numel() == 161 and arms.numel() == 97
    with pytest.raises(ValueError, match="single-epoch"):
        s.arms.token_ids(1)
    assert s.validation.split == "held_out"


def test_slices_refuse_a_corpus_too_small(token_corpus):
    with pytest.raises(ValueError, match=r"tokens: the base needs .* lower base.steps"):
        study_slices(token_corpus, base_steps=10_000, arm_steps=10_000, global_batch=8, seq_len=128)


def test_a_slice_trains_exactly_its_windows(token_corpus):
    from sn29_growth.train.data import DataPosition, PackedStream

    sl = TokenSlice(token_corpus, "train", 10, phase_tokens(4, 2, 8))
    stream = PackedStream(sl, None, 8, seed=0)
    position, seen = DataPosition(), []
    for _ in range(4):
        batch, position = stream.take(position, 2)
        seen.append(batch)
    windows = torch.cat(seen)
    ids = sl.token_ids(0).long()
    expected = {tuple(ids[i * 8 : i * 8 + 9].tolist()) for i in range(8)}
    assert {tuple(w.tolist()) for w in windows} == expected
    with pytest.raises(ValueError, match="single-epoch"):
        stream.take(position, 2)


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("arm", "field"),
    [
        ({"param_dtype": "float16"}, "arms[a].param_dtype"),
        ({"warmup_steps": -1}, "arms[a].warmup_steps"),
        ({"new_only_steps": 1.5}, "arms[a].new_only_steps"),
        ({"kind": "continue", "new_only_steps": 2}, "arms[a].new_only_steps"),
        ({"new_only_steps": 9999}, "arms[a].new_only_steps"),
        ({"reads": "all"}, "arms[a].reads"),
        ({"kind": "scratch", "reads": "some"}, "arms[a].reads"),
    ],
)
def test_arm_knob_errors_name_the_field(arm, field):
    data = yaml.safe_load(packaged_config_text("study_scale_cpu.yaml"))
    data["arms"] = [{"name": "a", "kind": "grow", **arm}]
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_study(yaml.safe_dump(data))


def test_tokens_replace_data_and_validation():
    data = yaml.safe_load(packaged_config_text("study_scale_cpu.yaml"))
    with pytest.raises(ValueError, match="tokens: a token corpus replaces data"):
        parse_study(yaml.safe_dump({**data, "validation": "x.jsonl"}))


@pytest.mark.parametrize("name", ["study_scale.yaml", "study_scale_cpu.yaml"])
def test_scale_configs_have_every_arm_and_two_seeds(name):
    config = parse_study(packaged_config_text(name), name)
    assert {a.name for a in config.arms} == ARM_NAMES
    assert len(config.seeds) >= 2 and config.tokens in ("study-data", "study-data-small")
    arms = {a.name: a for a in config.arms}
    assert arms["stock-bf16"].param_dtype == "bfloat16" and arms["stock-bf16"].hidden_method == "stock"
    assert arms["divisor-no-rewarm"].warmup_steps == 0
    assert arms["divisor-new-only"].new_only_steps > 0


def test_packaged_config_by_bare_name(tmp_path, monkeypatch):
    from sn29_growth.study import load_study_config

    monkeypatch.chdir(tmp_path)
    assert load_study_config("study_scale.yaml").name == "scale-h200"
    with pytest.raises(FileNotFoundError, match="--config"):
        load_study_config("nope.yaml")


def test_scale_config_sizes():
    """The GPU config: base >= 15M parameters grown about 4x to >= 50M (at its corpus's vocabulary)."""
    from sn29_growth.tiny import build_tiny

    config = parse_study(packaged_config_text("study_scale.yaml"))
    vocab = config_vocab(config)

    def count(shape):
        with torch.device("meta"):
            model = build_tiny(config.base.variant, vocab_size=vocab, **shape)
        return sum(p.numel() for p in model.parameters())

    base = count(config.base.shape)
    target = count({**config.base.shape, **config.target})
    assert base >= 15e6 and target >= 50e6 and 3.5 <= target / base <= 4.5


def config_vocab(config) -> int:
    """The vocabulary the GPU config is sized for (stated in its header comment)."""
    text = packaged_config_text("study_scale.yaml")
    line = next(x for x in text.splitlines() if "sized for vocab_size" in x)
    return int(line.split("sized for vocab_size")[1].split()[0].strip(":,"))


# ---------------------------------------------------------------------------------------- metrics

CURVE = [
    {"tokens": 0, "val_loss": 4.0},
    {"tokens": 100, "val_loss": 3.0},
    {"tokens": 200, "val_loss": 2.5},
]


def test_interpolation_between_eval_points():
    assert loss_at(CURVE, 50) == pytest.approx(3.5)
    assert loss_at(CURVE, 200) == 2.5 and loss_at(CURVE, 250) is None
    assert tokens_to_reach(CURVE, 3.5) == pytest.approx(50)
    assert tokens_to_reach(CURVE, 2.75) == pytest.approx(150)
    assert tokens_to_reach(CURVE, 4.5) == 0
    assert tokens_to_reach(CURVE, 2.0) is None


def test_reach_is_the_first_crossing_of_a_noisy_curve():
    noisy = [*CURVE, {"tokens": 300, "val_loss": 2.9}, {"tokens": 400, "val_loss": 2.0}]
    assert tokens_to_reach(noisy, 2.5) == 200
    assert tokens_to_reach(noisy, 2.25) == pytest.approx(300 + 100 * 0.65 / 0.9)


def test_arm_metrics_against_base_and_scratch():
    base = {"seed": 0, "loss": 3.2, "tokens": 1000}
    scratch = {
        "arm": "scratch",
        "kind": "scratch",
        "seed": 0,
        "final_loss": 3.0,
        "tokens": 200,
        "curve": CURVE,
    }
    grown = {
        "arm": "g",
        "kind": "grow",
        "seed": 0,
        "curve": [
            {"tokens": 0, "val_loss": 3.2},
            {"tokens": 100, "val_loss": 2.8},
            {"tokens": 200, "val_loss": 2.6},
        ],
    }
    m = arm_metrics(grown, base, scratch, margin=0.0)
    assert m["tokens_to_beat_base"] == 0  # starts at the base's loss: reached with no margin
    assert arm_metrics(grown, base, scratch, margin=0.1)["tokens_to_beat_base"] == pytest.approx(25)
    assert m["tokens_to_scratch"] == pytest.approx(50)
    assert m["tokens_to_scratch_total"] == pytest.approx(1050)
    assert m["speedup_after"] == pytest.approx(100 / 50)  # scratch first reaches 3.0 at 100 tokens
    assert m["speedup_total"] == pytest.approx(100 / 1050)
    assert m["loss_at_scratch_tokens"] == pytest.approx(2.6)
    s = arm_metrics(scratch, base, scratch, margin=0.0)
    assert s["speedup_after"] == s["speedup_total"] == 1.0 and s["tokens_to_scratch_total"] == 100
    never = {**grown, "curve": [{"tokens": 0, "val_loss": 3.5}, {"tokens": 200, "val_loss": 3.3}]}
    n = arm_metrics(never, base, scratch, margin=0.0)
    assert n["tokens_to_beat_base"] is None and n["tokens_to_scratch"] is None and n["speedup_total"] is None
    below = {**grown, "curve": [{"tokens": 0, "val_loss": 2.9}, {"tokens": 200, "val_loss": 2.7}]}
    assert math.isinf(arm_metrics(below, base, scratch, margin=0.0)["speedup_after"])


def test_speedup_against_a_long_scratch_run():
    base = {"seed": 0, "loss": 3.2, "tokens": 100}
    long = {"arm": "long", "kind": "scratch", "reads": "all", "seed": 0, "tokens": 400, "final_loss": 2.0}
    long["curve"] = [
        {"tokens": 0, "val_loss": 7.0},
        {"tokens": 200, "val_loss": 3.0},
        {"tokens": 400, "val_loss": 2.0},
    ]
    grown = {"arm": "g", "kind": "grow", "seed": 0, "tokens": 100, "final_loss": 2.5, "curve": CURVE}
    m = arm_metrics(grown, base, None, 0.0, long)
    assert m["long_scratch_tokens"] == pytest.approx(300) and m["long_scratch_reached"]
    assert m["speedup_vs_long_scratch"] == pytest.approx(300 / 200)  # 100 base + 100 after growth
    assert m["tokens_to_long_scratch_total"] is None  # the arm (2.5 at best) never reaches 2.0
    easy = {**long, "final_loss": 3.0, "curve": long["curve"][:2]}
    e = arm_metrics(grown, base, None, 0.0, easy)
    assert e["tokens_to_long_scratch_total"] == pytest.approx(100 + 100)  # 3.0 at 100 tokens after growth
    assert e["speedup_at_long_scratch_loss"] == pytest.approx(200 / 200)
    better = arm_metrics({**grown, "final_loss": 1.5}, base, None, 0.0, long)
    assert not better["long_scratch_reached"] and better["speedup_vs_long_scratch"] == pytest.approx(2.0)
    per_run = study_metrics([grown, long], [base], 0.0)
    assert per_run[("long", 0)]["long_scratch_reached"] is None
    table = markdown_tokens_table(
        summarize_metrics(study_metrics([{**grown, "final_loss": 1.5}, long], [base], 0.0)),
        100,
        {},
        long_scratch_reached(study_metrics([{**grown, "final_loss": 1.5}, long], [base], 0.0)),
    )
    assert "≥ 2.00× (long scratch never got there on 1/1 seeds)" in table


def test_stats_over_seeds_count_the_seeds_that_reached():
    s = stat([100.0, 200.0, None])
    assert (s.mean, s.reached, s.seeds) == (150.0, 2, 3)
    assert s.std == pytest.approx(math.sqrt(5000))
    assert s.text() == "150 ± 71 (2/3 seeds)"
    assert stat([None, None]).text() == "never"
    assert stat([math.inf, 3.0]).text().startswith("∞")
    bases = [{"seed": 0, "loss": 3.2, "tokens": 10}, {"seed": 1, "loss": 3.2, "tokens": 10}]
    runs = [
        {"arm": "scratch", "kind": "scratch", "seed": s, "final_loss": 2.5, "tokens": 200, "curve": CURVE}
        for s in (0, 1)
    ]
    summary = summarize_metrics(study_metrics(runs, bases, 0.0))
    assert summary["scratch"]["speedup_total"].mean == 1.0
    table = markdown_tokens_table(summary, 10, {"scratch": "scratch"})
    assert "| `scratch` | scratch |" in table and "1.00× ± 0.00×" in table


# ------------------------------------------------------------------------------------ bf16 weights


def test_bf16_param_dtype_stores_weights_in_bf16_moments_stay_fp32(tmp_path):
    from sn29_growth.study.arms import save_tiny
    from sn29_growth.tiny import build_tiny
    from sn29_growth.train import TrainConfig
    from sn29_growth.train.distributed import init_distributed
    from sn29_growth.train.loop import build_model_and_optimizer

    save_tiny(build_tiny("llama-mha", seed=0, **TINY_SHAPES["base"]), tmp_path / "m")
    ctx = init_distributed("cpu")
    for dtype, torch_dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        config = TrainConfig(device="cpu", param_dtype=dtype)
        model, optimizer, _, _ = build_model_and_optimizer(tmp_path / "m", tmp_path / "m", config, ctx)
        assert {p.dtype for p in model.parameters()} == {torch_dtype}
        model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
        optimizer.step()
        assert {p.dtype for p in model.parameters()} == {torch_dtype}  # updated in place, in that dtype
        assert {s["exp_avg"].dtype for s in optimizer.state.values()} == {torch.float32}
    with pytest.raises(ValueError, match="param_dtype"):
        TrainConfig(param_dtype="float16")


# ------------------------------------------------------------------------------ scale config, tiny


@pytest.fixture(scope="module")
def tiny_scale_study(tmp_path_factory, token_corpus):
    """study_scale.yaml with its arms and seeds, models and steps shrunk, on the tiny token corpus."""
    from sn29_growth.cli import main

    data = yaml.safe_load(packaged_config_text("study_scale.yaml"))
    data.update(device="cpu", dtype="float32", threads=0, tokens=str(token_corpus), keep_models=False)
    data["base"] = {**data["base"], "shape": TINY_SHAPES["base"], "steps": 4, "lr": 2.0e-2}
    data["target"] = TINY_SHAPES["target"]
    data["train"] = {
        **data["train"],
        "steps": 4,
        "lr": 2.0e-2,
        "warmup_steps": 2,
        "batch_size": 2,
        "seq_len": 16,
        "eval_every": 2,
        "eval_windows": 4,
    }
    for arm in data["arms"]:
        if arm.get("new_only_steps"):
            arm["new_only_steps"] = 2
    root = tmp_path_factory.mktemp("scale")
    (root / "c.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    out = root / "out"
    assert main(["study", "--config", str(root / "c.yaml"), "--out", str(out)]) == 0
    return out, json.loads((out / "study.json").read_text(encoding="utf-8"))


def _train_records(out, seed, arm):
    lines = (out / "runs" / f"seed-{seed}" / arm / "train" / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_tiny_scale_study_outputs(tiny_scale_study):
    out, doc = tiny_scale_study
    for name in ("tokens_saved.csv", "tokens_saved.md", "loss_vs_total_tokens.png", "summary.md", "runs.csv"):
        assert (out / name).is_file(), name
    assert {r["arm"] for r in doc["runs"]} == ARM_NAMES and len(doc["runs"]) == 2 * len(ARM_NAMES)
    assert set(doc["tokens_saved"]) == ARM_NAMES
    assert doc["tokens_saved"]["scratch"]["speedup_after"]["mean"] == 1.0
    assert "Tokens saved" in (out / "summary.md").read_text(encoding="utf-8")
    for r in doc["runs"]:
        assert set(r["metrics"]) >= {"tokens_to_beat_base", "speedup_total", "loss_at_scratch_tokens"}
        assert (r["metrics"]["speedup_vs_long_scratch"] is None) == (r["arm"] == "scratch-long")


def test_tiny_scale_study_reads_disjoint_single_epoch_slices(tiny_scale_study, token_corpus):
    out, doc = tiny_scale_study
    base = json.loads((out / "runs" / "seed-0" / "base" / "summary.json").read_text())["data"]
    names = {
        json.loads((out / "runs" / "seed-1" / arm / "train" / "summary.json").read_text())["data"]
        for arm in ARM_NAMES - {"scratch-long"}
    }
    assert base == f"tokens:corpus:train[0:{phase_tokens(4, 2, 16)}]"
    assert names == {f"tokens:corpus:train[{phase_tokens(4, 2, 16)}:{2 * phase_tokens(4, 2, 16)}]"}
    assert doc["bases"][0]["tokens"] == doc["runs"][0]["tokens"] == 4 * 2 * 16
    long = json.loads((out / "runs" / "seed-1" / "scratch-long" / "train" / "summary.json").read_text())
    assert long["data"] == f"tokens:corpus:train[0:{2 * phase_tokens(4, 2, 16) - 1}]"
    assert long["tokens"] == 2 * 4 * 2 * 16  # the base's tokens and the arms' tokens, one epoch


def test_tiny_scale_study_arm_knobs(tiny_scale_study):
    out, doc = tiny_scale_study
    runs = {(r["arm"], r["seed"]): r for r in doc["runs"]}
    assert (
        runs[("stock-bf16", 0)]["param_dtype"] == "bfloat16"
        and runs[("stock", 0)]["param_dtype"] == "float32"
    )
    lr = doc["config"]["train"]["lr"]
    assert _train_records(out, 0, "divisor")[0]["lr"] < lr
    assert _train_records(out, 0, "divisor-no-rewarm")[0]["lr"] == pytest.approx(lr)
    new_only = _train_records(out, 0, "divisor-new-only")
    assert [r["lr"] for r in new_only[:2]] == [0.0, 0.0] and new_only[2]["lr"] > 0
    assert all(r["new_lr"] > 0 for r in new_only)
    # preserving fp32 arms start at the base's loss; scratch above it
    assert abs(runs[("divisor", 0)]["delta_after_growth"]) < 1e-4
    assert runs[("scratch", 0)]["delta_after_growth"] > 0
