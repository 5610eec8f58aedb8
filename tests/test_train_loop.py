"""``train()`` on tiny models: the loss falls, outputs are complete, resume is exact, new-only freezes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sn29_growth.loading import load_model
from sn29_growth.tiny import build_tiny
from sn29_growth.train import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    train,
)
from sn29_growth.train.checkpoint import latest_checkpoint, list_checkpoints
from sn29_growth.train.loop import LOG_FILE, PLOT_FILE, SUMMARY_FILE


def small_config(**overrides) -> TrainConfig:
    kw = dict(
        steps=6,
        eval_every=0,
        optimizer=OptimizerConfig(lr=3e-3),
        schedule=ScheduleConfig(warmup_steps=2),
        batch=BatchConfig(batch_size=4, seq_len=32, eval_windows=16),
        checkpoint=CheckpointConfig(save_every=0),
        progress=False,
    )
    kw.update(overrides)
    return TrainConfig(**kw)


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def records(out, kind):
    lines = (out / LOG_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture
def base(save_tiny):
    return save_tiny(build_tiny("llama-gqa", seed=0), "base")


def test_loss_falls_and_outputs_are_complete(base, tmp_path):
    out = tmp_path / "out"
    config = small_config(
        steps=30, eval_every=15, batch=BatchConfig(batch_size=8, seq_len=64, eval_windows=24)
    )
    result = train(base, out, config)
    assert result.complete and result.steps == 30 and result.tokens == 30 * 8 * 64
    assert result.final_val_loss < result.initial_val_loss - 0.5, result
    assert result.tokens_per_s > 0 and result.world_size == 1 and result.compute_dtype == "float32"
    evals = records(out, "eval")
    assert [r["step"] for r in evals] == [0, 15, 30]
    assert [r["step"] for r in records(out, "train")] == list(range(1, 31))
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["final_val_loss"] == result.final_val_loss and summary["config"]["steps"] == 30
    model = load_model(out)  # a loadable checkpoint with the source's tokenizer, byte for byte
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes()
    final = weights(out)
    assert set(final) == set(weights(base))
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items() if k in final)
    with pytest.raises(FileExistsError):
        train(base, out, config)  # never silently overwrites a run


def test_resume_is_bit_exact(base, tmp_path):
    config = small_config(schedule=ScheduleConfig(warmup_steps=2, kind="cosine"))
    straight = train(base, tmp_path / "straight", config)
    first = train(base, tmp_path / "split", small_config(stop_after=3))
    assert not first.complete and first.steps == 3
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["step-00000003"]
    assert not (tmp_path / "split" / "model.safetensors").exists()
    resumed = train(
        base, tmp_path / "split", small_config(checkpoint=CheckpointConfig(save_every=0, resume=True))
    )
    assert resumed.complete and resumed.resumed_from == 3 and resumed.tokens == straight.tokens
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in records(tmp_path / "split", "train")] == [
        r["loss"] for r in records(tmp_path / "straight", "train")
    ]
    again = train(base, tmp_path / "split", small_config(checkpoint=CheckpointConfig(resume=True)))
    assert again == resumed  # a complete run is not trained again


def test_resume_refuses_a_different_batch_geometry(base, tmp_path):
    train(base, tmp_path / "run", small_config(stop_after=2))
    (tmp_path / "run" / "checkpoints" / ".step-00000009.abc.partial").mkdir()  # a save killed midway
    assert latest_checkpoint(tmp_path / "run").name == "step-00000002"
    with pytest.raises(ValueError, match="seq_len"):
        train(
            base,
            tmp_path / "run",
            small_config(
                batch=BatchConfig(batch_size=4, seq_len=16), checkpoint=CheckpointConfig(resume=True)
            ),
        )


def grown(save_tiny):
    """A tiny model whose layer-0 MLP has 32 'new' units (down_proj columns zero) and a recipe saying so."""
    model = build_tiny("llama-mha", seed=1)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[:, 128:] = 0
    path = save_tiny(model, "grown")
    recipe = {
        "new_slices": [
            {"name": "model.layers.0.mlp.gate_proj.weight", "index": [[128, 160], [0, 64]]},
            {"name": "model.layers.0.mlp.up_proj.weight", "index": [[128, 160], [0, 64]]},
            {"name": "model.layers.0.mlp.down_proj.weight", "index": [[0, 64], [128, 160]]},
        ]
    }
    (path / "growth_recipe.json").write_text(json.dumps(recipe))
    return path


def test_new_only_steps_leave_old_elements_bit_identical(save_tiny, tmp_path):
    path = grown(save_tiny)
    config = small_config(
        steps=3,
        optimizer=OptimizerConfig(lr=1e-2, weight_decay=0.1),
        schedule=ScheduleConfig(warmup_steps=0, new_lr_warmup=2, new_only_steps=3),
    )
    result = train(path, tmp_path / "out", config)
    assert result.new_elements == 3 * 32 * 64
    before, after = weights(path), weights(tmp_path / "out")
    rows, cols = slice(128, 160), slice(128, 160)
    for name, b in before.items():
        a = after[name]
        if name == "model.layers.0.mlp.gate_proj.weight" or name == "model.layers.0.mlp.up_proj.weight":
            assert torch.equal(a[:128], b[:128]) and not torch.equal(a[rows], b[rows])
        elif name == "model.layers.0.mlp.down_proj.weight":
            assert torch.equal(a[:, :128], b[:, :128]) and not torch.equal(a[:, cols], b[:, cols])
        else:
            assert torch.equal(a, b), name
    lrs = records(tmp_path / "out", "train")
    assert [r["lr"] for r in lrs] == [0.0, 0.0, 0.0]
    assert [r["new_lr"] for r in lrs] == pytest.approx([5e-3, 5.5e-3, 1e-3])  # re-warm × cosine


def test_new_only_steps_need_a_recipe(base, tmp_path):
    with pytest.raises(ValueError, match="new_only_steps"):
        train(base, tmp_path / "out", small_config(schedule=ScheduleConfig(new_only_steps=2)))


def test_accumulation_and_checkpointing_match_one_big_batch(base, tmp_path):
    """4 windows in one micro-batch = 2 × 2 accumulated = with activation recomputation (fp32 reordering)."""
    plain = train(base, tmp_path / "plain", small_config(steps=3))
    accum = train(
        base,
        tmp_path / "accum",
        small_config(
            steps=3, grad_checkpointing=True, batch=BatchConfig(batch_size=2, seq_len=32, grad_accum=2)
        ),
    )
    assert accum.tokens == plain.tokens
    la = [r["loss"] for r in records(tmp_path / "plain", "train")]
    lb = [r["loss"] for r in records(tmp_path / "accum", "train")]
    assert la == pytest.approx(lb, abs=1e-5)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "accum")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_bf16_autocast_and_bf16_output(base, tmp_path):
    """The GPU recipe (bf16 autocast over fp32 master weights) runs on the CPU too; the final model can be
    written in bf16 while checkpoints stay fp32 for exact resume."""
    config = small_config(
        steps=2, dtype="bfloat16", save_dtype="bfloat16", checkpoint=CheckpointConfig(save_every=2)
    )
    result = train(base, tmp_path / "out", config)
    assert result.compute_dtype == "bfloat16"
    losses = [r["loss"] for r in records(tmp_path / "out", "train")]
    assert all(5.0 < x < 8.0 for x in losses)
    assert {v.dtype for v in weights(tmp_path / "out").values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    ckpt = latest_checkpoint(tmp_path / "out")
    assert {v.dtype for v in weights(ckpt).values()} == {torch.float32}
    assert load_model(tmp_path / "out", dtype=torch.bfloat16) is not None


def test_trained_config_is_in_the_network_s_keys_and_keeps_the_source_s(save_tiny, tmp_path):
    """``sn29 train`` used to write transformers 5's ``rope_parameters``/``dtype``: the network's 4.44 then
    ran a Llama-3 model with rope_theta 10000. Checkpoints and the final model keep the source's keys."""
    from sn29_growth.network.rules import check_model

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}  # fmt: skip
    base = save_tiny(build_tiny("llama-gqa", seed=0, rope_theta=500000.0, rope_scaling=dict(rope)), "llama3")
    source = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(dict(source, my_custom_key={"kept": [1, 2]})))
    train(base, tmp_path / "out", small_config(steps=2, checkpoint=CheckpointConfig(save_every=2)))
    for folder in (tmp_path / "out", *sorted((tmp_path / "out" / "checkpoints").iterdir())):
        written = json.loads((folder / "config.json").read_text())
        assert written["rope_theta"] == 500000.0 and written["rope_scaling"] == rope, folder
        assert "rope_parameters" not in written and "dtype" not in written
        assert written["my_custom_key"] == {"kept": [1, 2]} and written["torch_dtype"] == "float32"
    assert check_model(tmp_path / "out").ok
