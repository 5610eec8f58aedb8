"""The validator state file (every bad one moved aside, never a traceback) and how a run reports its steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from validator_fakes import make_env

from sn29_growth.chain.protocol import ChainUnavailable
from sn29_growth.validator import runner
from sn29_growth.validator.cli import main
from sn29_growth.validator.offline import OfflineChain
from sn29_growth.validator.runner import RunSummary, run, run_steps
from sn29_growth.validator.state import ModelRecord, StateError, ValidatorState, load_state, save_state
from sn29_growth.validator.step import StepReport


def _no_sleep(seconds: float) -> None:
    pass


def _good() -> dict:
    """A valid state file's content, as JSON would give it back."""
    state = ValidatorState(
        step=7,
        models={
            "hk": ModelRecord(
                hotkey="hk", uid=3, commitment="a:b:c:d:c00", competition="c00", block=10, mean_loss=2.5
            )
        },
        pools={"c00": ["hk"]},
        ema_weights={"3": 1.0},
        last_weights_block=900,
        discarded={"hk2": {"commitment": "junk", "reason": "malformed commitment", "block": 5}},
        failures={"hk": 1},
    )
    return json.loads(json.dumps(state.to_json()))


def _set(*path_and_value):
    """A mutation of the good state: ``_set("models", "hk", "uid", "abc")`` sets that nested key."""
    *path, last, value = path_and_value

    def mutate(d: dict) -> None:
        for key in path:
            d = d[key]
        d[last] = value

    return mutate


def _drop(*path):
    def mutate(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]

    return mutate


# name -> (mutation of the good state, substring of the StateError message)
BAD_STATES = {
    "models is a list": (_set("models", []), "models: expected an object, got list"),
    "model record is a number": (_set("models", {"x": 5}), "models['x']: expected an object, got int 5"),
    "uid is a string": (_set("models", "hk", "uid", "abc"), "models['hk'].uid: expected an integer"),
    "uid is a bool": (_set("models", "hk", "uid", True), "models['hk'].uid: expected an integer"),
    "block is null": (_set("models", "hk", "block", None), "models['hk'].block: expected an integer"),
    "mean_loss is NaN": (_set("models", "hk", "mean_loss", math.nan), "mean_loss: expected a finite number"),
    "injected is a string": (_set("models", "hk", "injected", "yes"), "injected: expected true or false"),
    "unknown record key": (_set("models", "hk", "colour", "red"), "unknown key(s) 'colour'"),
    "missing record field": (_drop("models", "hk", "commitment"), "missing commitment"),
    "record under another hotkey": (_set("models", "hk", "hotkey", "other"), "differs from its key"),
    "pool is a string": (_set("pools", "c00", "abc"), "pools['c00']: expected a list of strings"),
    "pool member is a number": (_set("pools", "c00", [1]), "pools['c00'][0]: expected a string"),
    "NaN weight": (_set("ema_weights", "3", math.nan), "ema_weights['3']: expected a finite number"),
    "infinite weight": (_set("ema_weights", "3", math.inf), "ema_weights['3']: expected a finite number"),
    "negative weight": (_set("ema_weights", "3", -0.5), "ema_weights['3']: expected a weight >= 0"),
    "weight of a non-uid": (_set("ema_weights", {"abc": 1.0}), "key 'abc' is not a uid"),
    "failures count is a string": (_set("failures", "hk", "x"), "failures['hk']: expected an integer"),
    "step is a string": (_set("step", "x"), "step: expected an integer"),
    "negative step": (_set("step", -1), "step: expected an integer >= 0"),
    "last_weights_block is a float": (_set("last_weights_block", 1.5), "last_weights_block: expected an int"),
    "discarded is a list": (_set("discarded", []), "discarded: expected an object, got list"),
    "discarded entry is a string": (_set("discarded", "hk2", "x"), "discarded['hk2']: expected an object"),
    "discarded commitment missing": (_drop("discarded", "hk2", "commitment"), "commitment: expected a str"),
    "version is true": (_set("version", True), "state version True is not supported"),
    "unknown top-level key": (_set("extra", 1), "state: unknown key(s) 'extra'"),
}


def _write(path: Path, data) -> str:
    text = json.dumps(data)  # allow_nan: NaN and Infinity literals, which Python's json also reads back
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def test_good_state_round_trips(tmp_path):
    path = tmp_path / "validator_state.json"
    _write(path, _good())
    state = load_state(path)
    assert state.models["hk"].mean_loss == 2.5 and state.ema_weights == {"3": 1.0}
    save_state(state, path)
    assert load_state(path) == state
    assert load_state(tmp_path / "missing.json") == ValidatorState()
    older = {"version": 1, "models": {}}  # keys a file lacks take their defaults
    assert ValidatorState.from_json(older) == ValidatorState()


@pytest.mark.parametrize("name", list(BAD_STATES))
def test_bad_state_is_a_state_error_naming_file_and_problem(name, tmp_path):
    mutate, problem = BAD_STATES[name]
    data = _good()
    mutate(data)
    path = tmp_path / "validator_state.json"
    _write(path, data)
    with pytest.raises(StateError) as info:
        load_state(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value), str(info.value)


@pytest.mark.parametrize("name", list(BAD_STATES))
def test_bad_state_is_moved_aside_and_the_validator_carries_on(name, tmp_path, caplog):
    mutate, problem = BAD_STATES[name]
    config, clients, *_ = make_env(tmp_path)
    data = _good()
    mutate(data)
    original = _write(config.state_path, data)
    state = run(config, clients, max_steps=1, sleep=_no_sleep)  # must not raise
    assert state.step == 1 and not state.models
    (aside,) = config.model_dir.glob("validator_state.json.unreadable-*")
    assert aside.read_text() == original  # moved, never deleted
    assert load_state(config.state_path).step == 1  # a fresh state, saved after the step
    assert any(problem in r.getMessage() and "moved to" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"x"', "\xff"])
def test_unparseable_state_is_moved_aside(text, tmp_path):
    config, clients, *_ = make_env(tmp_path)
    config.model_dir.mkdir(parents=True)
    config.state_path.write_bytes(text.encode("latin-1"))
    assert run(config, clients, max_steps=1, sleep=_no_sleep).step == 1
    assert len(list(config.model_dir.glob("validator_state.json.unreadable-*"))) == 1


def test_save_refuses_a_state_the_next_start_would_refuse(tmp_path):
    path = tmp_path / "validator_state.json"
    save_state(ValidatorState(step=1), path)
    with pytest.raises(StateError, match="expected a finite number"):
        save_state(ValidatorState(step=2, ema_weights={"1": math.nan}), path)
    assert load_state(path).step == 1  # the old file is untouched


def test_a_step_whose_state_cannot_be_saved_is_rolled_back(tmp_path, monkeypatch):
    config, clients, *_ = make_env(tmp_path)

    def poisoned_step(state, clients, config):
        state.step += 1
        state.ema_weights = {"1": math.nan}  # e.g. a NaN reward in competitions.json
        return StepReport(step=state.step, block=1)

    run(config, clients, max_steps=1, sleep=_no_sleep)
    monkeypatch.setattr(runner, "step", poisoned_step)
    summary = run_steps(config, clients, max_steps=2, sleep=_no_sleep)
    assert (summary.steps_ok, summary.steps_failed, summary.state.step) == (0, 2, 1)
    assert load_state(config.state_path).ema_weights == {}


# ------------------------------------------------------------------------------------------- run outcome


def test_run_steps_counts_failed_and_completed_steps(tmp_path):
    config, clients, chain, *_ = make_env(tmp_path)
    chain.fail_next = {"current_block": 100}  # the chain is unreachable every time
    slept: list[float] = []
    summary = run_steps(config, clients, max_steps=3, sleep=slept.append)
    assert summary == RunSummary(state=summary.state, steps_ok=0, steps_failed=3)
    assert summary.all_failed and summary.state.step == 0
    assert slept == [1.0, 1.0]  # a pause between failed steps, none after the last
    assert not config.state_path.exists()
    chain.fail_next = {"current_block": 1}
    summary = run_steps(config, clients, max_steps=2, sleep=slept.append)
    assert (summary.steps_ok, summary.steps_failed, summary.all_failed) == (1, 1, False)
    assert run(config, clients, max_steps=1, sleep=_no_sleep).step == 2  # run() still returns the state


def _offline_args(tmp_path: Path, steps: int) -> list[str]:
    models = tmp_path / "models.json"
    placeholder = tmp_path / "placeholder-model"  # a folder with the files a model has; rejected when scored
    placeholder.mkdir(exist_ok=True)
    (placeholder / "config.json").write_text("{}")
    (placeholder / "model.safetensors").write_bytes(b"")
    models.write_text(json.dumps([{"model": str(placeholder), "block": 1, "label": "m0"}]))
    return [
        "--offline",
        "--models",
        str(models),
        "--model-dir",
        str(tmp_path / "vd"),
        "--device",
        "cpu",
        "--step-interval",
        "0",
        "--steps",
        str(steps),
    ]


def _failing_chain(monkeypatch, failures: int) -> None:
    real = OfflineChain.current_block
    left = {"n": failures}

    def current_block(self):
        if left["n"] > 0:
            left["n"] -= 1
            raise ChainUnavailable("connection refused (injected)")
        return real(self)

    monkeypatch.setattr(OfflineChain, "current_block", current_block)


def test_cli_exits_1_when_every_step_failed(tmp_path, monkeypatch, capsys):
    _failing_chain(monkeypatch, failures=10**6)
    assert main(_offline_args(tmp_path, steps=1)) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "validator: error: all 1 steps failed (see the log above)"
    )


def test_cli_exits_0_when_some_step_completed(tmp_path, monkeypatch, capsys):
    _failing_chain(monkeypatch, failures=1)
    assert main(_offline_args(tmp_path, steps=2)) == 0
    assert "error" not in capsys.readouterr().err
    assert load_state(tmp_path / "vd" / "validator_state.json").step == 1
