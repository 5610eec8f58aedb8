"""One validator per model directory: the flock on ``MODEL_DIR/validator.lock``, in-process and across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from validator_fakes import make_env

from sn29_growth.validator.cli import main
from sn29_growth.validator.lock import LOCK_NAME, ValidatorLock, ValidatorLocked, describe_holder
from sn29_growth.validator.runner import run, run_steps

ROOT = Path(__file__).resolve().parents[1]
HOLDER = (
    "import sys, time\n"
    "from sn29_growth.validator.lock import ValidatorLock\n"
    "ValidatorLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def _no_sleep(seconds: float) -> None:
    pass


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of ``tmp_path / 'vd'``; killed with SIGKILL at the end."""
    vd = tmp_path / "vd"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(vd)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout.readline().strip() == "locked"
    yield proc, vd
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def _models_file(tmp_path: Path) -> Path:
    f = tmp_path / "models.json"
    placeholder = tmp_path / "placeholder-model"  # a folder with the files a model has; rejected when scored
    placeholder.mkdir(exist_ok=True)
    (placeholder / "config.json").write_text("{}")
    (placeholder / "model.safetensors").write_bytes(b"")
    f.write_text(json.dumps([{"model": str(placeholder), "block": 1, "label": "m0"}]))
    return f


def _cli(vd: Path, models: Path, *extra: str) -> list[str]:
    return ["--offline", "--models", str(models), "--model-dir", str(vd), "--device", "cpu", *extra]


def test_second_lock_in_the_same_process_conflicts(tmp_path):
    # flock belongs to the open file description: a second open + flock conflicts even in one process.
    with ValidatorLock(tmp_path) as first:
        assert first.held
        with pytest.raises(ValidatorLocked) as info:
            ValidatorLock(tmp_path).acquire()
        assert f"pid {os.getpid()}" in str(info.value) and str(tmp_path) in str(info.value)
        assert "choose another --model-dir" in str(info.value)
        assert info.value.model_dir == tmp_path
    assert not first.held
    with ValidatorLock(tmp_path):  # released: free again
        pass
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; only the flock matters


def test_lock_file_names_its_holder_and_is_cleared_on_release(tmp_path):
    lock = ValidatorLock(tmp_path).acquire()
    record = json.loads((tmp_path / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["started"] and record["host"]
    assert describe_holder(tmp_path / LOCK_NAME).startswith(f"pid {os.getpid()} on ")
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    lock.release()  # idempotent
    assert (tmp_path / LOCK_NAME).read_text() == ""
    assert describe_holder(tmp_path / LOCK_NAME) == "pid unknown"


def test_second_run_on_the_same_dir_refuses_and_leaves_the_first_ones_files_alone(tmp_path):
    config, clients, *_ = make_env(tmp_path)
    in_flight = config.model_dir / ".validator_state.json.abc123.tmp"
    seen: list[BaseException] = []

    def second_run(report):
        in_flight.write_text("{}")  # the first validator's state write, in flight
        with pytest.raises(ValidatorLocked) as info:
            run(config, clients, max_steps=1, sleep=_no_sleep)
        seen.append(info.value)
        assert in_flight.exists(), "a refused start must not clean the holder's temporary files"
        in_flight.unlink()

    state = run(config, clients, max_steps=1, on_report=second_run, sleep=_no_sleep)
    assert state.step == 1 and len(seen) == 1
    assert f"pid {os.getpid()}" in str(seen[0])
    assert run(config, clients, max_steps=1, sleep=_no_sleep).step == 2  # the first run let go


def test_run_accepts_a_held_lock_and_refuses_a_foreign_one(tmp_path):
    config, clients, *_ = make_env(tmp_path)
    with ValidatorLock(config.model_dir) as lock:
        summary = run_steps(config, clients, max_steps=1, sleep=_no_sleep, lock=lock)
        assert summary.steps_ok == 1
        with ValidatorLock(tmp_path / "elsewhere") as other, pytest.raises(ValueError, match="held on"):
            run_steps(config, clients, max_steps=1, sleep=_no_sleep, lock=other)
    with pytest.raises(ValueError, match="held on"):
        run_steps(config, clients, max_steps=1, sleep=_no_sleep, lock=lock)  # released


def test_lock_is_not_inherited_by_spawned_processes(tmp_path):
    # The evaluation worker is a child process: it must not keep the lock alive after the validator is gone.
    lock = ValidatorLock(tmp_path).acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.release()
        with ValidatorLock(tmp_path):
            assert child.poll() is None  # the child still runs, yet the lock was free
    finally:
        child.kill()
        child.wait()


def test_cli_refuses_with_one_line_and_code_2_while_another_process_holds_the_lock(tmp_path, holder):
    proc, vd = holder
    (vd / "validator_state.json").write_text('{"version": 1}')
    in_flight = vd / ".validator_state.json.abc123.tmp"
    in_flight.write_text("{}")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "neurons" / "validator.py"),
            *_cli(vd, _models_file(tmp_path), "--steps", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"validator: error: another validator (pid {proc.pid} on ")
    assert f"is using {vd}; stop it or choose another --model-dir" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert in_flight.exists() and (vd / "validator_state.json").read_text() == '{"version": 1}'


def test_lock_is_free_again_after_the_holder_is_killed(tmp_path, holder, capsys):
    proc, vd = holder
    models = _models_file(tmp_path)
    assert main(_cli(vd, models, "--steps", "0")) == 2
    assert capsys.readouterr().err.startswith("validator: error: another validator")
    proc.send_signal(signal.SIGKILL)  # no clean-up of any kind: the kernel drops the flock
    proc.wait()
    assert (vd / LOCK_NAME).read_text()  # the dead holder's record is still there ...
    with ValidatorLock(vd):  # ... but the lock is free: never stale
        pass
    assert main(_cli(vd, models, "--steps", "0")) == 0
    assert capsys.readouterr().err == ""
