"""``sn29 train`` end to end, and a run killed with SIGKILL resumes from its last complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sn29_growth.chain.commitment import is_hashed_file
from sn29_growth.cli import main
from sn29_growth.loading import load_model
from sn29_growth.tiny import build_tiny
from sn29_growth.train.checkpoint import STATE_FILE, latest_checkpoint, list_checkpoints
from sn29_growth.train.loop import LOG_FILE

FLAGS = ["--batch-size", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "2", "--no-progress"]


@pytest.fixture
def base(save_tiny):
    return save_tiny(build_tiny("llama-gqa", seed=0), "base")


def test_cli_trains_on_a_jsonl_file(base, tmp_path, corpus, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": s.text}) + "\n" for s in corpus.train[:40]))
    val = tmp_path / "val.txt"
    val.write_text("\n".join(s.text.replace("\n", " ") for s in corpus.held_out[:10]) + "\n")
    out = tmp_path / "out"
    argv = ["train", str(base), str(out), "--steps", "4", "--eval-every", "2", "--eval-windows", "8",
            "--save-every", "2", "--keep-checkpoints", "1", "--data", str(data), "--val-data", str(val),
            "--json", *FLAGS]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["complete"] and result["steps"] == 4 and result["tokens"] == 4 * 4 * 32
    assert result["final_val_loss"] < result["initial_val_loss"]
    assert [p.name for p in list_checkpoints(out)] == ["step-00000004"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == f"file:{data}"
    card = (out / "README.md").read_text()  # a model card, as sn29 grow writes one
    assert "# Trained LlamaForCausalLM" in card and f"`{base}`" in card and f"`file:{data}`" in card
    assert f"| held-out loss after | {result['final_val_loss']:.4f} |" in card
    assert not is_hashed_file("README.md")  # the card is never part of the model's content hash
    load_model(out)
    assert main(argv) == 2  # the directory already holds a run: refused, not overwritten
    assert "already holds a training run" in capsys.readouterr().err


def test_sigkill_leaves_a_usable_checkpoint(base, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sn29_growth.train", str(base), str(out), "--steps", "100000",
           "--save-every", "1", "--keep-checkpoints", "2", "--eval-every", "0", *FLAGS]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            latest = latest_checkpoint(out)
            if latest is not None and int(latest.name.split("-")[1]) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.3)  # land anywhere: mid-step, mid-save, mid-prune
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    latest = latest_checkpoint(out)
    step = int(latest.name.split("-")[1])
    assert step >= 3 and (latest / STATE_FILE).is_file()
    load_model(latest)
    result = main(["train", str(base), str(out), "--steps", str(step + 2), "--resume", "--eval-every", "0",
                   "--save-every", "0", *FLAGS])  # fmt: skip
    assert result == 0
    steps = [json.loads(line)["step"] for line in (out / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, step + 3))  # the log was cut back to the checkpoint, then continued
    assert not list((out / "checkpoints").glob(".*partial"))
    load_model(out)


def test_cli_reports_invalid_settings(base, tmp_path, capsys):
    assert main(["train", str(base), str(tmp_path / "out"), "--batch-size", "0"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert main(["train", str(base), str(tmp_path / "out"), "--new-only-steps", "2", *FLAGS]) == 2
    assert "growth_recipe.json" in capsys.readouterr().err


def test_a_full_disk_is_named_not_a_torch_traceback(base, tmp_path, capsys, monkeypatch):
    """A disk that fills up while a checkpoint is written ends with a message that says so (torch itself
    reports ``[enforce fail at inline_container.cc] unexpected pos``), and nothing partial is left."""
    import sn29_growth.train.checkpoint as ckpt

    def short_write(obj, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4059")

    monkeypatch.setattr(ckpt.torch, "save", short_write)
    argv = ["train", str(base), str(tmp_path / "out"), "--steps", "2", "--save-every", "2", *FLAGS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ran out of space while writing checkpoint step 2" in err and "--resume" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "out" / "checkpoints").iterdir())

    monkeypatch.undo()
    monkeypatch.setattr(ckpt, "_free_bytes", lambda directory: 1000)
    assert main([*argv[:2], str(tmp_path / "out2"), *argv[3:]]) == 2
    assert "not enough disk space for checkpoint step 2" in capsys.readouterr().err
