"""One resolver for every model argument: each command that takes a model (``sn29 grow``, ``train``,
``evaluate``, ``check``, ``plan``, ``convert``, ``params``, the miner's ``--base``, the validator's
``--models`` entries) says the same thing about the same bad argument, with exit code 2."""

from __future__ import annotations

import json

import pytest

from sn29_growth.cli import main as sn29
from sn29_growth.miner import cli as miner_cli
from sn29_growth.modelref import (
    HUB_OFFLINE,
    IS_FILE,
    LOCAL_ONLY,
    NO_CONFIG,
    NO_TOKENIZER,
    NO_WEIGHTS,
    NOT_FOUND,
    ModelArgumentError,
    resolve_model_argument,
)
from sn29_growth.validator import cli as validator_cli

NO_TOKENIZER_TEXT = NO_TOKENIZER.format(missing="tokenizer.json and tokenizer_config.json")


def _sn29(*argv: str):
    return lambda model, tmp: sn29([a.format(model=model, out=tmp / "out") for a in argv])


def _miner(model, tmp):  # online (the Hugging Face Hub): refused before any chain or Hub client is built
    argv = ["--hf-repo", "me/grown", "--base", model, "--model-dir", str(tmp / "w")]
    return miner_cli.main([*argv, "--device", "cpu"])


def _validator(model, tmp):
    models = tmp / "models.json"
    models.write_text(json.dumps([{"model": model, "block": 1, "label": "m"}]))
    argv = ["--offline", "--models", str(models), "--model-dir", str(tmp / "v"), "--device", "cpu"]
    return validator_cli.main([*argv, "--steps", "1"])


COMMANDS = {
    "grow": _sn29("grow", "{model}", "{out}", "--num-layers", "3"),
    "train": _sn29("train", "{model}", "{out}", "--steps", "1"),
    "evaluate": _sn29("evaluate", "{model}"),
    "check": _sn29("check", "{model}"),
    "plan": _sn29("plan", "{model}", "--max-params", "1M"),
    "convert": _sn29("convert", "--to-stock", "{model}", "{out}"),
    "params": _sn29("params", "{model}"),
    "miner --base": _miner,
    "validator --models": _validator,
}

# the reason each command gives for each kind of bad argument; absent: the argument is usable there
EXPECTED = {
    "missing": dict.fromkeys(COMMANDS, NOT_FOUND),
    "file": {c: IS_FILE for c in COMMANDS if c not in ("plan", "params")},  # those two read a config file
    "empty folder": dict.fromkeys(COMMANDS, NO_CONFIG),
    "no weights": {c: NO_WEIGHTS for c in COMMANDS if c not in ("check", "plan", "params")},
    "hub offline": {
        **dict.fromkeys(COMMANDS, HUB_OFFLINE),
        **dict.fromkeys(("train", "convert", "params"), LOCAL_ONLY),  # local folders only
    },
    "no tokenizer": dict.fromkeys(("train", "check", "miner --base"), NO_TOKENIZER_TEXT),
}


@pytest.fixture(scope="module")
def bad_arguments(tmp_path_factory):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny

    root = tmp_path_factory.mktemp("bad-models")
    save_model(build_tiny("llama-gqa", seed=0), root / "no-tokenizer")
    (root / "tiny-config.json").write_text((root / "no-tokenizer" / "config.json").read_text())
    (root / "empty").mkdir()
    (root / "config-only").mkdir()
    (root / "config-only" / "config.json").write_text((root / "no-tokenizer" / "config.json").read_text())
    return {
        "missing": str(root / "nosuchdir"),
        "file": str(root / "tiny-config.json"),
        "empty folder": str(root / "empty"),
        "no weights": str(root / "config-only"),
        "hub offline": "nosuch-org/nosuch-model",
        "no tokenizer": str(root / "no-tokenizer"),
    }


CASES = [(kind, command) for kind, by_command in EXPECTED.items() for command in by_command]


@pytest.mark.parametrize(("kind", "command"), CASES, ids=[f"{c}-{k}" for k, c in CASES])
def test_every_command_names_a_bad_model_argument_alike(
    kind, command, bad_arguments, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec = bad_arguments[kind]
    assert COMMANDS[command](spec, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"{spec}: {EXPECTED[kind][command]}" in err, err
    assert not (tmp_path / "out").exists()


def test_a_bare_name_that_is_no_folder_is_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelArgumentError, match=r"^MODEL nosuchdir: not found$"):
        resolve_model_argument("nosuchdir")
    with pytest.raises(ModelArgumentError, match=r"^--base a/b/c: not found$"):
        resolve_model_argument("a/b/c", "--base")


def test_a_cached_hub_model_resolves_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--org--name").mkdir()
    ref = resolve_model_argument("org/name@main")
    assert (ref.repo_id, ref.revision) == ("org/name", "main")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model_argument("other/name").repo_id == "other/name"


def test_evaluate_says_how_many_samples_it_used(tmp_path, capsys, monkeypatch):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    model = tmp_path / "m"
    save_model(build_tiny("llama-gqa", seed=0), model, tokenizer=embedded_tokenizer())
    data = tmp_path / "three.txt"
    data.write_text("one line of text\nanother line here\nand a third one\n")
    argv = ["evaluate", str(model), "--dataset", str(data), "--samples", "400", "--no-isolate", "--no-cache"]
    assert sn29([*argv, "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "--samples 400: the dataset has " in err and "; used " in err
