"""Padding-free packing: several samples per row, each attending only to itself.

A packed row holds whole samples back to back; every sample's ``position_ids`` restart at 0. Transformers'
mask builder (``masking_utils.create_causal_mask``) reads restarting positions as separate documents when no
attention mask and no cache are passed, and keeps attention inside each one, whatever the model's attention
implementation (SDPA and eager get a block-diagonal causal mask, ``flex_attention`` a document
``BlockMask``). Rotary embeddings are computed from ``position_ids``, so every sample sees the positions it
would see alone.

Rows are filled first-fit-decreasing up to ``row_tokens``; a sample longer than that gets a row of its own.
Rows are then batched like the padded engine's sequences (longest first, a token budget and a padding
limit). The short tail of a row is padding: in a batch where some row holds several samples the tail is a
document of its own (positions restarting at 0), so it can neither see nor be seen by a real token; in a
batch where every row holds one sample, positions simply continue, which leaves a plain causal mask (the
fastest attention kernels) — the same batch the padded engine would build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` packed into rows of at most ``row_tokens`` tokens (first-fit decreasing).

    Each index appears in exactly one row; a length above ``row_tokens`` fills a row alone. Rows come out
    longest first, and samples inside a row longest first.
    """
    if row_tokens < 1:
        raise ValueError(f"row_tokens: must be >= 1, got {row_tokens!r}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max(0, row_tokens - n))
    used = [sum(lengths[i] for i in row) for row in rows]
    return [row for _, row in sorted(zip(used, rows, strict=True), key=lambda kv: -kv[0])]


def batch_rows(
    rows: Sequence[Sequence[int]],
    lengths: Sequence[int],
    *,
    max_batch_tokens: int,
    max_batch_size: int,
    max_padding: float,
) -> list[list[list[int]]]:
    """Consecutive ``rows`` (longest first) grouped into batches of at most ``max_batch_size`` rows and
    ``max_batch_tokens`` padded tokens, each stopping once its padding would exceed ``max_padding`` times
    its real tokens. A row longer than the budget is a batch alone."""
    used = [sum(lengths[i] for i in row) for row in rows]
    batches: list[list[list[int]]] = []
    pos = 0
    while pos < len(rows):
        width = used[pos]
        limit = max(1, min(max_batch_size, max_batch_tokens // max(width, 1)))
        count, real = 1, width
        while count < limit and pos + count < len(rows):
            nxt = used[pos + count]
            if (count + 1) * width > (1 + max_padding) * (real + nxt):
                break
            real += nxt
            count += 1
        batches.append([list(r) for r in rows[pos : pos + count]])
        pos += count
    return batches


@dataclass(frozen=True)
class PackedBatch:
    """Tensors of one packed batch (rows × width), on the CPU.

    ``ids`` and ``positions`` feed the model; ``owner[r, t]`` is the batch-local sample index of position
    ``t`` of row ``r`` (-1 on padding); ``predicts`` marks positions whose next id belongs to the same
    sample, and ``targets`` holds that next id (row-wise shift)."""

    ids: torch.Tensor
    positions: torch.Tensor
    owner: torch.Tensor
    predicts: torch.Tensor
    targets: torch.Tensor
    samples: int
    packed: bool  # some row holds several samples (the model sees a document mask)


def build_batch(rows: Sequence[Sequence[Sequence[int]]]) -> PackedBatch:
    """Lay out ``rows`` (each a list of id sequences, each of >= 1 id) as one packed batch.

    Samples are numbered in order: row by row, left to right."""
    width = max(sum(len(s) for s in row) for row in rows)
    packed = any(len(row) > 1 for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    owner = torch.full((len(rows), width), -1, dtype=torch.long)
    predicts = torch.zeros((len(rows), width), dtype=torch.bool)
    sample = 0
    for r, row in enumerate(rows):
        start = 0
        for seq in row:
            n = len(seq)
            ids[r, start : start + n] = torch.as_tensor(seq, dtype=torch.long)
            positions[r, start : start + n] = torch.arange(n)
            owner[r, start : start + n] = sample
            predicts[r, start : start + n - 1] = True
            start += n
            sample += 1
        tail = width - start
        if tail:
            if packed:
                positions[r, start:] = torch.arange(tail)
            else:
                positions[r, start:] = torch.arange(start, width)
    targets = torch.roll(ids, shifts=-1, dims=1)
    return PackedBatch(ids, positions, owner, predicts, targets, sample, packed)
