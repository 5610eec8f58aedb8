"""Benchmark the evaluation loss engine against the naive batch-size-1 loop on the same model and samples.

Both run in the same process on the same random-weight model and the same token sequences; timings are
interleaved (naive, engine, naive, engine, ...) and the best run of each is reported, with the median
ratio and the process-CPU-time ratio beside it, because development machines are shared. Per-sample
summed losses are compared, and the engine's peak memory is reported per length bucket
(CUDA allocator peak on GPU, peak RSS on CPU).

    python scripts/bench_eval.py --size small --device cpu            # a couple of minutes on 2 CPU cores
    python scripts/bench_eval.py --size 1b --device cuda --lengths mixed   # ~1.2B Llama, bf16, SDPA

Sizes are Llama shapes with random weights (``--vocab`` overrides the vocabulary: token ids come from
the embedded tokenizer and stay below 1024, so any vocabulary ≥ 1024 works). ``--lengths mixed`` joins
several held-out corpus texts per sample to spread lengths up to ``--max-len`` (FineWeb-like), while
``corpus`` uses one text per sample (≤ 1200 characters). ``--variants`` adds CPU experiments: thread
counts, masked vs unmasked batches, batch budgets, and ``torch.compile``. ``--vs-padded`` times the
engine with padding-free packing (``EngineSettings(packing=True)``) against the padded engine instead of
the naive loop, interleaved the same way:

    python scripts/bench_eval.py --size small --lengths mixed --max-len 1024 --vs-padded --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn29_growth.corpus import load_corpus  # noqa: E402
from sn29_growth.eval.loss import EngineSettings, PeakMemory, summed_losses  # noqa: E402
from sn29_growth.lm import corpus_loss  # noqa: E402
from sn29_growth.tiny import tiny_config  # noqa: E402
from sn29_growth.tokenizer import embedded_tokenizer  # noqa: E402

SIZES = {
    # name: hidden, intermediate, layers, heads, kv heads, vocab
    "tiny": (64, 160, 2, 8, 2, 1024),
    "small": (256, 688, 4, 8, 4, 8192),
    "medium": (512, 1376, 8, 8, 4, 32000),
    "1b": (2048, 8192, 16, 32, 8, 128256),
}


def build_model(size: str, vocab: int | None, device: str, dtype: torch.dtype, attn: str):
    from transformers import AutoModelForCausalLM

    hidden, inter, layers, heads, kv, default_vocab = SIZES[size]
    config = tiny_config(
        "llama-gqa",
        vocab_size=vocab or default_vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        max_position_embeddings=8192,
        tie_word_embeddings=size == "1b",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model.eval()


def make_sequences(n: int, lengths: str, max_len: int, seed: int) -> list[tuple[int, ...]]:
    tok = embedded_tokenizer()
    texts = [s.text for s in load_corpus().held_out]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = 1 if lengths == "corpus" else rng.choice([1, 1, 2, 3, 5, 8, 13])
        text = "\n\n".join(rng.choice(texts) for _ in range(k))
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        out.append(tuple(ids[:max_len]))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - w, time.process_time() - c, out


def naive_fn(model, seqs):
    tensors = [torch.tensor(s) for s in seqs]
    return lambda: list(corpus_loss(model, tensors).summed_losses)


def engine_fn(model, seqs, settings):
    return lambda: summed_losses(model, seqs, settings)


def max_rel(a, b) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True) if math.isfinite(y) and y)


def naive_peak(model, seqs, device) -> tuple[int | None, int | None]:
    """(peak, peak minus baseline) of the naive loop on the longest sequence, as the engine reports its buckets."""
    peak = PeakMemory(torch.device(device))
    peak.reset()
    corpus_loss(model, [torch.tensor(max(seqs, key=len))])
    top = peak.read()
    return top, (top - peak.baseline if top is not None and peak.baseline is not None else None)


def compare(naive, engine, device: str, repeats: int) -> dict:
    """Interleave naive and engine runs; the best (least disturbed) run of each is the measurement."""
    naive()  # warm-up: kernels, allocator, oneDNN primitives
    engine()
    rows = {"naive_wall": [], "naive_cpu": [], "engine_wall": [], "engine_cpu": []}
    for _ in range(repeats):
        w, c, naive_losses = timed(naive, device)
        rows["naive_wall"].append(w)
        rows["naive_cpu"].append(c)
        w, c, result = timed(engine, device)
        rows["engine_wall"].append(w)
        rows["engine_cpu"].append(c)
    losses = result.losses if hasattr(result, "losses") else result
    naive_losses = naive_losses.losses if hasattr(naive_losses, "losses") else naive_losses
    return {
        **{k: min(v) for k, v in rows.items()},
        "speedup": min(rows["naive_wall"]) / min(rows["engine_wall"]),
        "speedup_median": statistics.median(rows["naive_wall"]) / statistics.median(rows["engine_wall"]),
        "speedup_cpu_time": min(rows["naive_cpu"]) / min(rows["engine_cpu"]),
        "max_rel_loss_diff": max_rel(losses, naive_losses),
        "result": result,
    }


def run(args) -> dict:
    device = args.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.size, args.vocab, device, dtype, "sdpa")
    n_params = sum(p.numel() for p in model.parameters())
    seqs = make_sequences(args.samples, args.lengths, args.max_len, args.seed)
    tokens = sum(len(s) for s in seqs)
    overrides = {"max_batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    settings = EngineSettings.for_device(device, **overrides)
    if args.vs_padded:  # baseline: the padded engine; measured: the same settings with packing
        baseline = engine_fn(model, seqs, settings)
        packed = EngineSettings.for_device(device, **overrides, packing=True, row_tokens=args.row_tokens)
        m = compare(baseline, engine_fn(model, seqs, packed), device, args.repeats)
        settings = packed
    else:
        m = compare(naive_fn(model, seqs), engine_fn(model, seqs, settings), device, args.repeats)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": args.machine or platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "size": args.size,
        "parameters": n_params,
        "vocab": model.config.vocab_size,
        "dtype": str(dtype).removeprefix("torch."),
        "samples": len(seqs),
        "tokens": tokens,
        "max_len": max(len(s) for s in seqs),
        "settings": settings.__dict__,
        "repeats": args.repeats,
        "baseline": "padded engine" if args.vs_padded else "naive batch-1 loop",
        "naive_tokens_per_s": tokens / m["naive_wall"],
        "engine_tokens_per_s": tokens / m["engine_wall"],
        "speedup": m["speedup"],
        "speedup_median": m["speedup_median"],
        "speedup_cpu_time": m["speedup_cpu_time"],
        "max_rel_loss_diff": m["max_rel_loss_diff"],
        "naive_peak_bytes": naive_peak(model, seqs, device),  # (peak, added)
        "buckets": [b.__dict__ for b in m["result"].buckets],
    }
    if args.variants:
        report["variants"] = variants(model, seqs, device, args)
    return report


def variants(model, seqs, device, args) -> list[dict]:
    """Engine variants, each timed against naive runs interleaved with it (same conditions)."""
    tokens = sum(len(s) for s in seqs)
    rows = []

    def measure(name, threads=None, **overrides):
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            settings = EngineSettings.for_device(device, **overrides)
            m = compare(naive_fn(model, seqs), engine_fn(model, seqs, settings), device, args.repeats)
            rows.append(
                {
                    "variant": name,
                    "threads": torch.get_num_threads(),
                    "naive_tokens_per_s": tokens / m["naive_wall"],
                    "engine_tokens_per_s": tokens / m["engine_wall"],
                    "speedup": m["speedup"],
                    "speedup_cpu_time": m["speedup_cpu_time"],
                    "max_rel_loss_diff": m["max_rel_loss_diff"],
                }
            )
            r = rows[-1]
            print(
                f"  {name:<34} {r['threads']} thr  naive {r['naive_tokens_per_s']:7.0f}  engine "
                f"{r['engine_tokens_per_s']:7.0f} tok/s  {r['speedup']:.2f}x (cpu-time {r['speedup_cpu_time']:.2f}x)",
                flush=True,
            )
        finally:
            torch.set_num_threads(old)

    for threads in (1, 2):
        measure("defaults", threads)
    measure("max_batch_tokens=512", max_batch_tokens=512)
    measure("max_batch_tokens=4096, max_padding=0.25", max_batch_tokens=4096, max_padding=0.25)
    measure("max_batch_tokens=8192, max_padding=1", max_batch_tokens=8192, max_padding=1.0)
    measure("attention mask on", mask_padding=True)
    measure("logits chunks of 4 MiB", logits_bytes=4 << 20)
    if args.compile:
        t0 = time.perf_counter()
        summed_losses(model, seqs, EngineSettings.for_device(device, compile=True))
        print(f"  torch.compile: first pass (compiling) {time.perf_counter() - t0:.1f} s", flush=True)
        measure("torch.compile(body, dynamic=True)", compile=True)
    return rows


def format_report(r: dict) -> str:
    lines = [
        f"{r['date']} · {r['device']} · torch {r['torch']} · {r['threads']} threads · load {r['load_average']:.1f}",
        f"model {r['size']}: {r['parameters'] / 1e6:.1f}M parameters, vocab {r['vocab']}, {r['dtype']}",
        f"{r['samples']} samples, {r['tokens']} tokens (longest {r['max_len']})",
        f"{r['baseline']:<19}: {r['naive_tokens_per_s']:>10.0f} tokens/s (best of {r['repeats']})",
        f"engine             : {r['engine_tokens_per_s']:>10.0f} tokens/s   ({r['speedup']:.2f}x; median "
        f"{r['speedup_median']:.2f}x; process CPU time {r['speedup_cpu_time']:.2f}x)",
        f"max relative loss difference: {r['max_rel_loss_diff']:.2e}",
        "bucket  seqs  tokens  padded  seconds  peak MiB  added MiB",
    ]

    def mib(v):
        return "-" if v is None else f"{v / 2**20:.0f}"

    for b in r["buckets"]:
        lines.append(
            f"{b['max_len']:>6}  {b['sequences']:>4}  {b['tokens']:>6}  {b['padded_tokens']:>6}  "
            f"{b['seconds']:>7.3f}  {mib(b['peak_bytes']):>8}  {mib(b['added_bytes']):>9}"
        )
    top, added = r["naive_peak_bytes"]
    lines.append(f"naive loop on the longest sample alone: peak {mib(top)} MiB, added {mib(added)} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--vocab", type=int, help="override the vocabulary size (>= 1024)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--lengths", choices=("corpus", "mixed"), default="corpus")
    p.add_argument("--max-len", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--batch-tokens", type=int, help="engine max_batch_tokens (default: per device)")
    p.add_argument("--variants", action="store_true", help="also time CPU variants (threads, batches, masks)")
    p.add_argument("--compile", action="store_true", help="with --variants: also try torch.compile")
    p.add_argument("--vs-padded", action="store_true", help="time packing against the padded engine")
    p.add_argument("--row-tokens", type=int, default=1024, help="with --vs-padded: tokens per packed row")
    p.add_argument("--machine", help="machine description for the report")
    p.add_argument("--out", help="write the JSON report here")
    args = p.parse_args(argv)
    if args.vocab is not None and args.vocab < 1024:
        p.error("--vocab must be >= 1024 (the embedded tokenizer's ids)")
    report = run(args)
    print(format_report(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
