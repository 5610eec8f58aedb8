"""Training throughput of ``sn29_growth.train``: tokens/s with and without activation checkpointing, and
MaskedAdamW's step time with foreach kernels against one parameter at a time.

    .venv/bin/python scripts/bench_train.py                       # CPU, a small Llama
    .venv/bin/python scripts/bench_train.py --device cuda --hidden 1024 --layers 8 --vocab 32000 \\
        --seq-len 1024 --batch-size 16 --peak-tflops 989            # H100 SXM dense bf16 peak

Each variant runs ``train()`` for ``--steps`` optimizer steps (no validation, no checkpoints) on the
embedded corpus; throughput is predicted tokens per second of step time over the steps after the first
``--skip`` (which include one-off allocation and kernel selection). MFU = 6 · N · tokens/s / peak FLOP/s
with N the parameters that take part in matmuls (all but the input embedding, unless it is tied to
the head); attention's own FLOPs are not counted.

The optimizer rows time ``MaskedAdamW.step()`` alone on the same model's parameters (random gradients,
``--optim-steps`` steps after one warm-up step): ``foreach=True`` against ``foreach=False`` (the same
kernels launched per parameter, as the optimizer did before), plain and with masks on every matrix (a
grown model with new slices everywhere). The GPU sections (1B shape, MFU, compile, FSDP2) are in
``scripts/bench_gpu_train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sn29_growth.checkpoint import save_model
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import VOCAB_SIZE, embedded_tokenizer
from sn29_growth.train import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    train,
)
from sn29_growth.train.loop import LOG_FILE


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None, help="default: 8/3 · hidden, rounded to 64")
    p.add_argument("--vocab", type=int, default=VOCAB_SIZE, help=f">= {VOCAB_SIZE} (the embedded tokenizer)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--skip", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s of the device, for MFU")
    p.add_argument("--variants", default="plain,checkpointing", help="comma list of: plain, checkpointing")
    p.add_argument("--optim-steps", type=int, default=10, help="optimizer steps timed per variant, 0 = none")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.vocab < VOCAB_SIZE:
        p.error(f"--vocab must be >= {VOCAB_SIZE}")
    if args.steps <= args.skip:
        p.error("--steps must exceed --skip")
    return args


def matmul_parameters(model: torch.nn.Module) -> int:
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    tied = embed is model.get_output_embeddings().weight
    return total if tied else total - embed.numel()


def run_variant(model_dir: Path, out_dir: Path, args, checkpointing: bool) -> dict:
    config = TrainConfig(
        steps=args.steps,
        eval_every=0,
        optimizer=OptimizerConfig(lr=1e-3),
        schedule=ScheduleConfig(warmup_steps=2),
        batch=BatchConfig(batch_size=args.batch_size, seq_len=args.seq_len, grad_accum=args.grad_accum),
        checkpoint=CheckpointConfig(save_every=0),
        device=args.device,
        dtype=args.dtype,
        grad_checkpointing=checkpointing,
        progress=False,
    )
    result = train(model_dir, out_dir, config)
    rows = [json.loads(line) for line in (out_dir / LOG_FILE).read_text().splitlines()]
    times = [r["step_time_s"] for r in rows if r["kind"] == "train"][args.skip :]
    tokens_per_step = args.batch_size * args.grad_accum * args.seq_len
    mean = statistics.fmean(times)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return {
        "variant": "checkpointing" if checkpointing else "plain",
        "tokens_per_s": tokens_per_step / mean,
        "step_time_s_mean": mean,
        "step_time_s_min": min(times),
        "compute_dtype": result.compute_dtype,
        "final_train_loss": result.final_train_loss,
        "peak_gpu_mem_gib": peak_mem,
    }


def optimizer_step_time(model: torch.nn.Module, *, foreach: bool, masked: bool, steps: int) -> float:
    """Mean seconds of one ``MaskedAdamW.step()`` over ``model``'s parameters (random gradients)."""
    from sn29_growth.train.config import OptimizerConfig as Opt
    from sn29_growth.train.optim import build_optimizer
    from sn29_growth.train.schedule import LearningRates

    gen = torch.Generator().manual_seed(0)
    masks = {}
    if masked:  # the second half of every matrix's rows is new
        for name, p in model.named_parameters():
            if p.ndim == 2:
                mask = torch.zeros(p.shape, dtype=torch.bool)
                mask[p.shape[0] // 2 :] = True
                masks[name] = mask
    optimizer = build_optimizer(model, Opt(), masks, foreach=foreach)
    optimizer.set_learning_rates(LearningRates(1e-4, 1e-3))
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen).to(p.device) * 1e-3
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    optimizer.step()  # warm-up: allocator, kernel selection
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    sync()
    return (time.perf_counter() - started) / steps


def optimizer_rows(model: torch.nn.Module, steps: int) -> list[dict]:
    rows = []
    for masked in (False, True):
        loop = optimizer_step_time(model, foreach=False, masked=masked, steps=steps)
        fused = optimizer_step_time(model, foreach=True, masked=masked, steps=steps)
        rows.append(
            {
                "variant": "masked" if masked else "plain",
                "per_parameter_step_s": loop,
                "foreach_step_s": fused,
                "speedup": loop / fused,
            }
        )
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    intermediate = args.intermediate or (8 * args.hidden // 3 + 63) // 64 * 64
    model = build_tiny(
        "llama-mha",
        seed=0,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        head_dim=args.hidden // args.heads,
        intermediate_size=intermediate,
        vocab_size=args.vocab,
        max_position_embeddings=max(1024, args.seq_len),
    )
    n_params = sum(p.numel() for p in model.parameters())
    n_matmul = matmul_parameters(model)
    optim_rows = optimizer_rows(model.to(args.device), args.optim_steps) if args.optim_steps else []
    model.to("cpu").zero_grad(set_to_none=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        model_dir = Path(tmp) / "model"
        save_model(model, model_dir, tokenizer=embedded_tokenizer())
        del model
        for variant in filter(None, args.variants.split(",")):
            rows.append(run_variant(model_dir, Path(tmp) / variant, args, variant == "checkpointing"))
    for row in rows:
        flops = 6 * n_matmul * row["tokens_per_s"]
        row["model_tflops"] = flops / 1e12
        row["mfu"] = flops / (args.peak_tflops * 1e12) if args.peak_tflops else None
    by = {r["variant"]: r for r in rows}
    ratio = by["checkpointing"]["tokens_per_s"] / by["plain"]["tokens_per_s"] if len(by) == 2 else None
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}"
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "parameters": n_params,
        "matmul_parameters": n_matmul,
        "shape": dict(
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            intermediate=intermediate,
            vocab=args.vocab,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
        ),  # fmt: skip
        "rows": rows,
        "checkpointing_over_plain": ratio,
        "optimizer": optim_rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['command']}")
    print(
        f"device {device}, {report['cpu_count']} CPUs, torch {torch.__version__} ({report['torch_threads']} threads)"
    )
    print(f"model {n_params:,} parameters ({n_matmul:,} in matmuls), {report['shape']}")
    print(f"{'variant':<14} {'tokens/s':>10} {'step ms':>9} {'TFLOP/s':>8} {'MFU':>7}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(
            f"{r['variant']:<14} {r['tokens_per_s']:>10,.0f} {1000 * r['step_time_s_mean']:>9.1f} "
            f"{r['model_tflops']:>8.3f} {mfu:>7}"
        )
    if ratio is not None:
        print(f"checkpointing / plain throughput: {ratio:.3f}")
    for r in optim_rows:
        print(
            f"MaskedAdamW step ({r['variant']}): per-parameter {1000 * r['per_parameter_step_s']:.1f} ms, "
            f"foreach {1000 * r['foreach_step_s']:.1f} ms, speedup {r['speedup']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
