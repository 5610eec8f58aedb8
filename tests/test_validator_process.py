"""Process-level guarantees: a hung evaluation is killed on time; kill -9 never loses or corrupts state."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.worker import run_in_worker
from sn29_growth.validator.state import load_state

ROOT = Path(__file__).resolve().parents[1]
FAKE_WORKER = [sys.executable, str(ROOT / "tests" / "fake_eval_worker.py")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_hanging_evaluation_is_killed_within_timeout(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    hang = [
        sys.executable,
        "-c",
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(3600)",
    ]
    t0 = time.monotonic()
    result = run_in_worker({"x": 1}, timeout_s=1.5, command=hang)
    elapsed = time.monotonic() - t0
    assert not result.ok and "timed out" in result.error
    assert elapsed < 1.5 + 5
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the worker's own children must die with it"


def test_worker_failure_is_a_result_not_an_exception(tmp_path):
    result = run_in_worker({}, timeout_s=30, command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    assert not result.ok and "code 3" in result.error


def _models_file(tmp_path: Path) -> Path:
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    entries = []
    for i, variant in enumerate(["llama-gqa", "llama-mha", "phi3"]):
        path = tmp_path / f"m{i}"
        save_model(build_tiny(variant, seed=i), path, tokenizer=embedded_tokenizer())
        entries.append({"model": str(path), "block": 10 * (i + 1), "label": f"m{i}"})
    f = tmp_path / "models.json"
    f.write_text(json.dumps(entries))
    return f


def test_sigkill_at_random_points_never_loses_state(tmp_path):
    models = _models_file(tmp_path)
    vd = tmp_path / "vd"
    state_path = vd / "validator_state.json"
    cmd = [
        sys.executable,
        str(ROOT / "neurons" / "validator.py"),
        "--offline",
        "--models",
        str(models),
        "--model-dir",
        str(vd),
        "--device",
        "cpu",
        "--step-interval",
        "0",
        "--weights-interval-blocks",
        "1",
        "--eval-worker",
        " ".join(FAKE_WORKER),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(1234)
    last_step, inside_write, kills = 0, 0, 0
    for i in range(22):
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if i == 0:  # the first run checks the models (meta-device parameter counts): let it save once
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not state_path.exists():
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
        elif i % 2 == 0:
            time.sleep(rng.uniform(0.1, 2.0))
        else:  # wait for a state write to begin, then kill inside it
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(n.endswith(".tmp") for n in os.listdir(vd)):
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        inside_write += any(vd.glob(".validator_state.json.*.tmp"))  # the kill interrupted a write
        kills += 1
        if state_path.exists():
            state = load_state(state_path)  # never corrupted
            assert state.step >= last_step  # never lost
            if state.step:
                assert set(state.models) == {"offline:m0", "offline:m1", "offline:m2"}
                assert state.ema_weights and state.last_weights_block > 0
            last_step = state.step
    print(f"{kills} kills, {inside_write} inside a state write, {last_step} steps saved")
    assert kills >= 20 and inside_write >= 3 and last_step >= 3
    # It carries on: a clean run continues from the saved state.
    done = subprocess.run(cmd + ["--steps", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_state(state_path).step == last_step + 2
    assert not list(vd.glob(".validator_state.json.*.tmp"))


def _slow_tokenizer(tok):
    """Valid, but each of 4000 regex passes backtracks over every word: minutes for a few samples."""
    split = {
        "type": "Split",
        "pattern": {"Regex": "(?:\\w|\\w){1,8}(?=\\W)(?<=\\d)"},
        "behavior": "Isolated",
        "invert": False,
    }
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split] * 4000 + [tok["pre_tokenizer"]]}


def test_a_slow_or_crashing_tokenizer_costs_only_its_own_model(tmp_path):
    """Real worker processes: a tokenizer slow enough to blow the timeout and one that makes the tokenizers
    library panic sit beside an honest model. Each lands on its cause; the honest model is scored and
    weighted in the same step; the timed-out model is not evaluated again in the next step."""
    from validator_fakes import hotkey, make_env, publish

    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer
    from sn29_growth.validator.runner import run

    config, clients, chain, _, hub = make_env(tmp_path, eval_timeout_s=25.0)
    calls = []

    def evaluate(request, timeout):
        calls.append(request["models"][0]["key"])
        return run_in_worker(request, timeout)

    clients.evaluate = evaluate
    paths = {}
    for name in ("honest", "slow", "panic"):
        paths[name] = tmp_path / name
        save_model(build_tiny("llama-gqa", seed=0), paths[name], tokenizer=embedded_tokenizer())
    for name, edit in (("slow", _slow_tokenizer), ("panic", None)):
        tok = json.loads((paths[name] / "tokenizer.json").read_text())
        if edit:
            edit(tok)
        else:
            tok["normalizer"] = {"type": "Replace", "pattern": {"Regex": ""}, "content": "x"}
        (paths[name] / "tokenizer.json").write_text(json.dumps(tok))
    for uid, name in enumerate(("honest", "slow", "panic")):
        chain.put(uid, publish(hub, f"m/{name}", paths[name], uid), block=10 + uid)
    t0 = time.monotonic()
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    elapsed = time.monotonic() - t0
    honest, slow, panic = (state.models[hotkey(i)] for i in range(3))
    assert honest.status == "pool" and honest.win_rate == 1.0
    assert chain.weights[-1][1] == {0: 1.0}
    assert slow.status == "failed" and "timed out after 25 s" in slow.reason
    assert panic.status == "rejected" and "PanicException" in panic.reason
    assert elapsed < 25 + 60, elapsed
    calls.clear()
    chain.block += 10
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    assert hotkey(1) not in calls  # not retried every step (revisited after revisit_every_steps)
    assert state.models[hotkey(1)].status == "failed"
