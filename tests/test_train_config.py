"""Training configs, the learning-rate schedule and the growth recipe's new slices."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sn29_growth.tiny import build_tiny
from sn29_growth.train.config import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from sn29_growth.train.recipe import NewSlice, build_masks, parse_new_slices, read_new_slices
from sn29_growth.train.schedule import base_factor, learning_rates, new_factor


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: OptimizerConfig(lr=0), "lr"),
        (lambda: OptimizerConfig(lr=float("nan")), "lr"),
        (lambda: OptimizerConfig(weight_decay=-0.1), "weight_decay"),
        (lambda: OptimizerConfig(beta2=1.0), "beta2"),
        (lambda: OptimizerConfig(grad_clip=-1), "grad_clip"),
        (lambda: ScheduleConfig(kind="exp"), "kind"),
        (lambda: ScheduleConfig(warmup_steps=-1), "warmup_steps"),
        (lambda: ScheduleConfig(min_lr_ratio=1.5), "min_lr_ratio"),
        (lambda: ScheduleConfig(new_lr_warmup=1.5), "new_lr_warmup"),
        (lambda: ScheduleConfig(new_only_steps=-2), "new_only_steps"),
        (lambda: BatchConfig(batch_size=0), "batch_size"),
        (lambda: BatchConfig(seq_len=1), "seq_len"),
        (lambda: BatchConfig(grad_accum=0), "grad_accum"),
        (lambda: CheckpointConfig(keep=0), "keep"),
        (lambda: CheckpointConfig(save_every=-1), "save_every"),
        (lambda: TrainConfig(steps=0), "steps"),
        (lambda: TrainConfig(stop_after=0), "stop_after"),
        (lambda: TrainConfig(device="tpu"), "device"),
        (lambda: TrainConfig(dtype="float16"), "dtype"),
        (lambda: TrainConfig(save_dtype="int8"), "save_dtype"),
        (lambda: TrainConfig(steps=5, schedule=ScheduleConfig(new_only_steps=6)), "new_only_steps"),
        (lambda: TrainConfig(batch={"batch_size": 2}), "batch"),
    ],
)
def test_invalid_values_name_their_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_configs_are_frozen_and_serialisable():
    config = TrainConfig(steps=7, batch=BatchConfig(seq_len=16))
    with pytest.raises(AttributeError):
        config.steps = 8  # type: ignore[misc]
    d = config.to_dict()
    assert d["steps"] == 7 and d["batch"]["seq_len"] == 16
    json.dumps(d)


def test_warmup_then_cosine_to_the_floor():
    sched = ScheduleConfig(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)
    factors = [base_factor(s, 20, sched) for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))
    mid = 4 + (19 - 4) / 2
    assert base_factor(int(mid), 20, sched) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15))
    )


def test_linear_and_constant_schedules():
    linear = ScheduleConfig(kind="linear", warmup_steps=0, min_lr_ratio=0.0)
    assert [base_factor(s, 5, linear) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    constant = ScheduleConfig(kind="constant", warmup_steps=2)
    assert [base_factor(s, 5, constant) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_new_elements_rewarm_and_old_elements_wait():
    sched = ScheduleConfig(kind="constant", warmup_steps=0, new_lr_warmup=4, new_only_steps=2)
    rates = [learning_rates(s, 10, 1e-3, sched) for s in range(6)]
    assert [r.old for r in rates] == [0.0, 0.0, 1e-3, 1e-3, 1e-3, 1e-3]
    assert [r.new for r in rates] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert new_factor(3, ScheduleConfig(new_lr_warmup=0)) == 1.0


def test_recipe_parsing_and_masks(tmp_path):
    model = build_tiny("llama-mha")
    recipe = {
        "operator": "mlp-width",  # other keys are ignored
        "new_slices": [
            {"name": "model.layers.0.mlp.gate_proj.weight", "index": [[128, 160], [0, 64]]},
            {"name": "model.layers.0.mlp.down_proj.weight", "index": [[0, 64], [128, 160]]},
            {"name": "model.layers.0.mlp.gate_proj.weight", "index": [[0, 2], [0, 64]]},
            {"name": "model.norm.weight"},
        ],
    }
    (tmp_path / "growth_recipe.json").write_text(json.dumps(recipe))
    slices = read_new_slices(tmp_path)
    assert slices[3] == NewSlice("model.norm.weight", None)
    masks = build_masks(model, slices)
    assert set(masks) == {
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.norm.weight",
    }
    gate = masks["model.layers.0.mlp.gate_proj.weight"]
    assert gate.dtype == torch.bool and gate.sum() == (32 + 2) * 64
    assert gate[128:].all() and gate[:2].all() and not gate[2:128].any()
    assert masks["model.layers.0.mlp.down_proj.weight"][:, 128:].all()
    assert masks["model.norm.weight"].all()
    assert read_new_slices(tmp_path / "nowhere") == ()
    assert parse_new_slices({"something": 1}) == ()


def test_tied_alias_maps_to_the_embedding():
    model = build_tiny("llama-tied")
    masks = build_masks(model, (NewSlice("lm_head.weight", ((1000, 1024), (0, 64))),))
    assert list(masks) == ["model.embed_tokens.weight"]
    assert masks["model.embed_tokens.weight"].sum() == 24 * 64


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        ((NewSlice("model.nope.weight", None),), "not a parameter"),
        ((NewSlice("model.norm.weight", ((0, 65),)),), "exceeds"),
        ((NewSlice("model.norm.weight", ((0, 4), (0, 4))),), "dims"),
    ],
)
def test_bad_slices_are_rejected(slices, message):
    with pytest.raises(ValueError, match=message):
        build_masks(build_tiny("llama-mha"), slices)


@pytest.mark.parametrize(
    "recipe",
    [
        {"new_slices": {"name": "x"}},
        {"new_slices": [{"index": [[0, 1]]}]},
        {"new_slices": [{"name": "x", "index": [[3, 1]]}]},
        {"new_slices": [{"name": "x", "index": [0, 1]}]},
    ],
)
def test_malformed_recipes_are_rejected(recipe):
    with pytest.raises(ValueError):
        parse_new_slices(recipe)
