"""Section ``pipeline`` of scripts/bench_gpu.py: one validator model from snapshot to losses, stage by stage.

On a GPU (``tiny=False``) a Llama-3-8B-shaped checkpoint (the shapes of Meta-Llama-3-8B's config.json,
random bf16 weights) is written as a Hub-like snapshot (``models--…/blobs`` + ``snapshots/<sha>/`` links,
≈ 5 GB shards) into ``work_dir``, then timed as a validator runs it:

- the content hash: the concurrent digest of the package vs a one-thread ``hashlib`` loop, same files
  (both read from the page cache, where a just-downloaded snapshot is);
- the integrity checks: the tensor table against the config, the non-finite scan of the loaded weights;
- loading onto the device: safetensors straight to the device vs ``from_pretrained``'s default path
  (CPU, then ``.to(device)``), time and host peak RSS; both models' losses on a few samples must agree;
- the evaluation: ``summed_losses`` over up to 800 random-token samples of mixed lengths (fewer when the
  budget is short: the row says how many, and the 800-sample time is extrapolated from the rate).

The last row is the time outside the forward passes (hash + checks + load) over the evaluation time;
the goal is ≤ 0.30. ``tiny=True`` runs the same steps on a tiny model in seconds (CPU is fine).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import published_shape  # noqa: E402

SHARD_BYTES = 5 * 10**9
FULL_SAMPLES = 800
LLAMA3_8B = {**published_shape("llama-3-8b"), "bos_token_id": 128000, "eos_token_id": 128001}
TINY = dict(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
)
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ------------------------------------------------------------------------------------------- pieces


def model_config(tiny: bool) -> dict[str, Any]:
    from sn29_growth.growth.synthetic import llama_config

    return llama_config(**(TINY if tiny else LLAMA3_8B))


def write_snapshot(
    root: Path, config: dict[str, Any], *, device: str, shard_bytes: int, seed: int = 0
) -> Path:
    """A Hub-cache-like snapshot of random bf16 weights (drawn on ``device``); returns the snapshot folder."""
    from sn29_growth.arch import Shape, architecture_for
    from sn29_growth.checkpoint import write_config
    from sn29_growth.io import PlannedTensor, ShardWriter

    repo = root / "models--bench--llama-pipeline"
    staging, blobs, snap = repo / "staging", repo / "blobs", repo / "snapshots" / FAKE_COMMIT
    for d in (staging, blobs, snap):
        d.mkdir(parents=True)
    shape = Shape.from_config(config)
    arch = architecture_for(shape.model_type)
    shapes = arch.expected_shapes(shape)
    dtype = torch.bfloat16
    writer = ShardWriter(staging, [PlannedTensor(n, dtype, s) for n, s in shapes.items()], shard_bytes)
    gen = torch.Generator(device).manual_seed(seed)
    for name, s in shapes.items():
        kind = arch.lookup(name)[0].kind
        if kind == "norm":
            t = torch.ones(s, dtype=dtype)
        elif kind == "bias":
            t = torch.zeros(s, dtype=dtype)
        else:
            t = torch.randn(s, generator=gen, device=device).mul_(shape.initializer_range).to(dtype).cpu()
        writer.write(name, t)
        del t
    writer.close()
    write_config(staging, dict(config, torch_dtype="bfloat16"))
    for i, f in enumerate(sorted(staging.iterdir())):
        blob = blobs / f"{i:064x}"
        f.rename(blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    staging.rmdir()
    return snap


def one_thread_hashlib(paths: list[Path]) -> list[bytes]:
    """The baseline: each file through hashlib.sha256 in 8 MiB reads, one after the other."""
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        out.append(h.digest())
    return out


def time_hashes(paths: list[Path], repeats: int = 1) -> tuple[float, float]:
    """(one-thread seconds, concurrent seconds), best of ``repeats``; the digests must agree."""
    from sn29_growth.digest import sha256_files

    base = fast = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        want = one_thread_hashlib(paths)
        base = min(base, time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = sha256_files(paths)
        fast = min(fast, time.perf_counter() - t0)
        if got != want:
            raise AssertionError("concurrent digests differ from the one-thread hashlib loop")
    return base, fast


class PeakRss:
    """Peak resident memory of this process (MiB) while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def now_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.now_mib())
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self.peak_mib = self.now_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self.now_mib())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_load(
    path: Path, device: str, *, direct: bool, dtype: torch.dtype = torch.bfloat16
) -> tuple[torch.nn.Module, float, float]:
    """(model, seconds, host peak RSS in MiB) of ``load_model`` in ``dtype`` on ``device``."""
    from sn29_growth.loading import load_model

    with PeakRss() as rss:
        t0 = time.perf_counter()
        model = load_model(
            path, dtype=dtype, device=device, attn_implementation="sdpa", network=True, direct=direct
        )
        _sync(device)
        seconds = time.perf_counter() - t0
    return model, seconds, rss.peak_mib


def warm_imports(path: Path) -> None:
    """Import what both load paths import (the model classes, accelerate) so neither pays it in its time."""
    from sn29_growth.io.device_load import empty_model
    from sn29_growth.loading import load_config

    empty_model(load_config(path, network=True), dtype=torch.bfloat16)


def random_samples(n: int, vocab: int, min_len: int, max_len: int, seed: int = 0) -> list[list[int]]:
    """``n`` random-token sequences, lengths uniform in [min_len, max_len] (a mix of short and long)."""
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]


def row(name, baseline, baseline_value, value, unit, note="", ratio=None) -> dict[str, Any]:
    if ratio is None and baseline_value and value:
        ratio = round(baseline_value / value, 3)
    return {
        "name": name,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else round(baseline_value, 4),
        "value": None if value is None else round(value, 4),
        "ratio": ratio,
        "unit": unit,
        "note": note,
    }


# ------------------------------------------------------------------------------------------- section


def stock_load(snap: Path, device: str, probe, direct_losses, settings) -> tuple[float, float, str]:
    """Load through from_pretrained's default path: its seconds, its peak RSS, and how its losses compare."""
    from sn29_growth.eval.loss import summed_losses

    stock, stock_s, stock_rss = timed_load(snap, device, direct=False)
    stock_losses = summed_losses(stock, probe, settings).losses
    del stock
    _free(device)
    diff = max(abs(a - b) for a, b in zip(direct_losses, stock_losses, strict=True))
    return stock_s, stock_rss, f"losses of 8 samples: max |direct - stock| = {diff:.3g}"


def timed_evaluation(model, samples, settings, device: str, left, chunk: int) -> tuple[int, float, int]:
    """Evaluate ``samples`` chunk by chunk while the budget (``left()`` seconds) lasts: the samples done,
    the seconds they took and their tokens."""
    from sn29_growth.eval.loss import summed_losses

    done, eval_s, tokens, target = 0, 0.0, 0, len(samples)
    while done < target:
        if done and left() < (eval_s / done) * min(chunk, target - done) + 5:
            break
        batch = samples[done : done + chunk]
        t0 = time.perf_counter()
        summed_losses(model, batch, settings)
        _sync(device)
        eval_s += time.perf_counter() - t0
        done += len(batch)
        tokens += sum(len(s) for s in batch)
    return done, eval_s, tokens


def checked_load(snap: Path, device: str):
    """The tensor-table check, the direct load and the non-finite scan: the model, the load's seconds and
    peak RSS, the GPU peak (GiB; None on CPU) and the checks' seconds."""
    from sn29_growth.checkpoint import read_model_config
    from sn29_growth.eval import checks
    from sn29_growth.loading import check_tensor_table

    t0 = time.perf_counter()
    check_tensor_table(snap, read_model_config(snap))
    table_s = time.perf_counter() - t0
    warm_imports(snap)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model, load_s, load_rss = timed_load(snap, device, direct=True)
    gpu_peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    t0 = time.perf_counter()
    bad = checks.nonfinite_parameters(model)
    _sync(device)
    checks_s = table_s + time.perf_counter() - t0
    if bad:
        raise AssertionError(f"non-finite weights in a random checkpoint: {bad[:3]}")
    return model, load_s, load_rss, gpu_peak, checks_s


def timed_hash_row(all_files: list[Path], shards: int, size_gb: float) -> tuple[dict[str, Any], float]:
    """The content-hash row (against a one-thread hashlib loop) and the hash's seconds."""
    base_hash, hash_s = time_hashes(all_files)
    hash_row = row(
        f"content hash ({shards} shards, {size_gb:.2f} GB)",
        "one-thread hashlib loop",
        base_hash,
        hash_s,
        "s",
        f"{os.cpu_count()} CPUs; files in the page cache; ratio = speed-up",
    )
    return hash_row, hash_s


def run(*, tiny: bool, device: str, work_dir: Path, budget_s: float) -> dict:
    from sn29_growth.eval.loss import EngineSettings, summed_losses
    from sn29_growth.eval.timing import StageTimes

    started = time.perf_counter()

    def left() -> float:
        return budget_s - (time.perf_counter() - started)

    config = model_config(tiny)
    shard_bytes = 60_000 if tiny else SHARD_BYTES
    t0 = time.perf_counter()
    snap = write_snapshot(Path(work_dir), config, device=device, shard_bytes=shard_bytes)
    os.sync()  # no write-back competes with the timings below
    write_s = time.perf_counter() - t0
    files = sorted(p for p in snap.iterdir() if p.name.endswith(".safetensors"))
    all_files = sorted(snap.iterdir())
    size_gb = sum(p.stat().st_size for p in all_files) / 1e9
    rows: list[dict[str, Any]] = []

    hash_row, hash_s = timed_hash_row(all_files, len(files), size_gb)
    rows.append(hash_row)

    model, load_s, load_rss, gpu_peak, checks_s = checked_load(snap, device)
    rows.append(row("integrity checks (tensor table + non-finite scan)", None, None, checks_s, "s"))

    settings = EngineSettings.for_device(device)
    min_len, max_len = (16, 128) if tiny else (64, 1024)
    probe = random_samples(8, config["vocab_size"], min_len, max_len, seed=1)
    direct_losses = summed_losses(model, probe, settings).losses

    stock_note = "skipped: not enough budget left"
    stock_s = stock_rss = None
    if left() > 4 * load_s + (5 if tiny else 40):
        stock_s, stock_rss, stock_note = stock_load(snap, device, probe, direct_losses, settings)
    rows.append(
        row(
            f"load onto {device} (safetensors straight to the device)",
            "from_pretrained default path, then .to(device)",
            stock_s,
            load_s,
            "s",
            stock_note + (f"; GPU peak {gpu_peak:.1f} GiB" if gpu_peak else ""),
        )
    )
    rows.append(
        row(
            "host peak RSS while loading (direct)",
            "from_pretrained default path",
            stock_rss,
            load_rss,
            "MiB",
            "whole-process RSS (includes the imports); ratio = baseline / direct",
        )
    )

    target = 32 if tiny else FULL_SAMPLES
    samples = random_samples(target, config["vocab_size"], min_len, max_len)
    done, eval_s, tokens = timed_evaluation(model, samples, settings, device, left, chunk=8 if tiny else 100)
    eval_full = eval_s * target / done
    rows.append(
        row(
            f"evaluation of {done} samples ({min_len}-{max_len} tokens)",
            None,
            None,
            eval_s,
            "s",
            f"{tokens / eval_s:,.0f} tokens/s"
            + ("" if done == target else f"; {target} samples extrapolated: {eval_full:.1f} s"),
        )
    )
    times = StageTimes(checks_s=checks_s, hash_s=hash_s, load_s=load_s, eval_s=eval_full)
    rows.append(
        row(
            "outside the forward passes / evaluation time",
            "goal",
            0.30,
            times.outside_ratio,
            "fraction",
            times.render(),
            ratio=round(times.outside_ratio / 0.30, 3) if times.outside_ratio else None,
        )
    )
    del model
    _free(device)
    return {
        "model": "llama-3-8b shapes, random bf16" if not tiny else "tiny llama, random bf16",
        "snapshot_gb": round(size_gb, 3),
        "shards": len(files),
        "write_s": round(write_s, 2),
        "samples": done,
        "stages": times.to_json(),
        "rows": rows,
    }


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
