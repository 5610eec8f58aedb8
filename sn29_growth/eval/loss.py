"""The batched loss engine: per-sample SUMMED cross-entropy, equal to a batch-size-1 loop.

How it runs a list of token-id sequences through a causal LM:

- sequences are grouped into power-of-two length buckets and, longest first, into batches of at most
  ``max_batch_tokens`` padded tokens; padding is on the right, so every real position sees exactly the
  prefix it would see alone (an attention mask is passed when ``mask_padding``; without it causal
  attention alone keeps pads out of every real position, which lets SDPA use its fastest kernels);
- the model body runs once per batch to hidden states; ``lm_head`` and cross-entropy are then applied to
  the real positions only, in chunks of at most ``logits_bytes`` of fp32 logits, so no full
  (batch × length × vocabulary) fp32 logits tensor ever exists;
- models whose rotary frequencies depend on the padded length (``dynamic``/``longrope`` scaling) run
  sequences longer than ``original_max_position_embeddings`` one at a time, unpadded;
- with ``packing`` on, sequences are instead packed several per row without padding, positions restarting
  at 0 for each, attention kept inside each sequence (:mod:`sn29_growth.eval.packing`); the head and
  cross-entropy run the same chunked way;
- on a CUDA out-of-memory error a batch is split in two and retried.

Samples without ids (the tokenization rule said +inf) and NaN losses come back as +inf. Placement is the
model's: a model dispatched by accelerate (``device_map="auto"``) runs through its hooks unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sn29_growth.eval.packing import batch_rows, build_batch, pack_rows

log = logging.getLogger(__name__)

ENGINE_VERSION = "2"
"""Part of every cached loss's key: changes whenever the same model and samples would score differently."""
LENGTH_SENSITIVE_ROPE = ("dynamic", "longrope")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


@dataclass(frozen=True)
class EngineSettings:
    """Batching knobs of the engine (they change speed and memory, not the losses).

    A batch holds at most ``max_batch_size`` sequences and ``max_batch_tokens`` padded tokens, and
    stops growing once its padding would exceed ``max_padding`` times its real tokens. ``compile`` runs
    the model body through ``torch.compile`` (dynamic shapes; the first batches pay the compile time).

    ``packing`` packs sequences into rows of at most ``row_tokens`` tokens (several per row, each attending
    only to itself) instead of padding each to its bucket (``mask_padding`` then does not apply: a row's
    padded tail is a document of its own); ``attention`` names the attention implementation
    the model runs with during the call (e.g. ``"flex_attention"``, whose document masks skip the blocks
    between packed samples; ``None`` keeps the model's own).
    """

    max_batch_tokens: int = 8192
    max_batch_size: int = 64
    max_padding: float = 0.25
    logits_bytes: int = 256 << 20
    mask_padding: bool = True
    min_bucket: int = 16
    compile: bool = False
    packing: bool = False
    row_tokens: int = 4096
    attention: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_size", "logits_bytes", "min_bucket", "row_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not (isinstance(self.max_padding, int | float) and self.max_padding >= 0):
            raise ValueError(f"max_padding: must be a number >= 0, got {self.max_padding!r}")
        for name in ("compile", "packing", "mask_padding"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be a bool, got {getattr(self, name)!r}")
        if self.attention is not None and self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attention: must be None or one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, got {self.attention!r}"
            )

    @classmethod
    def for_device(cls, device: str | torch.device, **overrides) -> EngineSettings:
        """Defaults per device.

        CUDA: large batches without an attention mask (SDPA's flash kernel), padding allowed up to the
        power-of-two bucket. CPU: matrix products are already efficient for one sequence, and larger
        batches only add padding and cache misses, so batches stay small (≈1k tokens) and nearly unpadded;
        short sequences are still batched, which removes the per-call overhead.

        Packing is off on both: on a CPU it measured slower than these nearly unpadded batches (a packed row
        pays attention over the whole row); on CUDA ``scripts/bench_gpu.py`` measures it beside them.
        """
        if torch.device(device).type == "cuda":
            base = dict(
                max_batch_tokens=65536,
                max_batch_size=256,
                max_padding=1.0,
                logits_bytes=1 << 30,
                mask_padding=False,
            )
        else:
            base = dict(
                max_batch_tokens=1024,
                max_batch_size=64,
                max_padding=0.1,
                logits_bytes=64 << 20,
                mask_padding=False,
            )
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class BucketStat:
    """What one length bucket cost: sequences, real and padded tokens, seconds and peak memory (bytes)."""

    max_len: int
    sequences: int
    tokens: int
    padded_tokens: int
    seconds: float
    peak_bytes: int | None
    added_bytes: int | None = None  # peak minus what was in use when the bucket started


@dataclass(frozen=True)
class LossResult:
    losses: tuple[float, ...]
    buckets: tuple[BucketStat, ...]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(b.tokens for b in self.buckets)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


# ------------------------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory between ``reset()`` and ``read()``: the CUDA allocator's peak, or the process's peak RSS
    (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``). ``baseline`` is what was in use at
    ``reset()`` (weights, runtime), so ``read() - baseline`` is what the work in between added."""

    _CLEAR = Path("/proc/self/clear_refs")
    _STATUS = Path("/proc/self/status")

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        self.baseline: int | None = None

    def _status(self, key: str) -> int | None:
        try:
            for line in self._STATUS.read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = int(torch.cuda.memory_allocated())
            return
        with contextlib.suppress(OSError):
            self._CLEAR.write_text("5")
        self.baseline = self._status("VmRSS:")

    def read(self) -> int | None:
        if self.cuda:
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        return self._status("VmHWM:")


# ------------------------------------------------------------------------------------------- engine


def _input_device(model) -> torch.device:
    """Where input ids go: the embedding's device, or its accelerate hook's execution device (offloaded)."""
    embedding = model.get_input_embeddings()
    execution = getattr(getattr(embedding, "_hf_hook", None), "execution_device", None)
    if execution is not None:
        return torch.device("cuda", execution) if isinstance(execution, int) else torch.device(execution)
    return embedding.weight.device


def length_sensitive_threshold(config) -> int | None:
    """Above this length the model's RoPE frequencies depend on the padded length (None: never)."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type")) if isinstance(params, dict) else None
    if rope_type not in LENGTH_SENSITIVE_ROPE:
        return None
    original = params.get("original_max_position_embeddings") or getattr(
        config, "original_max_position_embeddings", None
    )
    return int(original) if original else 0


def bucket_of(length: int, min_bucket: int = 16) -> int:
    return max(min_bucket, 1 << max(0, math.ceil(math.log2(max(length, 1)))))


def plan_batches(
    lengths: Sequence[int], settings: EngineSettings, solo_above: int | None = None
) -> list[tuple[int, list[list[int]]]]:
    """``[(bucket, [batch of indices, ...]), ...]`` with buckets longest first.

    Indices of sequences longer than ``solo_above`` get batches of their own.
    """
    buckets: dict[tuple[int, bool], list[int]] = {}
    for i, n in enumerate(lengths):
        solo = solo_above is not None and n > solo_above
        buckets.setdefault((bucket_of(n, settings.min_bucket), solo), []).append(i)
    plan = []
    for (bucket, solo), idx in sorted(buckets.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        idx.sort(key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        pos = 0
        while pos < len(idx):
            longest = lengths[idx[pos]]
            limit = 1 if solo else max(1, min(settings.max_batch_size, settings.max_batch_tokens // longest))
            batch, real = [idx[pos]], longest
            while len(batch) < limit and pos + len(batch) < len(idx):
                nxt = lengths[idx[pos + len(batch)]]
                if (len(batch) + 1) * longest > (1 + settings.max_padding) * (real + nxt):
                    break
                batch.append(idx[pos + len(batch)])
                real += nxt
            batches.append(batch)
            pos += len(batch)
        plan.append((bucket, batches))
    return plan


def _body(model, settings: EngineSettings):
    """The model body (embeddings + decoder layers + final norm), compiled once per model if asked."""
    body = model.get_decoder()
    if not settings.compile:
        return body
    compiled = getattr(model, "_sn29_compiled_body", None)
    if compiled is None:
        compiled = torch.compile(body, dynamic=True)
        object.__setattr__(model, "_sn29_compiled_body", compiled)
    return compiled


def _head_sums(model, hidden, predicts, targets, owner, count: int, settings: EngineSettings) -> list[float]:
    """Summed CE per sample: ``lm_head`` + cross-entropy on the positions marked by ``predicts`` only, in
    chunks of at most ``settings.logits_bytes`` fp32 logits; ``owner`` says which sample each position is."""
    targets = targets[predicts]
    rows = owner[predicts]
    flat = hidden[predicts.to(hidden.device)]
    del hidden
    head = model.get_output_embeddings()
    vocab = head.weight.shape[0]
    chunk = max(1, settings.logits_bytes // (4 * vocab))
    sums = torch.zeros(count, dtype=torch.float64)
    for start in range(0, flat.shape[0], chunk):
        logits = head(flat[start : start + chunk]).float()
        ce = F.cross_entropy(logits, targets[start : start + chunk].to(logits.device), reduction="none")
        sums.index_add_(0, rows[start : start + chunk], ce.double().cpu())
    return sums.tolist()


def _batch_losses(model, seqs: Sequence[Sequence[int]], settings: EngineSettings) -> list[float]:
    """Summed CE per sequence of one right-padded batch (every sequence has >= 2 ids)."""
    device = _input_device(model)
    lens = torch.tensor([len(s) for s in seqs])
    width = int(lens.max())
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    positions = torch.arange(width)
    real = positions[None, :] < lens[:, None]
    kwargs = {"use_cache": False}
    if settings.mask_padding and bool((~real).any()):
        kwargs["attention_mask"] = real.to(device=device, dtype=torch.long)
    hidden = _body(model, settings)(input_ids=ids.to(device), **kwargs).last_hidden_state

    predicts = positions[None, :] < (lens[:, None] - 1)  # position t predicts ids[t + 1]
    targets = torch.roll(ids, shifts=-1, dims=1)
    owner = torch.arange(len(seqs))[:, None].expand(-1, width)
    return _head_sums(model, hidden, predicts, targets, owner, len(seqs), settings)


def _packed_losses(model, rows: Sequence[Sequence[Sequence[int]]], settings: EngineSettings) -> list[float]:
    """Summed CE per sequence of one packed batch, in row order (every sequence has >= 2 ids)."""
    device = _input_device(model)
    batch = build_batch(rows)
    hidden = _body(model, settings)(
        input_ids=batch.ids.to(device), position_ids=batch.positions.to(device), use_cache=False
    ).last_hidden_state
    return _head_sums(model, hidden, batch.predicts, batch.targets, batch.owner, batch.samples, settings)


def _run_batch(model, seqs: list[Sequence[int]], settings: EngineSettings) -> list[float]:
    try:
        return _batch_losses(model, seqs, settings)
    except torch.OutOfMemoryError:
        if len(seqs) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(seqs) // 2
        log.warning("out of memory on a batch of %d; splitting it", len(seqs))
        return _run_batch(model, seqs[:half], settings) + _run_batch(model, seqs[half:], settings)


def _run_packed(model, rows: list[list[Sequence[int]]], settings: EngineSettings) -> list[float]:
    try:
        return _packed_losses(model, rows, settings)
    except torch.OutOfMemoryError:
        if len(rows) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(rows) // 2
        log.warning("out of memory on a packed batch of %d rows; splitting it", len(rows))
        return _run_packed(model, rows[:half], settings) + _run_packed(model, rows[half:], settings)


def plan_packed(
    lengths: Sequence[int], settings: EngineSettings, solo_above: int | None = None
) -> list[tuple[int, list[list[list[int]]]]]:
    """``[(bucket, [batch of rows of indices, ...]), ...]`` for packing, buckets longest first.

    Sequences longer than ``solo_above`` run alone; for such models rows hold at most ``solo_above``
    tokens, so no position (padding included) reaches the length where the RoPE frequencies change."""
    solo = [i for i, n in enumerate(lengths) if solo_above is not None and n > solo_above]
    rest = [i for i, n in enumerate(lengths) if not (solo_above is not None and n > solo_above)]
    capacity = settings.row_tokens if solo_above is None else max(1, min(settings.row_tokens, solo_above))
    rows = [[rest[j] for j in row] for row in pack_rows([lengths[i] for i in rest], capacity)]
    batches = batch_rows(
        rows,
        lengths,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_size=settings.max_batch_size,
        max_padding=settings.max_padding,
    )
    batches += [[[i]] for i in sorted(solo, key=lambda i: -lengths[i])]
    by_bucket: dict[int, list[list[list[int]]]] = {}
    for batch in batches:
        width = max(sum(lengths[i] for i in row) for row in batch)
        by_bucket.setdefault(bucket_of(width, settings.min_bucket), []).append(batch)
    return sorted(by_bucket.items(), key=lambda kv: -kv[0])


@contextlib.contextmanager
def _attention(model, name: str | None):
    """Run the model with attention implementation ``name`` inside the block (None: unchanged)."""
    before = getattr(model.config, "_attn_implementation", None)
    if name is None or name == before:
        yield
        return
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@torch.inference_mode()
def summed_losses(
    model,
    sequences: Sequence[Sequence[int] | None],
    settings: EngineSettings | None = None,
    *,
    progress: bool = False,
    desc: str = "loss",
) -> LossResult:
    """Per-sequence summed cross-entropy of ``model`` (``None`` sequences and NaN → +inf).

    ``progress``: a bar on a terminal; without one (or with ``progress=False``) a long run logs a line
    every 30 s (tokens and samples done, tokens/s, ETA) under the name ``desc``."""
    from sn29_growth.progress import Progress

    settings = settings or EngineSettings.for_device(_input_device(model))
    losses = [math.inf] * len(sequences)
    todo = [i for i, s in enumerate(sequences) if s is not None and len(s) >= 2]
    for i, s in enumerate(sequences):
        if s is not None and len(s) < 2:
            losses[i] = 0.0  # nothing to predict
    lengths = [len(sequences[i]) for i in todo]
    solo_above = length_sensitive_threshold(model.config)
    if settings.packing:
        plan = plan_packed(lengths, settings, solo_above)
    else:
        plan = [
            (b, [[batch] for batch in batches]) for b, batches in plan_batches(lengths, settings, solo_above)
        ]
    peak = PeakMemory(_input_device(model))
    stats: list[BucketStat] = []
    total = sum(lengths)
    started = time.perf_counter()
    done = 0
    with (
        _attention(model, settings.attention),
        Progress(total, desc, unit="tok", unit_scale=True, bar=progress, leave=False, logger=log) as bar,
    ):
        for bucket, batches in plan:
            peak.reset()
            t0 = time.perf_counter()
            tokens = padded = count = 0
            for rows in batches:
                if settings.packing:
                    order = [j for row in rows for j in row]
                    values = _run_packed(model, [[sequences[todo[j]] for j in row] for row in rows], settings)
                    widths = [sum(lengths[j] for j in row) for row in rows]
                else:
                    order = rows[0]
                    values = _run_batch(model, [sequences[todo[j]] for j in order], settings)
                    widths = [lengths[j] for j in order]
                for j, value in zip(order, values, strict=True):
                    losses[todo[j]] = math.inf if math.isnan(value) else value
                n = sum(widths)
                tokens += n
                padded += len(widths) * max(widths)
                count += len(order)
                done += len(order)
                bar.update(n, samples=f"{done}/{len(todo)}")
            top = peak.read()
            added = top - peak.baseline if top is not None and peak.baseline is not None else None
            stats.append(BucketStat(bucket, count, tokens, padded, time.perf_counter() - t0, top, added))
    return LossResult(tuple(losses), tuple(stats), time.perf_counter() - started)
