"""How long one model's evaluation may take: a budget derived from the model's own work.

A fixed timeout (an hour) lets a hanging upload cost the validator an hour per step, against seconds
for an honest model of its size. The budget instead bounds what an honest evaluation of *this* model
can need, generously:

    budget = floor + factor × 2·P·T / F  +  B / R  +  S / Z

- P: the model's parameters (counted arithmetically from its config); T: the most tokens its samples can
  put through the model — per sample ``max_sequence_len`` when the competition sets one (a sample with
  more ids is +inf and never runs), else 4 per UTF-8 byte of the sample (byte fallback at its worst) —
  so 2·P·T is the forward passes' work in FLOP;
- F: the device's measured matmul throughput (FLOP/s, in the evaluation's dtype: bf16 on CUDA, fp32 on
  CPU), measured once per process (:func:`device_flops`);
- B: the bytes of its weights, read at R (100 MB/s: a slow disk);
- S: the UTF-8 bytes of the samples, tokenized at Z (100 kB/s: twenty times below the 2 MB/s measured
  through the network's tokenizer stack on a busy 2-core box, so a tokenizer that inflates its tokens
  twentyfold still fits);
- ``factor`` (4, over a T that already assumes every sample at the length limit) covers a forward pass
  far below the matmul peak; ``floor`` (120 s) covers process start, imports and tokenizer load.

A tokenizer that inflates tokens beyond that is killed at the budget (its row: failed, revisited later),
so its cost per model is bounded by the budget. The fixed ``--eval-timeout`` overrides it all.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from dataclasses import dataclass

from sn29_growth.fields import positive

READ_BYTES_PER_S = 100e6
TOKENIZE_BYTES_PER_S = 1e5
TOKENS_PER_BYTE = 4


@dataclass(frozen=True)
class BudgetSettings:
    """The margin of :func:`model_budget` (see the module docstring)."""

    factor: float = 4.0
    floor_s: float = 120.0
    read_bytes_per_s: float = READ_BYTES_PER_S
    tokenize_bytes_per_s: float = TOKENIZE_BYTES_PER_S

    def __post_init__(self) -> None:
        for name in ("factor", "floor_s", "read_bytes_per_s", "tokenize_bytes_per_s"):
            positive(name, getattr(self, name))


@dataclass(frozen=True)
class TimeBudget:
    seconds: float
    explanation: str


def token_bound(sample_bytes: list[int], max_sequence_len: int | None) -> int:
    """The most tokens the samples can put through a model (see the module docstring)."""
    if max_sequence_len:
        return len(sample_bytes) * max_sequence_len
    return sum(TOKENS_PER_BYTE * b + 2 for b in sample_bytes)


def model_budget(
    settings: BudgetSettings,
    *,
    flops_per_s: float,
    parameters: int,
    weight_bytes: int,
    sample_bytes: list[int],
    max_sequence_len: int | None,
) -> TimeBudget:
    """The seconds one model's evaluation may take, and how they were computed (one line)."""
    tokens = token_bound(sample_bytes, max_sequence_len)
    forward = 2.0 * parameters * tokens / flops_per_s
    read = weight_bytes / settings.read_bytes_per_s
    tokenize = sum(sample_bytes) / settings.tokenize_bytes_per_s
    seconds = settings.floor_s + settings.factor * forward + read + tokenize
    explanation = (
        f"{seconds:.0f} s = {settings.floor_s:g} s + {settings.factor:g} × {forward:.1f} s forward "
        f"[2 × {parameters:.3g} params × {tokens:.3g} tokens at {flops_per_s:.3g} FLOP/s] + {read:.1f} s "
        f"reading {weight_bytes / 1e9:.2f} GB + {tokenize:.1f} s tokenizing {sum(sample_bytes) / 1e6:.2f} MB"
    )
    return TimeBudget(seconds, explanation)


def measure_flops(device: str = "cpu", seconds: float = 0.1) -> float:
    """Matmul throughput of ``device`` in the evaluation's dtype (bf16 on CUDA, fp32 on CPU), FLOP/s."""
    import torch

    cuda = device.startswith("cuda")
    n = 4096 if cuda else 256
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    if cuda:
        torch.cuda.synchronize(device)
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * n**3 * runs / elapsed


@functools.cache
def device_flops(device: str) -> float:
    """:func:`measure_flops`, once per process; a CUDA device is measured in a child process, so that
    the validator's own process never holds a CUDA context."""
    if not device.startswith("cuda"):
        return measure_flops(device)
    done = subprocess.run(
        [sys.executable, "-m", "sn29_growth.eval.budget", device],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "no output").strip().splitlines()
        raise RuntimeError(f"measuring {device}: {lines[-1][:300]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["flops_per_s"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    device = argv[0] if argv else "cpu"
    print(json.dumps({"device": device, "flops_per_s": measure_flops(device)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
