"""One vocabulary of flags: the miner and ``sn29 train`` share their training flags (names, types, defaults),
old miner names still work with a warning, every ``--help`` shows defaults, a misspelled flag gets "did you
mean", a ``--base`` that is meant as a folder but is missing says so; ``sn29 convert`` reports its loss change."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from sn29_growth.cli import build_parser as sn29_parser
from sn29_growth.cli import main as sn29
from sn29_growth.cliutil import (
    TRAINING_GROUP,
    ArgumentParser,
    add_training_arguments,
    looks_like_local_path,
    suggestions,
)
from sn29_growth.miner import cli as miner_cli
from sn29_growth.validator.cli import build_parser as validator_parser

REPO = ["--hf-repo", "me/grown"]
TRAIN_ONLY = {
    "--stop-after",
    "--resume",
    "--val-data",
    "--data-dir",
    "--device",
    "--seed",
    "--no-progress",
    "--json",
}
MINER_ONLY_TRAINING = {"--train-procs", "--train-samples"}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _group(parser: argparse.ArgumentParser, title: str) -> dict[str, object]:
    group = next(g for g in parser._action_groups if g.title == title)
    return {s: a.default for a in group._group_actions for s in a.option_strings}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        s: a
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        for s in a.option_strings
    }


# ------------------------------------------------------------------------------------------- parity


def test_training_flags_are_the_same_in_the_miner_and_sn29_train():
    train = _subparser(sn29_parser(), "train")
    miner = miner_cli.build_parser()
    train_flags, miner_flags = _group(train, TRAINING_GROUP), _group(miner, TRAINING_GROUP)
    shared = {k: v for k, v in miner_flags.items() if k not in MINER_ONLY_TRAINING}
    assert shared == train_flags  # every training flag of one exists in the other, with the same default
    for flag in ("--steps", "--data", "--lr", "--batch-size", "--seq-len", "--grad-accum", "--warmup"):
        assert flag in shared
    for flag in ("--new-lr-warmup", "--new-only-steps", "--grad-checkpointing"):  # what the README advertises
        assert flag in shared
    # sn29 train's other flags are about one run of it; none of them is a training knob the miner lacks
    assert set(_options(train)) - set(train_flags) == TRAIN_ONLY
    # types and choices agree too
    t_actions, m_actions = _options(train), _options(miner)
    for flag in shared:
        assert (t_actions[flag].type, t_actions[flag].choices, t_actions[flag].nargs) == (
            m_actions[flag].type,
            m_actions[flag].choices,
            m_actions[flag].nargs,
        ), flag


TRAINING_ARGV = [
    "--steps", "40", "--lr", "1e-3", "--weight-decay", "0.05", "--grad-clip", "0.5", "--schedule", "linear",
    "--warmup", "5", "--min-lr-ratio", "0.2", "--new-lr-warmup", "7", "--new-only-steps", "3",
    "--batch-size", "2", "--seq-len", "64", "--grad-accum", "4", "--grad-checkpointing", "--dtype", "float32",
    "--save-dtype", "bfloat16", "--eval-every", "10", "--eval-windows", "8", "--save-every", "20",
    "--keep-checkpoints", "3",
]  # fmt: skip


def test_the_same_flags_give_the_same_training_config():
    from sn29_growth.commands.train import config_from_args as train_config

    miner_args = miner_cli.build_parser().parse_args([*REPO, *TRAINING_ARGV, "--device", "cpu"])
    miner = miner_cli.config_from_args(miner_args).train
    train_args = sn29_parser().parse_args(["train", "m", "o", *TRAINING_ARGV, "--device", "cpu", "--resume"])
    train = train_config(train_args)
    # the miner never shows a progress bar and always resumes: everything else is the same
    assert dataclasses.replace(train, progress=False) == miner
    assert (
        miner.schedule.new_lr_warmup == 7 and miner.schedule.new_only_steps == 3 and miner.grad_checkpointing
    )


def test_the_miner_torchrun_launch_flags_parse_as_sn29_train():
    """The miner launches ``-m sn29_growth.train`` with flags built from its TrainConfig: they round-trip."""
    from sn29_growth.commands.train import config_from_args as train_config
    from sn29_growth.miner.run import train_args

    miner = miner_cli.config_from_args(
        miner_cli.build_parser().parse_args([*REPO, *TRAINING_ARGV, "--device", "cpu"])
    )
    args = sn29_parser().parse_args(["train", "m", "o", "--data", "local", *train_args(miner.train)])
    assert dataclasses.replace(train_config(args), progress=False) == miner.train


def test_defaults_and_no_training():
    miner = miner_cli.config_from_args(miner_cli.build_parser().parse_args([*REPO, "--device", "cpu"]))
    assert miner.train.steps == 100 and miner.train.eval_every == 100  # validated at the start and the end
    assert miner.train_data == "hf://HuggingFaceFW/fineweb-edu-score-2"
    offline = miner_cli.config_from_args(
        miner_cli.build_parser().parse_args([*REPO, "--device", "cpu", "--offline", "--steps", "0"])
    )
    assert offline.train is None and offline.train_data == "local"
    from sn29_growth.commands.train import config_from_args as train_config

    train = train_config(sn29_parser().parse_args(["train", "m", "o"]))
    assert train.eval_every == 50 and train.steps == 100
    with pytest.raises(ValueError, match="--steps must be >= 0"):
        miner_cli.config_from_args(
            miner_cli.build_parser().parse_args([*REPO, "--device", "cpu", "--steps", "-1"])
        )


# ------------------------------------------------------------------------------------------- aliases


def test_deprecated_miner_names_still_work_and_warn_once(capsys):
    parser = miner_cli.build_parser()
    args = parser.parse_args([*REPO, "--train-steps", "7", "--train-data", "local", "--train-steps", "9"])
    assert (args.steps, args.data) == (9, "local")
    err = capsys.readouterr().err
    assert err.count("--train-steps is deprecated") == 1 and "use --steps" in err
    assert err.count("--train-data is deprecated") == 1 and "use --data" in err
    config = miner_cli.config_from_args(args)
    assert config.train.steps == 9 and config.train_data == "local"
    # the new names do not warn; the old ones are hidden from --help
    miner_cli.build_parser().parse_args([*REPO, "--steps", "7", "--data", "local"])
    assert "deprecated" not in capsys.readouterr().err
    help_text = miner_cli.build_parser().format_help()
    assert "--train-steps" not in help_text and "--train-data" not in help_text
    with pytest.raises(SystemExit):
        miner_cli.build_parser().parse_args([*REPO, "--train-steps", "many"])  # the type still applies


# ------------------------------------------------------------------------------------------- help


def _all_parsers():
    root = sn29_parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    yield "sn29", root
    for name, parser in sub.choices.items():
        yield f"sn29 {name}", parser
    yield "miner", miner_cli.build_parser()
    yield "validator", validator_parser()


@pytest.mark.parametrize(
    ("name", "parser"), list(_all_parsers()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_help_shows_defaults(name, parser):
    assert isinstance(parser, ArgumentParser), name
    formatter = parser._get_formatter()
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        shown = formatter._expand_help(action) if action.help else ""
        if name != "validator":  # the validator's parser only shares the class; its texts are its own
            assert action.help, f"{name} {action.option_strings[0]}: no help text"
        if action.default not in (None, False) and action.help:
            assert "(default" in shown, f"{name} {action.option_strings[0]}: default not shown"
    assert "%(default)" not in text


def test_help_shows_units_and_values():
    train = _subparser(sn29_parser(), "train").format_help()
    for needle in ("--steps STEPS", "(default: 100)", "--seq-len TOKENS", "(default: 256)", "--warmup STEPS"):
        assert needle in train
    miner = " ".join(miner_cli.build_parser().format_help().split())
    assert "--new-lr-warmup STEPS" in miner and "(default: fineweb; offline: local)" in miner
    assert (
        "--model-dir DIR downloads, runs and the miner state (default: ~/.cache/sn29-growth/miner)" in miner
    )
    grow = " ".join(_subparser(sn29_parser(), "grow").format_help().split())
    assert "--max-shard-size BYTES size cap of each output shard (default: 2GB)" in grow
    evaluate = " ".join(_subparser(sn29_parser(), "evaluate").format_help().split())
    assert "--timeout SECONDS" in evaluate and "(default: 3600.0)" in evaluate


# ------------------------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["train", "m", "o", "--step", "5"], "did you mean --steps?"),
        (["train", "m", "o", "--lerning-rate", "1e-3"], "did you mean --learning-rate?"),
        (["train", "m", "o", "--batch_size=4"], "did you mean --batch-size?"),
        (["plan", "x", "--competiton", "c00"], "did you mean --competition?"),
        (["trian", "m", "o"], "did you mean train?"),
    ],
)
def test_misspelled_flags_get_a_suggestion(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as exit_info:
        sn29(argv)
    assert exit_info.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_miner_and_validator_suggest_too(capsys):
    with pytest.raises(SystemExit):
        miner_cli.main([*REPO, "--stpes", "5"])
    assert "unrecognized arguments: --stpes 5 (did you mean --steps?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        miner_cli.build_parser().parse_args([*REPO, "--grad-checkpoint"])  # abbreviations are not guessed
    assert "did you mean --grad-checkpointing?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validator_parser().parse_args(["--model-dri", "x"])  # a misspelled required flag is "missing"
    assert "required: --model-dir (--model-dri: did you mean --model-dir?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        miner_cli.build_parser().parse_args([*REPO, "--frobnicate"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --frobnicate" in err and "did you mean" not in err


def test_suggestions_function():
    options = ["--steps", "--seed", "--seq-len", "--save-every", "--stop-after", "--learning-rate", "--lr"]
    assert suggestions("--step", options) == ["--steps"]
    assert suggestions("--lerning-rate", options) == ["--learning-rate"]
    assert suggestions("--zzz", options) == []


# ------------------------------------------------------------------------------------------- --base


@pytest.mark.parametrize(
    "spec", ["./nope", "../nope/model", "/no/such/model", "~/no-such-sn29-model", "a/b/c"]
)
def test_a_missing_local_base_is_named_not_sent_to_the_hub(tmp_path, capsys, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    args = miner_cli.build_parser().parse_args([*REPO, "--base", spec, "--device", "cpu"])
    with pytest.raises(ValueError, match="not found") as info:
        miner_cli.config_from_args(args)
    assert str(info.value) == f"--base {spec}: not found"
    argv = [*REPO, "--base", spec, "--offline", "--model-dir", str(tmp_path / "w"), "--device", "cpu"]
    assert miner_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--base {spec}: not found" in err and "repository" not in err.lower()
    assert not (tmp_path / "w" / "runs").exists()


def test_base_that_is_a_file_or_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "model.safetensors").write_bytes(b"")
    args = miner_cli.build_parser().parse_args([*REPO, "--base", "model.safetensors", "--device", "cpu"])
    with pytest.raises(ValueError, match=r"--base model.safetensors: is a file"):
        miner_cli.config_from_args(args)
    for hub_id in ("org/name", "org/name@main", "org/name@refs/pr/1", "org/name@0123abcd"):
        assert not looks_like_local_path(hub_id)
        args = miner_cli.build_parser().parse_args([*REPO, "--base", hub_id, "--device", "cpu"])
        assert miner_cli.config_from_args(args).base == hub_id
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()  # a folder that looks like a Hub id is a folder
    assert looks_like_local_path("org/name")


# ------------------------------------------------------------------------------------------- convert


def test_convert_reports_the_loss_change(save_tiny, tmp_path, capsys):
    from sn29_growth.tiny import build_tiny

    src = save_tiny(build_tiny("llama-gqa", seed=0), "src")
    assert sn29(["grow", str(src), str(tmp_path / "wide"), "--hidden-size", "128"]) == 0
    capsys.readouterr()
    assert sn29(["convert", "--to-stock", str(tmp_path / "wide"), str(tmp_path / "stock"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    check = doc["loss_check"]
    assert check["samples"] == 8 and check["dtype"] == "float32" and check["before"] > 100
    assert (
        abs(check["delta"]) <= 1e-5 * check["before"] and check["after"] - check["before"] == check["delta"]
    )
    assert sn29(["convert", "--to-divisor", "64", str(tmp_path / "stock"), str(tmp_path / "div")]) == 0
    out = capsys.readouterr().out
    assert (
        "loss per sample " in out and " -> " in out and "(Δ " in out and "on 8 held-out samples, fp32" in out
    )
    assert (
        sn29(["convert", "--to-stock", str(tmp_path / "div"), str(tmp_path / "s2"), "--no-loss-check"]) == 0
    )
    assert "loss check skipped: --no-loss-check" in capsys.readouterr().out


def test_convert_without_a_tokenizer_skips_the_loss_check(tmp_path, capsys):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny

    src = tmp_path / "src"
    save_model(build_tiny("llama-gqa", seed=0), src)  # no tokenizer files
    assert sn29(["convert", "--to-divisor", "64", str(src), str(tmp_path / "d"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss_check"] == {"skipped": "SRC has no tokenizer"}


def test_training_arguments_reject_an_unknown_tool():
    with pytest.raises(ValueError, match="tool"):
        add_training_arguments(argparse.ArgumentParser(), tool="validator")
