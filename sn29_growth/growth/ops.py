"""Pure tensor operators of growth: index maps, gathers with new-entry fills, tiling, norm folding.

An index map ``src`` of length ``new_size`` says, for every position of a grown axis, which old index
it holds (``-1``: a new entry). Insertion, zero-padding, head regrouping, kv-head duplication and
tiling are all such maps. Every function here is deterministic given its ``torch.Generator``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence

import torch


def generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and ``parts`` (e.g. step index and tensor name)."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    g = torch.Generator(device="cpu")
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


# --- index maps ------------------------------------------------------------------------------------


def pad_map(old: int, new: int) -> torch.Tensor:
    """Old entries first, ``new - old`` new entries appended."""
    if new < old:
        raise ValueError(f"cannot shrink an axis from {old} to {new}")
    return torch.cat([torch.arange(old), torch.full((new - old,), -1, dtype=torch.long)])


def tile_map(old: int, n: int) -> torch.Tensor:
    """``n`` consecutive copies of the whole axis (HyperCloning's tiling)."""
    return torch.arange(old).repeat(n)


def expand_heads(head_src: torch.Tensor, head_dim: int) -> torch.Tensor:
    """A per-head map expanded to the ``head_dim`` rows of each head."""
    rows = head_src[:, None] * head_dim + torch.arange(head_dim)[None, :]
    rows[head_src < 0] = -1
    return rows.reshape(-1)


def query_head_map(num_kv: int, group: int, new_num_kv: int, new_group: int) -> torch.Tensor:
    """Where every query head goes when groups widen to ``new_group`` and kv heads are appended.

    Hugging Face pairs query head ``h`` with kv head ``h // group``. Old head ``j·group + p`` moves to
    ``j·new_group + p``; the new heads fill the rest of each group and the appended groups.
    """
    if new_group < group or new_num_kv < num_kv:
        raise ValueError("query groups and kv heads can only grow here")
    src = torch.full((new_num_kv * new_group,), -1, dtype=torch.long)
    for j in range(num_kv):
        src[j * new_group : j * new_group + group] = torch.arange(j * group, (j + 1) * group)
    return src


def kv_repeat_map(num_kv: int, repeat: int) -> torch.Tensor:
    """Each kv head duplicated ``repeat`` times in place (splits a query group into ``repeat`` groups)."""
    return torch.arange(num_kv).repeat_interleave(repeat)


def interleaved_insertions(num_layers: int, new_blocks: int) -> list[int]:
    """Source layers after which the ``new_blocks`` blocks go, spread evenly (one per group of layers)."""
    return [math.ceil((j + 1) * num_layers / new_blocks) - 1 for j in range(new_blocks)]


# --- gathers ---------------------------------------------------------------------------------------


def _std(t: torch.Tensor, fallback: float, chunks: int = 64, chunk: int = 1024) -> float:
    """The standard deviation of ``t``, from ``chunks`` contiguous blocks spread evenly through it."""
    flat = t.reshape(-1)
    if flat.numel() > 2 * chunks * chunk:
        rows = flat[: flat.numel() // chunk * chunk].view(-1, chunk)
        flat = rows[:: rows.shape[0] // chunks].reshape(-1)
    s = float(flat.float().std()) if flat.numel() > 1 else 0.0
    return s if math.isfinite(s) and s > 0 else fallback


class Scale:
    """A tensor's own init scale, computed only when a random fill first needs it."""

    def __init__(self, t: torch.Tensor, fallback: float) -> None:
        self._t, self._fallback, self._value = t, fallback, None

    def __call__(self) -> float:
        if self._value is None:
            self._value = _std(self._t, self._fallback)
            self._t = None
        return self._value


def runs(src: torch.Tensor) -> list[tuple[int, int, int]]:
    """``src`` as runs ``(dst_start, src_start, length)``: consecutive old indices, or new (``src_start=-1``)."""
    n = src.numel()
    if n == 0:
        return []
    new = src < 0
    brk = torch.ones(n, dtype=torch.bool)
    brk[1:] = (new[1:] != new[:-1]) | (~new[1:] & (src[1:] != src[:-1] + 1))
    starts = brk.nonzero().flatten().tolist() + [n]
    first = src[starts[:-1]].tolist()
    return [(a, max(f, -1), b - a) for a, b, f in zip(starts[:-1], starts[1:], first, strict=True)]


def true_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D boolean mask."""
    padded = torch.cat(
        [torch.zeros(1, dtype=torch.int8), mask.to(torch.int8), torch.zeros(1, dtype=torch.int8)]
    )
    edges = (padded[1:] - padded[:-1]).nonzero().flatten().tolist()
    return list(zip(edges[::2], edges[1::2], strict=True))


def fill_(
    view: torch.Tensor,
    rule: str,
    t: torch.Tensor,
    axis: int,
    *,
    gen: torch.Generator | None,
    std: float | Scale,
    noise: float = 0.0,
) -> None:
    """Fill ``view`` (new entries along ``axis`` of a gather of ``t``) in place under ``rule``."""
    if rule == "zero":
        view.zero_()
    elif rule == "one":
        view.fill_(1)
    elif rule == "random":
        scale = std() if callable(std) else std
        if view.is_contiguous() and view.dtype == torch.float32:
            view.normal_(0.0, scale, generator=gen)
        else:  # drawn in fp32, cast once (normal_ on a strided view is also ~10× slower)
            view.copy_(torch.empty(view.shape).normal_(0.0, scale, generator=gen))
    elif rule == "mean":
        mean = t.mean(dim=axis, keepdim=True, dtype=torch.float32).expand(view.shape)
        if noise > 0:
            mean = mean + torch.randn(view.shape, generator=gen) * (noise * _std(t, 0.0))
        view.copy_(mean)
    else:
        raise ValueError(f"unknown fill rule {rule!r}")


def gather(
    t: torch.Tensor,
    axis: int,
    src: torch.Tensor,
    rule: str,
    *,
    gen: torch.Generator | None = None,
    std: float | Scale = 0.02,
    noise: float = 0.0,
) -> torch.Tensor:
    """``t`` re-indexed along ``axis`` by ``src``; positions with ``src == -1`` get ``rule``'s values.

    Copies whole runs of consecutive indices (a pad, a head regrouping or a tiling is a handful of
    runs) and fills the new runs in place, in order, from ``gen``.
    """
    parts = runs(src)
    if len(parts) == 1 and parts[0] == (0, 0, t.shape[axis]):
        return t
    shape = list(t.shape)
    shape[axis] = src.numel()
    out = torch.empty(shape, dtype=t.dtype)
    new_views = []
    for dst, start, length in parts:
        view = out.narrow(axis, dst, length)
        if start >= 0:
            view.copy_(t.narrow(axis, start, length))
        else:
            new_views.append(view)
    for view in new_views:
        fill_(view, rule, t, axis, gen=gen, std=std, noise=noise)
    return out


def gather_nd(
    t: torch.Tensor,
    srcs: Sequence[torch.Tensor | None],
    rules: Sequence[str],
    *,
    gen: torch.Generator | None = None,
    std: float | Scale = 0.02,
    noise: float = 0.0,
) -> torch.Tensor:
    """:func:`gather` along every axis at once (``srcs[i]`` None: axis ``i`` unchanged), one copy per block.

    Same result rules as gathering axis after axis: an entry new along several axes takes the rule of
    the last of them; a ``mean`` block averages the old entries along its axis (which must precede any
    other growing axis — the vocab axis is axis 0). Old data is copied once, straight to its place.
    """
    axis_runs = [runs(s) if s is not None else [(0, 0, n)] for s, n in zip(srcs, t.shape, strict=True)]
    if all(r == [(0, 0, n)] for r, n in zip(axis_runs, t.shape, strict=True)):
        return t
    shape = [s.numel() if s is not None else n for s, n in zip(srcs, t.shape, strict=True)]
    out = torch.empty(shape, dtype=t.dtype)
    fills = []
    for combo in itertools.product(*axis_runs):
        view, source = out, t
        for ax, (dst, start, length) in enumerate(combo):
            view = view.narrow(ax, dst, length)
            if start >= 0:
                source = source.narrow(ax, start, length)
        new_axes = [ax for ax, (_, start, _) in enumerate(combo) if start < 0]
        if new_axes:
            fills.append((new_axes, source, view))
        else:
            view.copy_(source)
    for new_axes, source, view in fills:
        axis = new_axes[-1]
        if rules[axis] == "mean" and len(new_axes) > 1:
            raise ValueError("a mean-filled axis must come before every other growing axis")
        fill_(view, rules[axis], source, axis, gen=gen, std=std, noise=noise)
    return out


def gather_mask(mask: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """The new-entry mask of an axis after ``gather`` with ``src``."""
    return mask[src.clamp(min=0)] | (src < 0)


def segmented_map(maps: Sequence[torch.Tensor], old_sizes: Sequence[int]) -> torch.Tensor:
    """One map for a fused axis from per-segment maps (old indices offset by the old segment starts)."""
    out, offset = [], 0
    for m, size in zip(maps, old_sizes, strict=True):
        out.append(torch.where(m >= 0, m + offset, m))
        offset += size
    return torch.cat(out)


def zero_sum_noise(
    shape: Sequence[int], axis: int, copies: int, *, gen: torch.Generator, scale: float
) -> torch.Tensor:
    """Gaussian noise whose ``copies`` blocks along ``axis`` sum to zero (keeps a map of tiled inputs)."""
    shape = list(shape)
    block = shape[axis] // copies
    z = torch.randn(shape, generator=gen)
    view = z.unflatten(axis, (copies, block))
    view -= view.mean(dim=axis, keepdim=True)
    return view.flatten(axis, axis + 1).mul_(scale)


# --- norm_divisor ------------------------------------------------------------------------------------


def fold_divisor_into_gains(gain: torch.Tensor, norm_divisor: float, hidden_size: int) -> torch.Tensor:
    """Gains of the stock RMSNorm equal to a ``norm_divisor`` RMSNorm at width ``hidden_size``.

    ``sqrt(Σx²/D + eps) = sqrt(d/D) · sqrt(Σx²/d + eps·D/d)``, so ``g' = g·sqrt(D/d)`` with
    ``eps' = eps·D/d`` (:func:`fold_divisor_into_eps`). Computed in fp32 (the caller casts once).
    """
    return gain.float() * math.sqrt(float(norm_divisor) / hidden_size)


def fold_divisor_into_eps(eps: float, norm_divisor: float, hidden_size: int) -> float:
    return float(eps) * float(norm_divisor) / hidden_size
