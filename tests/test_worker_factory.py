"""The warm worker factory: one fresh forked process per request, killed with its tokenizer worker on
timeout, and a cold start when the factory is gone."""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import pytest

from sn29_growth.eval import worker
from sn29_growth.eval.competitions import default_competitions


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out |= {int(c) for c in f.read().split()}
    return out


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


@pytest.fixture
def factory(monkeypatch):
    monkeypatch.delenv(worker.FACTORY_ENV, raising=False)
    worker.warm_factory()
    worker._FACTORY.wait_ready()
    return worker._FACTORY


def test_each_request_gets_a_fresh_child_of_the_same_factory(factory, tmp_path):
    results = [worker.run_in_worker({"models": []}, 60) for _ in range(2)]
    for result in results:  # a bad request, answered after the start mark: the model's failure
        assert not result.ok and result.environment is None and "code 1" in result.error
    assert worker._FACTORY is factory and factory.alive()


def test_a_timeout_kills_the_child_and_its_tokenizer_worker(tmp_path):
    """A tokenizer slow enough to blow the timeout: the child's group dies, and so does the tokenizer
    worker it adopted from the factory (which the factory started, outside that group)."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc")
    from test_validator_process import _slow_tokenizer

    from sn29_growth.checkpoint import save_model
    from sn29_growth.eval.samples import resolve_samples, worker_request, write_samples_file
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path / "slow"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    tok = json.loads((path / "tokenizer.json").read_text())
    _slow_tokenizer(tok)
    (path / "tokenizer.json").write_text(json.dumps(tok))
    comp = default_competitions()["c00"]
    choice = resolve_samples("local", comp, 8, 0, None)
    samples = write_samples_file(tmp_path / "samples.json", choice.source.name, choice.samples)
    request = worker_request(
        comp, ("slow", path), samples, free_tokenizer=True, seed=0, device="cpu", cache_dir=None
    )
    worker.warm_factory()  # (re)started under the environment the imports above left
    factory = worker._FACTORY
    factory.wait_ready()
    spares = _children(factory.proc.pid)
    assert spares, "the factory keeps a tokenizer worker ready"
    t0 = time.monotonic()
    result = worker.run_in_worker(request, 8)
    assert not result.ok and "timed out" in result.error and time.monotonic() - t0 < 25
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in spares) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in spares), "the child's tokenizer worker outlived it"
    assert factory.alive(), factory.proc.returncode


def test_a_dead_factory_means_a_cold_start_said_in_the_log(factory, caplog):
    os.killpg(factory.proc.pid, signal.SIGKILL)
    factory.proc.wait()
    caplog.set_level(logging.WARNING)
    result = worker.run_in_worker({"models": []}, 60)
    assert not result.ok and result.environment is None  # it ran (cold or in a new factory)
    assert any("factory" in r.getMessage() for r in caplog.records)
