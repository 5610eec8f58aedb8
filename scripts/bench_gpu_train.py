"""The training section of ``scripts/bench_gpu.py``: throughput and MFU of a 1B-shaped Llama on one GPU.

    python scripts/bench_gpu.py --device cuda --sections train --out gpu-results.json

Model: the Llama 3.2 1B shape (the shape fields of the published config, as in the project's
``configs/llama-3.2-1b.json``: hidden 2048, 16 layers, 32 heads of 64, 8 KV heads, MLP 8192, vocab
128256, tied head), random bf16 weights saved once and loaded by each run as fp32 master weights, as
``sn29 train`` loads them. With ``tiny``: a tiny tied Llama on the given device (proves the code runs).

Each variant builds the model and optimizer with the training loop's own functions
(:func:`~sn29_growth.train.loop.build_model_and_optimizer`, :func:`~sn29_growth.train.loop.train_step`)
and runs ``steps`` optimizer steps on random token windows (bf16 autocast on CUDA); tokens/s is over the
steps after the first ``skip`` (compilation, allocator warm-up). Variants: the foreach optimizer against
the per-parameter one, ``torch.compile`` of the decoder layers on and off, activation checkpointing on and
off. MFU = (6 · N + 6 · L · T · d_attn) · tokens/s / 989 TFLOP/s (H100/H200 dense bf16), with N the
parameters in matrix products (the tied embedding counted once, as the head) and the second term causal
attention's score and value products (forward 2 · 2 · T · d_attn / 2 per token and layer, backward twice
that). Then the whole ``sn29 train`` path under ``torchrun --nproc_per_node 1 --fsdp`` (NCCL, FSDP2) against
the plain one-process run on the same config: the per-step losses must agree.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn29_growth.checkpoint import save_model  # noqa: E402
from sn29_growth.eval.flops import H100_H200_BF16_DENSE  # noqa: E402
from sn29_growth.tiny import build_tiny, tiny_config  # noqa: E402
from sn29_growth.tokenizer import embedded_tokenizer  # noqa: E402
from sn29_growth.train import (  # noqa: E402
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    train,
)
from sn29_growth.train.distributed import DistContext  # noqa: E402
from sn29_growth.train.loop import (  # noqa: E402
    LOG_FILE,
    autocast_for,
    build_model_and_optimizer,
    compute_dtype,
    train_step,
)
from sn29_growth.train.schedule import LearningRates  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import published_shape  # noqa: E402

PEAK_BF16_FLOPS = H100_H200_BF16_DENSE
MFU_TARGET = 0.40
LLAMA_3_2_1B = published_shape("llama-3.2-1b")
GPU_GEOMETRY = dict(seq_len=2048, batch_size=8, steps=10, skip=3)
TINY_GEOMETRY = dict(seq_len=32, batch_size=2, steps=4, skip=1)
FSDP_STEPS = 4


# ------------------------------------------------------------------------------------------ model


def save_bench_model(work_dir: Path, *, tiny: bool, device: str) -> Path:
    path = work_dir / "model"
    if tiny:
        model = build_tiny("llama-tied", seed=0)
    else:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        with torch.device(device):  # random init on the GPU: seconds instead of a minute on the CPU
            model = AutoModelForCausalLM.from_config(
                tiny_config("llama-tied", **LLAMA_3_2_1B), dtype=torch.bfloat16
            )
    save_model(model, path, tokenizer=embedded_tokenizer())
    del model
    _free()
    return path


def matmul_parameters(model: torch.nn.Module) -> int:
    """Parameters of matrix products: all but norms' gains; a tied embedding counts once (as the head)."""
    return sum(p.numel() for p in model.parameters() if p.ndim == 2)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    c = model.config
    d_attn = c.num_attention_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
    return 6.0 * matmul_parameters(model) + 6.0 * c.num_hidden_layers * seq_len * d_attn


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ variants


def measure(
    model_dir: Path, *, device: str, geometry: dict, foreach: bool, compile: bool, checkpointing: bool
) -> dict:
    """Throughput of ``steps`` optimizer steps of the training loop's ``train_step`` on random windows."""
    g = geometry
    config = TrainConfig(
        steps=g["steps"],
        eval_every=0,
        batch=BatchConfig(batch_size=g["batch_size"], seq_len=g["seq_len"]),
        checkpoint=CheckpointConfig(save_every=0),
        device=device,
        grad_checkpointing=checkpointing,
        compile="on" if compile else "off",
        progress=False,
    )
    ctx = DistContext(device=torch.device(device))
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    model, optimizer, _, _ = build_model_and_optimizer(model_dir, model_dir, config, ctx)
    optimizer.foreach = foreach
    autocast = autocast_for(ctx.device, compute_dtype(config, ctx.device))
    flops = flops_per_token(model, g["seq_len"])
    gen = torch.Generator().manual_seed(0)
    times, losses = [], []
    for _ in range(g["steps"]):
        optimizer.set_learning_rates(LearningRates(1e-4, 1e-4))
        windows = torch.randint(model.config.vocab_size, (g["batch_size"], g["seq_len"] + 1), generator=gen)
        _sync(ctx.device)
        started = time.perf_counter()
        loss, _ = train_step(model, optimizer, windows, g["batch_size"], 1.0, ctx, autocast)
        _sync(ctx.device)
        times.append(time.perf_counter() - started)
        losses.append(loss)
    timed = times[g["skip"] :]
    tokens_per_s = g["batch_size"] * g["seq_len"] * len(timed) / sum(timed)
    peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30 if ctx.device.type == "cuda" else None
    del model, optimizer
    if compile:
        torch._dynamo.reset()
    _free()
    return {
        "tokens_per_s": tokens_per_s,
        "mfu": flops * tokens_per_s / PEAK_BF16_FLOPS if ctx.device.type == "cuda" else None,
        "first_step_s": times[0],
        "step_s": sum(timed) / len(timed),
        "peak_gpu_gib": peak,
        "losses": losses,
    }


def _row(
    name: str, baseline: str, base: float | None, value: float | None, unit: str, note: str = ""
) -> dict:
    ratio = value / base if base and value is not None else None
    return {
        "name": name,
        "baseline": baseline,
        "baseline_value": base,
        "value": value,
        "ratio": ratio,
        "unit": unit,
        "note": note,
    }


# ------------------------------------------------------------------------------------------ FSDP2


def fsdp_against_plain(model_dir: Path, work_dir: Path, *, device: str, tiny: bool) -> dict:
    """``sn29 train`` under ``torchrun --nproc_per_node 1 --fsdp`` and in one plain process: step losses."""
    seq_len, batch = (32, 2) if tiny else (512, 4)
    flags = ["--steps", str(FSDP_STEPS), "--batch-size", str(batch), "--seq-len", str(seq_len), "--lr", "1e-4",
             "--warmup", "1", "--eval-every", "0", "--save-every", "0", "--save-dtype", "bfloat16",
             "--device", device, "--no-progress", "--json"]  # fmt: skip
    out = work_dir / "fsdp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "sn29_growth.train", str(model_dir), str(out), *flags, "--fsdp"]  # fmt: skip
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    fsdp_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun --fsdp failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    config = TrainConfig(
        steps=FSDP_STEPS,
        eval_every=0,
        optimizer=OptimizerConfig(lr=1e-4),
        schedule=ScheduleConfig(warmup_steps=1),
        batch=BatchConfig(batch_size=batch, seq_len=seq_len),
        checkpoint=CheckpointConfig(save_every=0),
        device=device,
        save_dtype="bfloat16",
        progress=False,
    )
    plain = train(model_dir, work_dir / "plain", config)
    fsdp_losses, plain_losses = _losses(out), _losses(work_dir / "plain")
    return {
        "world_size": result["world_size"],
        "device": result["device"],
        "compute_dtype": result["compute_dtype"],
        "fsdp_losses": fsdp_losses,
        "plain_losses": plain_losses,
        "max_abs_loss_diff": max(abs(a - b) for a, b in zip(fsdp_losses, plain_losses, strict=True)),
        "fsdp_tokens_per_s": result["tokens_per_s"],
        "plain_tokens_per_s": plain.tokens_per_s,
        "fsdp_wall_s": fsdp_s,
    }


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


# ------------------------------------------------------------------------------------------ section

VARIANTS = (  # (key, foreach, compile, activation checkpointing)
    ("eager", True, False, False),
    ("per-parameter optimizer", False, False, False),
    ("compile", True, True, False),
    ("checkpointing", True, False, True),
    ("checkpointing+compile", True, True, True),
)


def run(*, tiny: bool, device: str, work_dir: Path, budget_s: float) -> dict:
    started = time.perf_counter()
    geometry = TINY_GEOMETRY if tiny else GPU_GEOMETRY
    model_dir = save_bench_model(work_dir, tiny=tiny, device=device)
    compile_ok = device.startswith("cuda")  # compiling on a CPU takes minutes: not measured there
    variants, skipped = {}, {}
    for key, foreach, compile, checkpointing in VARIANTS:
        if compile and not compile_ok:
            skipped[key] = "compile is measured on CUDA only"
            continue
        left = budget_s - (time.perf_counter() - started)
        if variants and left < 0.35 * budget_s:  # keep a third for the FSDP2 run
            skipped[key] = f"budget: {left:.0f} s left"
            continue
        variants[key] = measure(
            model_dir,
            device=device,
            geometry=geometry,
            foreach=foreach,
            compile=compile,
            checkpointing=checkpointing,
        )
    fsdp = fsdp_against_plain(model_dir, work_dir, device=device, tiny=tiny)

    def tps(key):
        return variants[key]["tokens_per_s"] if key in variants else None

    def mfu(key):
        return variants[key]["mfu"] if key in variants else None

    def note(key):
        return skipped.get(key, "")

    shape = "tiny Llama" if tiny else "Llama-3.2-1B shape"
    g = geometry
    where = f"{shape}, batch {g['batch_size']} x seq {g['seq_len']}"
    rows = [
        _row(f"train tokens/s, foreach MaskedAdamW ({where})", "per-parameter MaskedAdamW",
             tps("per-parameter optimizer"), tps("eager"), "tokens/s", note("per-parameter optimizer")),
        _row(f"train tokens/s, torch.compile decoder layers ({where})", "eager",
             tps("eager"), tps("compile"), "tokens/s", note("compile")),
        _row(f"train tokens/s, activation checkpointing ({where})", "no checkpointing",
             tps("eager"), tps("checkpointing"), "tokens/s", note("checkpointing")),
        _row(f"train tokens/s, checkpointing + compile ({where})", "checkpointing, eager",
             tps("checkpointing"), tps("checkpointing+compile"), "tokens/s", note("checkpointing+compile")),
    ]  # fmt: skip
    for key in ("eager", "compile", "checkpointing", "checkpointing+compile"):
        rows.append(
            _row(f"MFU, {key} ({where})", "40 % target", MFU_TARGET, mfu(key), "fraction of 989 TFLOP/s",
                 note(key) or ("no MFU off CUDA" if not device.startswith("cuda") else ""))
        )  # fmt: skip
    rows.append(
        _row("max |loss difference| per step, FSDP2 torchrun nproc 1 (--fsdp)", "plain one-process run",
             0.0, fsdp["max_abs_loss_diff"], "nats", f"{FSDP_STEPS} steps, {fsdp['compute_dtype']}")
    )  # fmt: skip
    rows.append(
        _row("train tokens/s, FSDP2 torchrun nproc 1", "plain one-process run",
             fsdp["plain_tokens_per_s"], fsdp["fsdp_tokens_per_s"], "tokens/s", "short run: indicative")
    )  # fmt: skip
    return {
        "model": shape,
        "geometry": geometry,
        "variants": variants,
        "skipped": skipped,
        "fsdp": fsdp,
        "rows": rows,
    }
