"""What every benchmark script records: the machine, the command, and a child process's time and peak RSS."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path


def run_child(cmd: list[str], *, sync: bool = False) -> tuple[dict, int, str, str]:
    """Run ``cmd`` in a fresh process: ``({"wall_s", "peak_rss_mib"}, exit code, stdout, stderr)``.

    The peak RSS is the kernel's rusage of that child (``wait4``). Dirty pages are flushed first so every
    run starts from the same state; with ``sync`` the flush of what the command wrote is part of its time.
    """
    os.sync()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # the call that reaps the child gets its rusage
        if sync:
            os.sync()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    measured = {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    return measured, os.waitstatus_to_exitcode(status), stdout, stderr


def machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": version("torch"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def finish(results: dict, script: str, argv: list[str], json_path: Path | None) -> None:
    """Add the machine, the date and the command to ``results``; print them and write ``json_path``."""
    results["machine"] = machine_info()
    results["date"] = date.today().isoformat()
    results["command"] = " ".join([f"python scripts/{script}", *argv])
    text = json.dumps(results, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")


PUBLISHED_CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "data" / "configs"
SHAPE_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "rope_theta",
    "rope_scaling",
    "tie_word_embeddings",
)


def published_shape(name: str) -> dict:
    """The shape fields of a published config in ``tests/data/configs`` (``llama-3-8b``, ``llama-3.2-1b``, ...)."""
    config = json.loads((PUBLISHED_CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: config[k] for k in SHAPE_FIELDS if config.get(k) is not None}
