"""Check a growth: same loss and logits on the embedded corpus, and no new parameter stuck at zero.

:func:`verify_growth` compares source and result (fp32 and the checkpoint dtype): mean token loss and
max |Δlogit| over the old vocabulary. By default it streams (:mod:`sn29_growth.growth.streaming_verify`):
one decoder block of each model at a time and the output head in vocabulary chunks, so memory is a few
blocks whatever the model size; :func:`verify_in_memory` loads both models whole through the one model
loader (the reference the streaming path is tested against). Vocabulary growth cannot be exact: the new
tokens' logits enter the softmax, and with mean-initialised rows the loss rises by at most
``log(1 + k/V)`` (Jensen), which is the allowed band.

:func:`probe_trainability` runs two AdamW steps (weight decay 0) and lists every new row/column/element
line whose gradient stayed exactly zero and that did not move: a "stuck" slice. With two or more zero
factors on a path (``init: zeros``) the lines are stuck forever. A growth with no new slice to check
says "n/a". :func:`~sn29_growth.growth.streaming_verify.probe_checkpoint` runs it on a
bounded set of blocks of a checkpoint and refuses cleanly when even that does not fit in memory.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sn29_growth.checkpoint import has_tokenizer, load_tokenizer
from sn29_growth.growth.engine import NewMask

log = logging.getLogger(__name__)

FP32_LOSS_TOL = 1e-5  # fp32 evaluation of weights the growth stored exactly
FP32_LOGIT_TOL = 1e-3
ROUNDED_LOSS_TOL = 5e-3  # fp32 evaluation of low-precision weights that the growth had to round
LOW_PRECISION_LOSS_TOL = 2e-2  # bf16/fp16 evaluation (different matmul shapes round differently)


@dataclass(frozen=True)
class DtypeCheck:
    dtype: str
    loss_source: float
    loss_grown: float
    max_abs_logit_diff: float
    loss_tolerance: float
    logit_tolerance: float | None
    vocab_bound: float
    ok: bool

    @property
    def loss_delta(self) -> float:
        return self.loss_grown - self.loss_source


@dataclass(frozen=True)
class Verification:
    checks: tuple[DtypeCheck, ...]
    samples: int
    tokens: int
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "samples": self.samples,
            "tokens": self.tokens,
            "checks": [dict(asdict(c), loss_delta=c.loss_delta) for c in self.checks],
        }


def vocab_bound(old_vocab: int, new_vocab: int) -> float:
    """The largest loss increase mean-initialised new vocabulary rows can cause: ``log(1 + k/V)``."""
    return math.log1p((new_vocab - old_vocab) / old_vocab) if new_vocab > old_vocab else 0.0


def tokenizer_for(path: str | os.PathLike):
    """The checkpoint's own tokenizer, or the embedded one when the directory has none."""
    if has_tokenizer(path):
        return load_tokenizer(path)
    from sn29_growth.tokenizer import embedded_tokenizer

    return embedded_tokenizer()


def corpus_sequences(
    tokenizer, split: str = "held_out", samples: int = 8, max_len: int = 256
) -> list[torch.Tensor]:
    from sn29_growth.corpus import load_corpus
    from sn29_growth.lm import encode

    texts = [s.text for s in load_corpus().split(split)[:samples]]
    return encode(tokenizer, texts, max_len=max_len)


@torch.no_grad()
def _loss_and_logits(model, sequences: Sequence[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    total, n, logits = 0.0, 0, []
    for ids in sequences:
        out = model(input_ids=ids[None]).logits[0].float()
        total += F.cross_entropy(out[:-1], ids[1:], reduction="sum").item()
        n += ids.numel() - 1
        logits.append(out)
    return total / max(n, 1), logits


def compare_models(
    source,
    grown,
    sequences: Sequence[torch.Tensor],
    *,
    dtype: str,
    old_vocab: int,
    new_vocab: int,
    exact_storage: bool = True,
) -> DtypeCheck:
    """Loss of both models and max |Δlogit| over the old vocabulary, with this dtype's tolerances.

    ``exact_storage``: the grown weights hold the growth exactly (False when a low-precision checkpoint
    stores rescaled gains or clone noise, which round): then fp32 gets a rounding tolerance.
    """
    ls, la = _loss_and_logits(source, sequences)
    lg, lb = _loss_and_logits(grown, sequences)
    diff = max(
        ((a[:, :old_vocab] - b[:, :old_vocab]).abs().max().item() for a, b in zip(la, lb, strict=True)),
        default=0.0,
    )
    return dtype_check(
        dtype, ls, lg, diff, old_vocab=old_vocab, new_vocab=new_vocab, exact_storage=exact_storage
    )


def dtype_check(
    dtype: str,
    loss_source: float,
    loss_grown: float,
    max_abs_logit_diff: float,
    *,
    old_vocab: int,
    new_vocab: int,
    exact_storage: bool = True,
) -> DtypeCheck:
    """The verdict on measured losses and logit difference, with this dtype's tolerances."""
    bound = vocab_bound(old_vocab, new_vocab)
    if dtype != "float32":
        tol, logit_tol = LOW_PRECISION_LOSS_TOL, None
    elif exact_storage:
        tol, logit_tol = FP32_LOSS_TOL, FP32_LOGIT_TOL
    else:
        tol, logit_tol = ROUNDED_LOSS_TOL, None
    delta = loss_grown - loss_source
    ok = -tol <= delta <= bound + tol and (logit_tol is None or max_abs_logit_diff <= logit_tol)
    return DtypeCheck(dtype, loss_source, loss_grown, max_abs_logit_diff, tol, logit_tol, bound, bool(ok))


def log_check(check: DtypeCheck) -> None:
    log.info(
        "verify %s: loss %.6f -> %.6f (Δ %+.2e), max |Δlogit| %.2e: %s",
        check.dtype,
        check.loss_source,
        check.loss_grown,
        check.loss_delta,
        check.max_abs_logit_diff,
        "ok" if check.ok else "MISMATCH",
    )


def verify_growth(
    source_dir: str | os.PathLike,
    grown_dir: str | os.PathLike,
    *,
    dtypes: Sequence[str] = ("float32",),
    samples: int = 8,
    max_len: int = 256,
    exact_storage: bool = True,
    layers: Sequence[int | None] | None = None,
    streaming: bool = True,
    device: str | torch.device | None = None,
) -> Verification:
    """Compare both checkpoints in each dtype on the embedded corpus's held-out part.

    Streams block by block (:func:`~sn29_growth.growth.streaming_verify.verify_streaming`; ``layers``:
    the source block of every output block, None for an inserted one, ``device``: default CUDA when
    available) unless ``streaming=False`` or the model type has no streaming path, then loads both models
    whole on the CPU (:func:`verify_in_memory`). Both give the same :class:`Verification`.
    """
    from sn29_growth.growth.streaming_verify import supports_streaming, verify_streaming

    if streaming and supports_streaming(source_dir) and supports_streaming(grown_dir):
        return verify_streaming(
            source_dir,
            grown_dir,
            dtypes=dtypes,
            samples=samples,
            max_len=max_len,
            exact_storage=exact_storage,
            layers=layers,
            device=device,
        )
    return verify_in_memory(
        source_dir, grown_dir, dtypes=dtypes, samples=samples, max_len=max_len, exact_storage=exact_storage
    )


def verify_in_memory(
    source_dir: str | os.PathLike,
    grown_dir: str | os.PathLike,
    *,
    dtypes: Sequence[str] = ("float32",),
    samples: int = 8,
    max_len: int = 256,
    exact_storage: bool = True,
) -> Verification:
    """Load both checkpoints whole in each dtype and compare them (memory: both models, every dtype)."""
    from sn29_growth.checkpoint import read_model_config
    from sn29_growth.loading import load_model

    old_vocab = int(read_model_config(source_dir)["vocab_size"])
    new_vocab = int(read_model_config(grown_dir)["vocab_size"])
    seqs = corpus_sequences(tokenizer_for(source_dir), samples=samples, max_len=max_len)
    checks = []
    for dtype in dict.fromkeys(dtypes):
        torch_dtype = getattr(torch, dtype)
        src = load_model(source_dir, dtype=torch_dtype)
        grown = load_model(grown_dir, dtype=torch_dtype)
        check = compare_models(
            src,
            grown,
            seqs,
            dtype=dtype,
            old_vocab=old_vocab,
            new_vocab=new_vocab,
            exact_storage=exact_storage,
        )
        del src, grown
        log_check(check)
        checks.append(check)
    tokens = sum(s.numel() - 1 for s in seqs)
    return Verification(tuple(checks), len(seqs), tokens, all(c.ok for c in checks))


# --- trainability ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StuckSlice:
    tensor: str
    axis: int
    count: int
    first: tuple[int, ...]

    def __str__(self) -> str:
        what = "element" if self.axis < 0 else f"axis-{self.axis} line"
        return f"{self.tensor}: {self.count} new {what}(s) stuck (e.g. {list(self.first)})"


@dataclass(frozen=True)
class ProbeResult:
    steps: int
    lines_checked: int
    stuck: tuple[StuckSlice, ...] = field(default_factory=tuple)
    # the output blocks the probe trained (with embedding, head and final norm); None: every block
    layers: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool:
        return not self.stuck

    @property
    def applicable(self) -> bool:
        """False when the growth made no new slice the probe can check (its summary says "n/a")."""
        return bool(self.lines_checked or self.stuck)

    @property
    def summary(self) -> str:
        if not self.applicable:
            return "n/a (no new parameter slices to check)"
        where = "" if self.layers is None else f" (blocks {list(self.layers)} with embedding and head)"
        return (
            f"{self.lines_checked} new weight rows/columns checked for movement after {self.steps} training "
            f"steps{where}, {len(self.stuck)} stuck group(s)"
        )

    def renamed(self, names: dict[int, int], layers: tuple[int, ...] | None) -> ProbeResult:
        """This result with block indices mapped by ``names`` (probe model → output model)."""
        stuck = []
        for s in self.stuck:
            tensor = s.tensor
            if tensor.startswith("model.layers."):
                index, rest = tensor.removeprefix("model.layers.").split(".", 1)
                tensor = f"model.layers.{names[int(index)]}.{rest}"
            stuck.append(StuckSlice(tensor, s.axis, s.count, s.first))
        return ProbeResult(self.steps, int(self.lines_checked), tuple(stuck), layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "lines_checked": int(self.lines_checked),
            "stuck": [asdict(s) for s in self.stuck],
            "layers": None if self.layers is None else list(self.layers),
        }


def _line_flags(t: torch.Tensor, axis: int) -> torch.Tensor:
    """Per index along ``axis``: does the line hold any non-zero entry?"""
    if t.dim() == 1:
        return t.bool()
    dims = [d for d in range(t.dim()) if d != axis]
    return t.bool().any(dim=dims[0]) if len(dims) == 1 else t.bool().flatten(1).any(dim=1)


def _skip_axis(name: str, axis: int, tied: bool) -> bool:
    # An input-embedding row trains only when its token appears; new tokens never occur in the corpus.
    return name == "model.embed_tokens.weight" and axis == 0 and not tied


def probe_trainability(
    model: torch.nn.Module,
    masks: dict[str, NewMask],
    sequences: Sequence[torch.Tensor],
    *,
    steps: int = 2,
    lr: float = 1e-3,
    log_stuck: bool = True,
) -> ProbeResult:
    """Run ``steps`` AdamW steps (weight decay 0) on ``sequences``; report new lines that never trained."""
    params = dict(model.named_parameters())
    tied = "lm_head.weight" not in params
    watched = {n: m for n, m in masks.items() if n in params and m.any}
    start = {n: params[n].detach().clone() for n in watched}
    grad_seen = {n: torch.zeros_like(params[n], dtype=torch.bool) for n in watched}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        for ids in sequences:
            logits = model(input_ids=ids[None]).logits[0].float()
            F.cross_entropy(logits[:-1], ids[1:]).div(len(sequences)).backward()
        for n in watched:
            g = params[n].grad
            if g is not None:
                grad_seen[n] |= g != 0
        opt.step()
    model.eval()
    stuck, checked = [], 0
    for n, mask in watched.items():
        moved = params[n].detach() != start[n]
        live = grad_seen[n] & moved
        axes = (
            [(0, torch.ones(live.shape[0], dtype=torch.bool))] if mask.whole else list(enumerate(mask.axes))
        )
        for axis, new in axes:
            if _skip_axis(n, axis, tied) or not bool(new.any()):
                continue
            ok = _line_flags(live, axis)
            idx = (new & ~ok).nonzero().flatten()
            checked += int(new.sum())
            if idx.numel():
                stuck.append(
                    StuckSlice(n, -1 if live.dim() == 1 else axis, idx.numel(), tuple(idx[:4].tolist()))
                )
    result = ProbeResult(steps, checked, tuple(stuck))
    if log_stuck:
        for s in stuck:
            log.warning("stuck: %s", s)
    return result
