"""Ctrl-C is a pause, not a crash: SIGINT/SIGTERM finish the step, write a checkpoint at it and end with
one line; running the same command again continues exactly (the same final weights as a run never
interrupted). A resume with a changed schedule says what changed and how the learning rate jumps."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_train_loop import small_config

from sn29_growth.checkpoint import save_model
from sn29_growth.tiny import build_tiny
from sn29_growth.train import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    loop,
    train,
)
from sn29_growth.train.checkpoint import STATE_FILE, checkpoint_dir, latest_checkpoint, list_checkpoints
from sn29_growth.train.loop import LOG_FILE, TrainingInterrupted
from sn29_growth.train.schedule import learning_rates

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
STEPS = 60
FLAGS = ["--steps", str(STEPS), "--batch-size", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "2",
         "--eval-every", "0", "--save-every", "0", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("interrupt") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def train_records(out) -> list[dict]:
    lines = (out / LOG_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


# ------------------------------------------------------------------------------- sn29 train, for real


def command(base, out, *extra) -> list[str]:
    return [sys.executable, "-m", "sn29_growth.train", str(base), str(out), *FLAGS, *extra]


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory):
    """The same run, never interrupted (a separate process, as the interrupted ones are)."""
    out = tmp_path_factory.mktemp("straight") / "out"
    done = subprocess.run(command(base, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def interrupt(cmd, out, sig) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` once it has logged 3 steps, and wait for it to end."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        log = out / LOG_FILE
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and log.read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def check_paused(done: subprocess.CompletedProcess, out, hint) -> int:
    """The one line, no traceback, a complete checkpoint at the step reached; returns that step."""
    assert done.returncode == 130, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    latest = latest_checkpoint(out)
    assert latest is not None, done.stderr[-3000:]
    step = int(latest.name.split("-")[1])
    assert 3 <= step < STEPS
    line = hint(step) if callable(hint) else f"interrupted at step {step}; {hint} to resume"
    assert done.stderr.strip().splitlines()[-1] == line, done.stderr[-3000:]
    assert json.loads((latest / STATE_FILE).read_text())["step"] == step
    assert [r["step"] for r in train_records(out)] == list(range(1, step + 1))
    assert not list((out / "checkpoints").glob(".*partial"))
    assert not (out / "model.safetensors").exists()  # paused, not finished
    return step


def test_sigint_pauses_and_the_same_command_resumes_exactly(base, straight, tmp_path):
    out = tmp_path / "out"
    cmd = command(base, out, "--resume")
    step = check_paused(interrupt(cmd, out, signal.SIGINT), out, "run the same command")
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {checkpoint_dir(out, step)} (step {step}" in again.stderr
    assert same_weights(out, straight)
    assert [r["loss"] for r in train_records(out)] == [r["loss"] for r in train_records(straight)]


def test_sigterm_pauses_too(base, straight, tmp_path):
    out = tmp_path / "out"
    printed = shlex.join(["train", str(base), str(out), *FLAGS, "--resume"])
    check_paused(
        interrupt(command(base, out), out, signal.SIGTERM),
        out,
        lambda step: f"interrupted at step {step}; resume with: sn29 {printed}",
    )
    again = subprocess.run(
        command(base, out, "--resume"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert same_weights(out, straight)


# ------------------------------------------------------------------------------------- in process


def signal_during_step(monkeypatch, step: int, sig=signal.SIGINT) -> None:
    """Send ``sig`` to this process while optimizer step ``step`` (1-based) runs."""
    real, calls = loop.train_step, []

    def train_step(*args, **kw):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), sig)
        return real(*args, **kw)

    monkeypatch.setattr(loop, "train_step", train_step)


def test_in_process_the_step_finishes_a_checkpoint_is_written_and_handlers_come_back(
    base, tmp_path, monkeypatch
):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    straight = train(base, tmp_path / "straight", small_config())
    signal_during_step(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted) as caught:
        train(base, tmp_path / "split", small_config())
    e = caught.value
    assert str(e) == "interrupted at step 3; run the same command with --resume to resume"
    assert (e.step, e.checkpoint, e.signal_name) == (3, str(checkpoint_dir(tmp_path / "split", 3)), "SIGINT")
    assert {s: signal.getsignal(s) for s in before} == before
    monkeypatch.undo()
    resumed = train(base, tmp_path / "split", small_config(checkpoint=CheckpointConfig(resume=True)))
    assert resumed.complete and resumed.resumed_from == 3 and resumed.tokens == straight.tokens
    assert same_weights(tmp_path / "split", tmp_path / "straight")


def test_a_second_signal_during_the_checkpoint_stops_at_once_and_corrupts_nothing(
    base, tmp_path, monkeypatch
):
    from sn29_growth.train import checkpoint as ckpt

    monkeypatch.setattr(loop, "STOP_GRACE_S", 0.0)
    config = small_config(checkpoint=CheckpointConfig(save_every=2, keep=2))
    signal_during_step(monkeypatch, 3)
    real_save = ckpt.save_model_files

    def save_model_files(model, state_dict, directory, dtype=None):
        if "step-00000003" in directory.name:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, in the middle of writing the checkpoint
        return real_save(model, state_dict, directory, dtype)

    monkeypatch.setattr(ckpt, "save_model_files", save_model_files)
    with pytest.raises(KeyboardInterrupt):
        train(base, tmp_path / "run", config)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*partial"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    resumed = train(base, tmp_path / "run", small_config(checkpoint=CheckpointConfig(resume=True)))
    assert resumed.complete and resumed.resumed_from == 2
    train(base, tmp_path / "straight", small_config())
    assert same_weights(tmp_path / "run", tmp_path / "straight")


def test_a_signal_during_the_last_step_lets_the_run_finish(base, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sn29_growth.train.loop")
    signal_during_step(monkeypatch, 6, signal.SIGTERM)
    result = train(base, tmp_path / "out", small_config())
    assert result.complete and (tmp_path / "out" / "model.safetensors").is_file()
    assert "SIGTERM came after the last step of this run: it finished normally" in caplog.text


# ------------------------------------------------------------------------------- resume warnings


def test_resume_with_a_changed_schedule_warns_with_the_learning_rate_jump(base, tmp_path, caplog):
    train(base, tmp_path / "run", small_config(stop_after=3))
    caplog.set_level(logging.WARNING, logger="sn29_growth.train.loop")
    resume = CheckpointConfig(resume=True)
    train(base, tmp_path / "run", small_config(stop_after=4, checkpoint=resume))  # same settings: quiet
    assert "changed settings" not in caplog.text
    changed = small_config(
        steps=12,
        stop_after=5,
        optimizer=OptimizerConfig(lr=1e-3),
        schedule=ScheduleConfig(warmup_steps=4),
        checkpoint=resume,
    )
    train(base, tmp_path / "run", changed)
    (warning,) = [r.getMessage() for r in caplog.records if "changed settings" in r.getMessage()]
    before = learning_rates(4, 6, 3e-3, ScheduleConfig(warmup_steps=2)).old
    after = learning_rates(4, 12, 1e-3, ScheduleConfig(warmup_steps=4)).old
    assert warning == (
        "resume with changed settings: steps 6 -> 12, lr 0.003 -> 0.001, schedule.warmup_steps 2 -> 4; "
        f"the schedule changes; learning rate of the first resumed step (5): {before:.3g} -> {after:.3g}"
    )


def test_a_checkpoint_without_schedule_settings_still_gets_the_jump(caplog):
    from sn29_growth.train.loop import check_resume

    old = {"seq_len": 32, "global_batch": 4, "seed": 0, "data": "local:train", "steps": 100}  # older format
    new = {**old, "steps": 200, "lr": 3e-4, "schedule": {"kind": "cosine", "warmup_steps": 10}}
    caplog.set_level(logging.WARNING, logger="sn29_growth.train.loop")
    check_resume(old, new, 50)
    (record,) = caplog.records
    a = learning_rates(50, 100, 3e-4, ScheduleConfig(warmup_steps=10)).old
    b = learning_rates(50, 200, 3e-4, ScheduleConfig(warmup_steps=10)).old
    assert record.levelno == logging.WARNING
    assert (
        record.getMessage().endswith(f"(51): {a:.3g} -> {b:.3g}")
        and "steps 100 -> 200" in record.getMessage()
    )


# ------------------------------------------------------------------------------------------ miner


def fake_evaluate(paths, *, names, **kw):
    rows = [SimpleNamespace(name=n, rejection=None, losses=(10.0, 20.0)) for n in names]
    return SimpleNamespace(models=rows, dataset="fake", format_table=lambda: "table")


def test_the_miner_reports_the_pause_and_the_resume(base, tmp_path, monkeypatch):
    from validator_fakes import COMPETITIONS

    from sn29_growth.miner import MinerConfig, run_miner
    from sn29_growth.miner.offline import offline_clients
    from sn29_growth.miner.run import MinerReport

    comps = tmp_path / "competitions.json"
    comps.write_text(json.dumps(COMPETITIONS))
    clients = offline_clients(tmp_path / "work", competitions=comps)
    clients.evaluate = fake_evaluate
    config = MinerConfig(
        work_dir=tmp_path / "work",
        hf_repo="me/model",
        base=str(base),
        grow="none",
        train=TrainConfig(steps=5, batch=BatchConfig(batch_size=2, seq_len=16), device="cpu", progress=False),
        dataset="local",
        device="cpu",
        upload="never",
    )
    signal_during_step(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted, match=r"^interrupted at step 2; run the same command to resume$"):
        run_miner(config, clients)
    (path,) = config.runs_dir.glob("*/report.json")
    saved = json.loads(path.read_text())
    assert saved["status"] == "interrupted" and saved["training"]["interrupted_at_step"] == 2
    assert saved["message"] == "interrupted at step 2; run the same command to resume"
    assert "training  interrupted at step 2; checkpoint " in MinerReport(**saved).format()
    monkeypatch.undo()
    report = run_miner(config, clients)
    assert report.status == "dry-run" and report.training["resumed_from_step"] == 2
    assert report.training["steps"] == 5 and "; resumed from step 2" in report.format()


CHILD = """
import os, pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    d = out / "checkpoints" / "step-00000004"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text("{}")
    sys.exit(2)
signal.signal(signal.SIGTERM, stop)
time.sleep(0.5)
os.kill(os.getppid(), getattr(signal, sys.argv[2]))
time.sleep(0.5)
stop(None, None)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_the_miner_waits_for_torchrun_workers_to_checkpoint(tmp_path, sig):
    """Ctrl-C reaches torchrun's workers through the terminal, SIGTERM is passed on: either way the miner
    waits for them to stop and reports the pause at their checkpoint."""
    from sn29_growth.miner.run import run_training_processes

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as caught:
        run_training_processes([sys.executable, "-c", CHILD, str(tmp_path), sig], tmp_path)
    assert (caught.value.step, caught.value.signal_name) == (4, sig)
    assert str(caught.value) == "interrupted at step 4; run the same command to resume"
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(subprocess.CalledProcessError):
        run_training_processes([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)
