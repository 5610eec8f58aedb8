"""The evaluation section of ``scripts/bench_gpu.py``: the loss engine's levers at GPU scale, side by side.

Models: a Llama 3 8B and a Llama 3.2 1B shape (the configs below are those of the published models, as in
the project's ``configs/`` reference files), random bf16 weights built directly on the GPU; with ``tiny``,
a tiny Llama in fp32 on the given device.

Samples (random token ids; lengths are what matter to speed):

- ``mix`` — SN29-like. SN29 scores web-text documents (FineWeb-style pages) cut at the 4096-token sequence
  length. Web-page token counts are roughly log-normal with a median of a few hundred tokens and a long
  tail, and everything past the cap piles up at exactly 4096. The mix is 50 % short samples (64–511
  tokens, log-uniform), 35 % medium (512–4095, log-uniform) and 15 % capped at 4096 — about 8 % of the
  tokens in short samples, 45 % in medium and 47 % in capped ones. The proportions are a stated
  assumption (FineWeb's published length profile, rounded), not measured from validator logs.
- ``short`` — only short samples (64–511): where batch-1 loops are latency-bound.
- ``capped`` — only 4096-token samples: where one sample already fills the GPU.

Methods, each timed on the same samples after a warm-up on a slice of them:

- ``batch-1 loop`` — the baseline: ``sn29_growth.lm.corpus_loss`` (one sample per forward pass, full
  logits), timed on a prefix of the (shuffled) samples to keep the section short; its tokens/s stands for
  the whole set, and the losses of that prefix are the reference for every method;
- ``padded`` — the engine's CUDA defaults: power-of-two buckets, right padding, no mask (flash SDPA),
  64k-token batches;
- ``packed`` — padding-free packing (rows of 4096 tokens, document masks through SDPA);
- ``packed+flex`` — packing with ``flex_attention`` (block-sparse document masks; CUDA only);
- ``packed 256k`` / ``padded 256k`` — four times the token budget per batch;
- ``packed+compile`` — ``torch.compile`` of the model body (1B shape only: its compile time fits the
  budget, the 8B one may not).

Reported per method: tokens/s, MFU (``sn29_growth.eval.flops``: matrix products + causal attention over
989 TFLOP/s dense bf16), the ratio to the batch-1 loop, and the largest relative difference of per-sample
summed losses to the batch-1 loop (bf16 bound 1e-3, fp32 1e-4). Levers not tried are listed under
``not_tried`` with the reason.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn29_growth.eval.flops import H100_H200_BF16_DENSE, forward_flops  # noqa: E402
from sn29_growth.eval.loss import EngineSettings, summed_losses  # noqa: E402
from sn29_growth.lm import corpus_loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import published_shape  # noqa: E402

SHAPES = {name: published_shape(name) for name in ("llama-3-8b", "llama-3.2-1b")}
CAP = 4096
MIX = (("short", 0.50), ("medium", 0.35), ("capped", 0.15))
BF16_REL, FP32_REL = 1e-3, 1e-4
# tokens per sample set, and the batch-1 loop's share of them
TOKENS = {"llama-3-8b": 96_000, "llama-3.2-1b": 192_000}
BATCH1_TOKENS = {"llama-3-8b": 24_000, "llama-3.2-1b": 48_000}
NOT_TRIED = {
    "cuda graphs for short buckets": "not tried: shapes vary per batch (dynamic lengths); packing already "
    "turns short samples into full rows, which removes the launch overhead graphs would hide",
    "liger fused linear + cross-entropy": "not tried: the engine's chunked lm_head + cross-entropy over real "
    "positions already bounds logits memory; Liger is not a dependency",
}


def sample_lengths(kind: str, total_tokens: int, cap: int, seed: int) -> list[int]:
    """Sample lengths of one set (shuffled) until ``total_tokens`` is reached; see the module docstring."""
    rng = random.Random(seed)
    lo_short, lo_medium = max(2, cap // 64), max(3, cap // 8)

    def draw(band: str) -> int:
        if band == "capped":
            return cap
        lo, hi = (lo_short, lo_medium) if band == "short" else (lo_medium, cap)
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    bands, weights = zip(*MIX, strict=True)
    out: list[int] = []
    while sum(out) < total_tokens:
        band = rng.choices(bands, weights)[0] if kind == "mix" else kind
        out.append(draw(band))
    return out


def build_model(shape: str, device: str, tiny: bool):
    from transformers import AutoModelForCausalLM

    import transformers_llama
    from sn29_growth.tiny import tiny_config

    if tiny:
        config = tiny_config("llama-gqa", vocab_size=2048, max_position_embeddings=1024)
        dtype = torch.float32
    else:
        config = transformers_llama.LlamaConfig(bos_token_id=None, eos_token_id=0, **SHAPES[shape])
        dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def max_rel(got, want) -> float:
    diffs = [abs(g - w) / abs(w) for g, w in zip(got, want, strict=False) if math.isfinite(w) and w]
    return max(diffs) if diffs else float("nan")


def methods(device: str, tiny: bool, shape: str) -> list[tuple[str, EngineSettings]]:
    cuda = device.startswith("cuda")
    base = EngineSettings.for_device(device)
    budget = base.max_batch_tokens
    row = 256 if tiny else CAP
    out = [
        ("padded", EngineSettings.for_device(device, packing=False)),
        ("packed", EngineSettings.for_device(device, packing=True, row_tokens=row)),
    ]
    if cuda:
        out.append(
            (
                "packed+flex",
                EngineSettings.for_device(device, packing=True, row_tokens=row, attention="flex_attention"),
            )
        )
    out += [
        (
            f"packed {4 * budget // 1024}k",
            EngineSettings.for_device(device, packing=True, row_tokens=row, max_batch_tokens=4 * budget),
        ),
        (
            f"padded {4 * budget // 1024}k",
            EngineSettings.for_device(device, packing=False, max_batch_tokens=4 * budget),
        ),
    ]
    if cuda and shape != "llama-3-8b":
        out.append(
            ("packed+compile", EngineSettings.for_device(device, packing=True, row_tokens=row, compile=True))
        )
    return out


def measure_set(model, shape, kind, lengths, device, tiny, deadline) -> list[dict]:
    """All methods on one sample set; the batch-1 loop first (its losses are the reference)."""
    vocab = model.config.vocab_size
    rng = random.Random(len(lengths))
    seqs = [tuple(rng.randrange(vocab) for _ in range(n)) for n in lengths]
    rel_bound = FP32_REL if next(model.parameters()).dtype == torch.float32 else BF16_REL
    tokens = sum(lengths)
    flops = forward_flops(model.config, lengths)
    peak = H100_H200_BF16_DENSE if device.startswith("cuda") else None

    def record(method, seconds, measured_tokens, measured_flops, rel, extra=None):
        row = {
            "shape": shape,
            "set": kind,
            "method": method,
            "samples": len(seqs),
            "tokens": measured_tokens,
            "seconds": round(seconds, 4),
            "tokens_per_s": measured_tokens / seconds,
            "mfu": measured_flops / seconds / peak if peak else None,
            "max_rel_loss_diff": rel,
            "loss_bound": rel_bound,
            "losses_equal": bool(rel <= rel_bound) if math.isfinite(rel) else None,
        }
        row.update(extra or {})
        return row

    # batch-1 loop on a prefix of the shuffled set
    budget1 = BATCH1_TOKENS.get(shape, tokens // 4) if not tiny else tokens // 4
    count, acc = 0, 0
    while count < len(seqs) and acc < budget1:
        acc += lengths[count]
        count += 1
    prefix = [torch.tensor(s) for s in seqs[:count]]
    with torch.inference_mode():
        corpus_loss(model, prefix[:2])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        want = list(corpus_loss(model, prefix).summed_losses)
        sync(device)
        seconds = time.perf_counter() - t0
    rows = [
        record(
            "batch-1 loop",
            seconds,
            acc,
            forward_flops(model.config, lengths[:count]),
            0.0,
            {"samples": count},
        )
    ]
    for name, settings in methods(device, tiny, shape):
        left = deadline - time.perf_counter()
        # what the costliest lever so far took, warm-up (and any compiling) included
        last = max(
            (r["wall_s"] for r in rows[1:] if "wall_s" in r), default=rows[0]["seconds"] * tokens / acc / 2
        )
        if left < 1.5 * last + (60 if settings.compile else 0):
            rows.append(
                {"shape": shape, "set": kind, "method": name, "skipped": f"budget ({left:.0f} s left)"}
            )
            continue
        began = time.perf_counter()
        try:
            summed_losses(model, seqs[: max(4, len(seqs) // 10)], settings)  # warm-up (and compile)
            sync(device)
            t0 = time.perf_counter()
            result = summed_losses(model, seqs, settings)
            sync(device)
            seconds = time.perf_counter() - t0
        except Exception as exc:  # one lever failing (e.g. a kernel missing) costs only its row
            rows.append({"shape": shape, "set": kind, "method": name, "error": repr(exc)[:500]})
            continue
        padded = sum(b.padded_tokens for b in result.buckets)
        rows.append(
            record(
                name,
                seconds,
                tokens,
                flops,
                max_rel(result.losses[:count], want),
                {
                    "padded_tokens": padded,
                    "wall_s": round(time.perf_counter() - began, 2),
                    "settings": settings.__dict__,
                },
            )
        )
    return rows


def run(*, tiny: bool, device: str, work_dir: Path, budget_s: float) -> dict:
    started = time.perf_counter()
    deadline = started + budget_s
    shapes = ["tiny"] if tiny else ["llama-3-8b", "llama-3.2-1b"]
    sets = ("mix", "short", "capped")
    measurements: list[dict] = []
    for k, shape in enumerate(shapes):
        model = build_model(shape, device, tiny)
        cap = 256 if tiny else CAP
        shape_deadline = started + budget_s * (k + 1) / len(shapes)
        for j, kind in enumerate(sets):
            total = 2_000 if tiny else TOKENS[shape] // (1 if kind == "mix" else 2)
            lengths = sample_lengths(kind, total, cap, seed=j)
            set_deadline = time.perf_counter() + (shape_deadline - time.perf_counter()) / (len(sets) - j)
            measurements += measure_set(
                model, shape, kind, lengths, device, tiny, min(set_deadline, deadline)
            )
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {
        "rows": rows_of(measurements),
        "measurements": measurements,
        "mix": {"bands": dict(MIX), "cap": CAP, "short": [64, 511], "medium": [512, 4095]},
        "not_tried": NOT_TRIED,
        "targets": {"llama-3-8b mix MFU": 0.50, "llama-3.2-1b mix MFU": 0.40},
    }


def rows_of(measurements: list[dict]) -> list[dict]:
    """One row per measured method: its tokens/s beside the batch-1 loop's on the same set."""
    base = {(m["shape"], m["set"]): m for m in measurements if m["method"] == "batch-1 loop"}
    rows = []
    for m in measurements:
        if "tokens_per_s" not in m or m["method"] == "batch-1 loop":
            continue
        b = base[(m["shape"], m["set"])]
        mfu = f"MFU {m['mfu']:.1%}, " if m["mfu"] is not None else ""
        rows.append(
            {
                "name": f"{m['shape']} {m['set']} {m['method']}",
                "baseline": f"{m['shape']} {m['set']} batch-1 loop",
                "baseline_value": round(b["tokens_per_s"], 1),
                "value": round(m["tokens_per_s"], 1),
                "ratio": round(m["tokens_per_s"] / b["tokens_per_s"], 3),
                "unit": "tokens/s",
                "note": f"{mfu}max rel loss diff {m['max_rel_loss_diff']:.1e} (bound {m['loss_bound']:.0e})",
            }
        )
    return rows
