"""The operator's faults are never the miners' fault: no CUDA, a CUDA/allocator error, a worker that cannot
start. The validator refuses a missing device at start-up, abandons a step the host broke without blaming
any model, backs off, and exits non-zero after too many such steps in a row."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from validator_fakes import hotkey, in_process_evaluate, make_env, publish

from sn29_growth.eval import evaluate as evaluate_module
from sn29_growth.eval.environment import EnvironmentFailure, device_problem, environment_cause
from sn29_growth.eval.worker import run_in_worker
from sn29_growth.validator.cli import main
from sn29_growth.validator.runner import EnvironmentFailed, environment_backoff, run_steps

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("env") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def test_a_missing_device_is_refused_at_start_up_and_nothing_is_written(tmp_path, capsys):
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"model": "nobody/nothing", "block": 1, "label": "m0"}]))
    vd = tmp_path / "vd"
    argv = ["--offline", "--models", str(models), "--model-dir", str(vd), "--steps", "1"]
    assert main(argv) == 2  # the default device is cuda
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0] and "--device cpu" in err[0]
    assert not vd.exists()


def test_the_causes_the_host_is_blamed_for():
    assert "out of memory" in environment_cause(
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
    )
    assert environment_cause(RuntimeError("CUDA error: an illegal memory access was encountered")).startswith(
        "CUDA"
    )
    assert "disk full" in environment_cause(OSError(28, "No space left on device"))
    wrapped = RuntimeError("load failed")
    wrapped.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    assert environment_cause(wrapped)  # through the chain, as loading wraps errors
    for model_fault in (
        MemoryError(),
        ValueError("bad config"),
        RuntimeError("size mismatch"),
        OSError(2, "x"),
    ):
        assert environment_cause(model_fault) is None
    assert device_problem("cpu") is None and "CUDA is not available" in device_problem("cuda:0")


def test_no_cuda_in_the_worker_blames_nobody_and_a_restart_on_cpu_evaluates_at_once(tmp_path, base_dir):
    """The operator starts on a machine without CUDA (here: the config says cuda, as a validator built
    before the start-up check, or a GPU that vanished, would): steps are abandoned, no model is marked
    failed, no weights are set; after too many the run ends. Restarted with cpu, the model is scored in
    the very next step instead of waiting revisit_every_steps."""
    config, clients, chain, _, hub = make_env(tmp_path, device="cuda", max_environment_failures=3)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    waits = []
    with pytest.raises(EnvironmentFailed, match="3 consecutive steps .* CUDA is not available"):
        run_steps(config, clients, sleep=waits.append)
    assert waits == [environment_backoff(config, 1), environment_backoff(config, 2)] == [30.0, 60.0]
    assert not chain.weights
    assert not config.state_path.exists()  # nothing was ever saved: every step was rolled back

    config, clients, chain2, _, _ = make_env(tmp_path, device="cpu")
    chain2.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    rec = summary.state.models[hotkey(0)]
    assert summary.steps_ok == 1 and rec.status == "pool" and rec.mean_loss is not None
    assert chain2.weights


def test_an_allocator_error_abandons_the_step_without_blame(tmp_path, base_dir, monkeypatch):
    config, clients, chain, _, hub = make_env(tmp_path, max_environment_failures=2)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")

    monkeypatch.setattr(evaluate_module, "summed_losses", oom)
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert summary.steps_failed == 1 and summary.state.models == {}  # rolled back: nobody marked
    assert not chain.weights
    monkeypatch.undo()
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert summary.state.models[hotkey(0)].status == "pool"


def test_a_worker_that_dies_on_start_is_the_host_s_failure(tmp_path, base_dir):
    dies = [sys.executable, "-c", "import sys; sys.exit(1)"]
    result = run_in_worker({"models": []}, 30, command=dies)
    assert not result.ok and result.environment and "could not start" in result.environment
    # one that started (it marks so before reading any model file) and then died is the model's
    started = [
        sys.executable,
        "-c",
        "import pathlib, sys; pathlib.Path(sys.argv[2] + '.started').touch(); sys.exit(1)",
    ]
    result = run_in_worker({"models": []}, 30, command=started)
    assert not result.ok and result.environment is None
    result = run_in_worker({"models": []}, 30, command=["/nonexistent/python"])
    assert result.environment and "could not be started" in result.environment

    config, clients, chain, _, hub = make_env(tmp_path, max_environment_failures=1)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    clients.evaluate = lambda request, timeout: run_in_worker(request, timeout, command=dies)
    with pytest.raises(EnvironmentFailed, match="could not start"):
        run_steps(config, clients, sleep=lambda s: None)


def test_a_model_failure_still_counts_against_the_model(tmp_path, base_dir):
    """The control: a worker that crashes while evaluating (after its start mark) fails the model."""
    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    crash = [
        sys.executable,
        "-c",
        "import pathlib, sys; pathlib.Path(sys.argv[2] + '.started').touch(); sys.exit(9)",
    ]
    clients.evaluate = lambda request, timeout: run_in_worker(request, timeout, command=crash)
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert summary.steps_ok == 1 and summary.state.models[hotkey(0)].status == "failed"


def test_sn29_evaluate_stops_with_the_cause(base_dir):
    with pytest.raises(EnvironmentFailure, match="CUDA is not available"):
        evaluate_module.evaluate_models([base_dir], device="cuda", cache_dir=None)


def test_in_process_evaluation_maps_the_worker_answer(base_dir):
    from sn29_growth.eval.worker import result_of

    assert result_of({"environment_error": "disk full"}, 1.0).environment == "disk full"
    assert result_of({"models": {}}, 1.0).ok
    answer = in_process_evaluate({"device": "cuda", "competition": {"name": "c00"}, "models": []}, 10)
    assert "CUDA is not available" in answer.environment
