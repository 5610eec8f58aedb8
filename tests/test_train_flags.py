"""Flags take their defaults and help from the config fields: one place per default."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sn29_growth.cli import build_parser
from sn29_growth.cliutil import add_setting, field_default
from sn29_growth.fields import setting
from sn29_growth.miner import cli as miner_cli
from sn29_growth.miner.config import MinerConfig
from sn29_growth.train.config import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)

# flag -> (config class, field) of every flag built from a field
TRAIN_FLAGS = {
    "--steps": (TrainConfig, "steps"),
    "--lr": (OptimizerConfig, "lr"),
    "--weight-decay": (OptimizerConfig, "weight_decay"),
    "--grad-clip": (OptimizerConfig, "grad_clip"),
    "--schedule": (ScheduleConfig, "kind"),
    "--warmup": (ScheduleConfig, "warmup_steps"),
    "--min-lr-ratio": (ScheduleConfig, "min_lr_ratio"),
    "--new-lr-warmup": (ScheduleConfig, "new_lr_warmup"),
    "--new-only-steps": (ScheduleConfig, "new_only_steps"),
    "--batch-size": (BatchConfig, "batch_size"),
    "--seq-len": (BatchConfig, "seq_len"),
    "--grad-accum": (BatchConfig, "grad_accum"),
    "--grad-checkpointing": (TrainConfig, "grad_checkpointing"),
    "--compile": (TrainConfig, "compile"),
    "--fsdp": (TrainConfig, "fsdp"),
    "--cpu-offload": (TrainConfig, "cpu_offload"),
    "--dtype": (TrainConfig, "dtype"),
    "--save-dtype": (TrainConfig, "save_dtype"),
    "--eval-windows": (BatchConfig, "eval_windows"),
    "--save-every": (CheckpointConfig, "save_every"),
    "--keep-checkpoints": (CheckpointConfig, "keep"),
    "--stop-after": (TrainConfig, "stop_after"),
    "--resume": (CheckpointConfig, "resume"),
    "--device": (TrainConfig, "device"),
    "--seed": (TrainConfig, "seed"),
}
MINER_FLAGS = {
    "--competition": "competition",
    "--grow": "grow",
    "--grow-seed": "grow_seed",
    "--train-procs": "train_procs",
    "--train-samples": "train_samples",
    "--samples": "samples",
    "--seed": "seed",
    "--min-win-rate": "min_win_rate",
}


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def _field(config, name):
    return {f.name: f for f in dataclasses.fields(config)}[name]


def test_sn29_train_flags_are_the_config_fields():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = _actions(sub.choices["train"])
    for flag, (config, name) in TRAIN_FLAGS.items():
        action, spec = actions[flag], _field(config, name)
        assert action.default == spec.default, flag
        assert action.help.startswith(spec.metadata["help"]), flag
        if spec.metadata["choices"]:
            assert tuple(action.choices) == spec.metadata["choices"], flag
    assert actions["--eval-every"].default is None  # filled per tool: sn29 train uses the field's default
    assert f"(default: {field_default(TrainConfig, 'eval_every')})" in actions["--eval-every"].help


def test_miner_flags_are_the_config_fields():
    actions = _actions(miner_cli.build_parser())
    for flag, name in MINER_FLAGS.items():
        action, spec = actions[flag], _field(MinerConfig, name)
        assert action.default == spec.default and action.help == spec.metadata["help"], flag
    assert actions["--steps"].help == _field(TrainConfig, "steps").metadata["help"] + " (0 = no training)"


def test_add_setting_types_switches_and_errors():
    @dataclasses.dataclass(frozen=True)
    class Demo:
        count: int = setting(3, "how many", metavar="N")
        ratio: float | None = setting(None, "a ratio")
        fast: bool = setting(False, "go fast")
        on: bool = setting(True, "on by default")

    parser = argparse.ArgumentParser()
    for name in ("count", "ratio", "fast"):
        add_setting(parser, Demo, name)
    args = parser.parse_args(["--count", "5", "--ratio", "0.5", "--fast"])
    assert (args.count, args.ratio, args.fast) == (5, 0.5, True)
    assert parser.parse_args([]).count == 3
    with pytest.raises(ValueError, match="switch must default to False"):
        add_setting(parser, Demo, "on")
    with pytest.raises(ValueError, match="no field 'missing'"):
        add_setting(parser, Demo, "missing")
