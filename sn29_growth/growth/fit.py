"""Shapes that fill a parameter (and byte) limit: ``sn29 plan`` and ``sn29 grow --max-params``.

Candidates keep ``head_dim`` and the query group size, use hidden sizes that are multiples of 256 (and
give a whole number of heads at the source's heads·head_dim/hidden ratio), MLP widths that are multiples
of 256, and never shrink anything. Four families of options are searched; each is finished by taking the
largest MLP width that still fits, so every option lands within one MLP step of the limit:

- ``balanced``: width and depth grow by about the same factor;
- ``wider``: hidden size (and heads) only, depth kept;
- ``deeper``: layers only, width kept;
- ``mlp``: MLP width only (when it stays within 4× the source's MLP/hidden ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sn29_growth.arch import Shape

WIDTH_STEP = 256
MLP_STEP = 256
MAX_FACTOR = 4.0
MAX_MLP_RATIO = 4.0  # MLP/hidden ratio at most this multiple of the source's


def count_params(s: Shape) -> int:
    """Exact parameter count of a Llama/Phi3 of shape ``s`` (tied embeddings counted once)."""
    d, hd = s.hidden_size, s.head_dim
    q, kv = s.num_attention_heads * hd, s.num_key_value_heads * hd
    attn = d * q + 2 * d * kv + q * d + ((q + 2 * kv + d) if s.attention_bias else 0)
    mlp = 3 * d * s.intermediate_size + ((2 * s.intermediate_size + d) if s.mlp_bias else 0)
    embed = s.vocab_size * d * (1 if s.tie_word_embeddings else 2)
    return embed + s.num_hidden_layers * (attn + mlp + 2 * d) + d


@dataclass(frozen=True)
class PlanOption:
    name: str
    shape: Shape
    parameters: int
    limit: int

    def __post_init__(self) -> None:
        if self.parameters > self.limit:
            raise ValueError(f"parameters ({self.parameters}) exceed the limit ({self.limit})")

    @property
    def usage(self) -> float:
        return self.parameters / self.limit

    def targets(self) -> dict[str, int]:
        s = self.shape
        return {
            "hidden_size": s.hidden_size,
            "intermediate_size": s.intermediate_size,
            "num_hidden_layers": s.num_hidden_layers,
            "num_attention_heads": s.num_attention_heads,
            "num_key_value_heads": s.num_key_value_heads,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.targets(),
            "parameters": self.parameters,
            "usage": round(self.usage, 6),
        }


def effective_limit(max_params: int | None, max_bytes: int | None, bytes_per_param: int) -> int:
    """The parameter limit implied by ``max_params`` and ``max_bytes`` (weights at ``bytes_per_param``)."""
    limits = []
    if max_params is not None:
        limits.append(int(max_params))
    if max_bytes is not None:
        limits.append(int(max_bytes) // bytes_per_param)
    if not limits:
        raise ValueError("give --max-params and/or --max-bytes")
    if min(limits) <= 0:
        raise ValueError("--max-params/--max-bytes must be positive")
    return min(limits)


def hidden_candidates(
    src: Shape, clone_only: bool = False, off_network: bool = False
) -> list[tuple[int, int, int]]:
    """``(hidden, heads, kv_heads)`` options: whole heads, groups kept, ``hidden = heads × head_dim``.

    ``off_network`` keeps the source's heads·head_dim/hidden ratio instead (a ratio other than 1 is a
    shape the network's transformers 4.44 cannot load).
    """
    ratio = src.num_attention_heads * src.head_dim / src.hidden_size if off_network else 1.0
    group = src.group_size
    heads0 = src.num_attention_heads if off_network else src.hidden_size // src.head_dim
    out = []
    exact = heads0 * src.head_dim == round(ratio * src.hidden_size)
    if exact and heads0 >= src.num_attention_heads and heads0 % group == 0:  # else no shape keeps this width
        out.append((src.hidden_size, heads0, heads0 // group))
    if clone_only:
        if heads0 != src.num_attention_heads:
            return []  # cloning tiles the source's heads: it cannot also add the missing ones
        for n in range(2, int(MAX_FACTOR) + 1):
            out.append((src.hidden_size * n, src.num_attention_heads * n, src.num_key_value_heads * n))
        return out
    start = (src.hidden_size // WIDTH_STEP + 1) * WIDTH_STEP
    for d in range(start, int(src.hidden_size * MAX_FACTOR) + 1, WIDTH_STEP):
        heads = ratio * d / src.head_dim
        if abs(heads - round(heads)) > 1e-9:
            continue
        heads = round(heads)
        if heads % group or d % heads or d % src.head_dim or heads < src.num_attention_heads:
            continue
        out.append((d, heads, heads // group))
    return out


def _fill_mlp(shape: Shape, limit: int, lo: int, hi: int) -> Shape | None:
    """``shape`` with the largest MLP width in [lo, hi] (a multiple of 256, or exactly lo) that fits."""
    base = count_params(shape.replace(intermediate_size=1))
    per_unit = count_params(shape.replace(intermediate_size=2)) - base
    base -= per_unit
    best = (limit - base) // per_unit
    best = min(best, hi) // MLP_STEP * MLP_STEP
    if best < lo:
        return (
            shape.replace(intermediate_size=lo)
            if count_params(shape.replace(intermediate_size=lo)) <= limit
            else None
        )
    return shape.replace(intermediate_size=best)


def plan_options(
    src: Shape, limit: int, *, clone_only: bool = False, off_network: bool = False
) -> list[PlanOption]:
    """Options that grow ``src`` to at most ``limit`` parameters, best (recommended) first.

    Every option has ``hidden_size == num_attention_heads × head_dim`` unless ``off_network``.
    """
    if count_params(src) > limit:
        raise ValueError(
            f"the source already has {count_params(src):,} parameters, above the limit {limit:,}"
        )
    src_ratio = src.intermediate_size / src.hidden_size
    found: dict[str, list[tuple[float, PlanOption]]] = {"balanced": [], "wider": [], "deeper": [], "mlp": []}
    max_layers = int(src.num_hidden_layers * MAX_FACTOR)
    for d, heads, kv in hidden_candidates(src, clone_only, off_network):
        width = d / src.hidden_size
        for layers in range(src.num_hidden_layers, max_layers + 1):
            shape = src.replace(
                hidden_size=d, num_attention_heads=heads, num_key_value_heads=kv, num_hidden_layers=layers
            )
            lo = max(src.intermediate_size, math.ceil(src.intermediate_size * width / MLP_STEP) * MLP_STEP)
            lo = src.intermediate_size if d == src.hidden_size else lo
            hi = int(d * src_ratio * MAX_MLP_RATIO)
            filled = _fill_mlp(shape, limit, lo, hi)
            if filled is None:
                break  # deeper only gets bigger
            opt = PlanOption("", filled, count_params(filled), limit)
            depth = layers / src.num_hidden_layers
            grown_w, grown_l = d != src.hidden_size, layers != src.num_hidden_layers
            mlp_ratio = filled.intermediate_size / d / src_ratio
            if grown_w and grown_l:
                found["balanced"].append((abs(math.log(width / depth)) + abs(math.log(mlp_ratio)), opt))
            elif grown_w:
                found["wider"].append((abs(math.log(mlp_ratio)), opt))
            elif grown_l:
                found["deeper"].append((abs(math.log(mlp_ratio)), opt))
            else:
                found["mlp"].append((0.0, opt))
    options = []
    for name, cands in found.items():
        good = [(c, o) for c, o in cands if o.usage >= 0.98] or cands
        if not good:
            continue
        # shape cost first, then a missed fraction of the limit weighs like a 10× shape distortion
        best = min(good, key=lambda co: co[0] + 10 * (1 - co[1].usage))[1]
        options.append(PlanOption(name, best.shape, best.parameters, limit))
    options.sort(key=lambda o: (o.usage < 0.98, o.name != "balanced", -o.usage))
    return options


def recommended(options: list[PlanOption]) -> PlanOption:
    if not options:
        raise ValueError("no growth fits the limit")
    return options[0]
