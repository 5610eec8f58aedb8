"""Resolve a :class:`GrowthSpec` against a source config: validated target shapes and every index map.

Each step runs up to four stages on every tensor, in this order:

1. ``clone`` (``hidden_method: clone``): tile residual, heads and kv heads (and the MLP width when the
   target allows) ×n, readers of tiled inputs divided by n;
2. ``repeat``: duplicate each kv head r times when a step shrinks the query group size (exact: every
   query head still sees a copy of its old kv head);
3. ``pad``: zero-pad/insert hidden, query heads (inside their kv group), kv heads (appended), MLP width
   and vocab, with the new-entry rules of :mod:`sn29_growth.arch`;
4. ``fold`` (``hidden_method: stock``): fold ``norm_divisor`` into the gains and eps.

Depth works on names: output block ``i`` is source block ``layers[i].source``, an inserted identity
block when ``layers[i].inserted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from sn29_growth.arch import Architecture, Shape, architecture_for
from sn29_growth.checkpoint import declared_dtype
from sn29_growth.growth import ops
from sn29_growth.growth.spec import GrowthSpec, GrowthStep, normalize_dtype

FLAGS = {
    "hidden_size": "--hidden-size",
    "intermediate_size": "--intermediate-size",
    "num_hidden_layers": "--num-layers",
    "num_attention_heads": "--num-attention-heads",
    "num_key_value_heads": "--num-key-value-heads",
    "vocab_size": "--vocab-size",
    "layer_positions": "--layer-positions",
    "hidden_method": "--hidden-method",
}


class GrowthError(ValueError):
    """A growth request that cannot be honoured; the message names the flag."""


@dataclass(frozen=True)
class LayerSource:
    source: int
    inserted: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage of a step: role → index map, the shapes around it, clone tiling factors per role."""

    kind: str  # "clone" | "repeat" | "pad"
    maps: dict[str, torch.Tensor] = field(compare=False)
    before: Shape
    after: Shape
    tiling: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StepPlan:
    index: int
    step: GrowthStep
    before: Shape
    after: Shape
    layers: tuple[LayerSource, ...]
    clone: int = 1
    clone_inter: bool = False
    kv_repeat: int = 1

    @property
    def fold(self) -> bool:
        return self.step.hidden_method == "stock" and self.padded.norm_divisor is not None

    @property
    def extra_noise(self) -> float:
        """Noise on inserted blocks' readers and new vocab rows: only when asked for explicitly."""
        return float(self.step.noise or 0.0)

    @cached_property
    def cloned(self) -> Shape:
        b, n = self.before, self.clone
        if n == 1:
            return b
        return b.replace(
            hidden_size=b.hidden_size * n,
            num_attention_heads=b.num_attention_heads * n,
            num_key_value_heads=b.num_key_value_heads * n,
            intermediate_size=b.intermediate_size * (n if self.clone_inter else 1),
            norm_divisor=None if b.norm_divisor is None else b.norm_divisor * n,
        )

    @cached_property
    def repeated(self) -> Shape:
        c = self.cloned
        return c.replace(num_key_value_heads=c.num_key_value_heads * self.kv_repeat)

    @cached_property
    def padded(self) -> Shape:
        a, r = self.after, self.repeated
        divisor = r.norm_divisor
        if a.hidden_size > r.hidden_size and divisor is None:
            divisor = r.hidden_size
        return a.replace(norm_divisor=divisor, rms_norm_eps=r.rms_norm_eps)

    @cached_property
    def stages(self) -> tuple[Stage, ...]:
        out: list[Stage] = []
        b, hd = self.before, self.before.head_dim
        if self.clone > 1:
            n = self.clone
            tiling = {"hidden": n, "q": n, "kv": n, "inter": n if self.clone_inter else 1}
            maps = {r: ops.tile_map(b.role_size(r), k) for r, k in tiling.items() if k > 1}
            out.append(Stage("clone", maps, b, self.cloned, tiling))
        if self.kv_repeat > 1:
            c = self.cloned
            maps = {"kv": ops.expand_heads(ops.kv_repeat_map(c.num_key_value_heads, self.kv_repeat), hd)}
            out.append(Stage("repeat", maps, c, self.repeated))
        r, p = self.repeated, self.padded
        maps = {}
        for role in ("hidden", "inter", "vocab"):
            if p.role_size(role) != r.role_size(role):
                maps[role] = ops.pad_map(r.role_size(role), p.role_size(role))
        if (p.num_attention_heads, p.num_key_value_heads) != (r.num_attention_heads, r.num_key_value_heads):
            q = ops.query_head_map(r.num_key_value_heads, r.group_size, p.num_key_value_heads, p.group_size)
            maps["q"] = ops.expand_heads(q, hd)
            maps["kv"] = ops.expand_heads(ops.pad_map(r.num_key_value_heads, p.num_key_value_heads), hd)
        if maps:
            out.append(Stage("pad", maps, r, p))
        return tuple(out)

    def routes(self, layer: int) -> list[tuple[int, bool]]:
        """Output blocks (index, inserted?) that source block ``layer`` of this step becomes."""
        return [(i, ls.inserted) for i, ls in enumerate(self.layers) if ls.source == layer]

    def summary(self) -> dict[str, Any]:
        inserted = [i for i, ls in enumerate(self.layers) if ls.inserted]
        return {
            "step": self.index,
            "hidden_method": self.step.hidden_method,
            "init": self.step.init,
            "stages": [s.kind for s in self.stages] + (["fold"] if self.fold else []),
            "inserted_layers": inserted,
            "before": shape_dict(self.before),
            "after": shape_dict(self.after),
        }


def shape_dict(s: Shape) -> dict[str, Any]:
    return {
        "hidden_size": s.hidden_size,
        "intermediate_size": s.intermediate_size,
        "num_hidden_layers": s.num_hidden_layers,
        "num_attention_heads": s.num_attention_heads,
        "num_key_value_heads": s.num_key_value_heads,
        "head_dim": s.head_dim,
        "vocab_size": s.vocab_size,
        "norm_divisor": s.norm_divisor,
        "rms_norm_eps": s.rms_norm_eps,
    }


def _rotary_factors(config: dict[str, Any]) -> bool:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return isinstance(rope, dict) and bool(rope.get("short_factor") or rope.get("long_factor"))


def layer_sources(
    num_layers: int, target: int, placement: str, positions: tuple[int, ...]
) -> tuple[LayerSource, ...]:
    """Output block table for depth growth ``num_layers → target`` (each inserted block copies a neighbour)."""
    k = target - num_layers
    if k == 0:
        if positions:
            raise GrowthError("--layer-positions given but --num-layers does not grow")
        return tuple(LayerSource(i) for i in range(num_layers))
    if placement in ("interleaved", "append"):
        after = (
            ops.interleaved_insertions(num_layers, k) if placement == "interleaved" else [num_layers - 1] * k
        )
        out: list[LayerSource] = []
        for i in range(num_layers):
            out.append(LayerSource(i))
            out += [LayerSource(i, True)] * after.count(i)
        return tuple(out)
    if len(positions) != k or any(p >= target for p in positions):
        raise GrowthError(
            f"--layer-positions must name exactly {k} distinct output block indices in [0, {target}), "
            f"got {list(positions)}"
        )
    out, src = [], 0
    inserted = set(positions)
    for i in range(target):
        if i in inserted:
            out.append(LayerSource(max(src - 1, 0), True))
        else:
            out.append(LayerSource(src))
            src += 1
    return tuple(out)


OFF_NETWORK_FLAG = "--allow-off-network-shapes"


def network_heads(hidden_size: int, head_dim: int) -> int | None:
    """The query heads that make ``hidden_size == heads × head_dim`` (what transformers 4.44 assumes)."""
    return hidden_size // head_dim if hidden_size % head_dim == 0 else None


def resolve_step(
    step: GrowthStep, before: Shape, index: int, config: dict[str, Any], off_network: bool = False
) -> StepPlan:
    """Validate ``step`` against ``before`` and work out every shape and map; GrowthError names the flag.

    Unless ``off_network``, the target keeps ``hidden_size == num_attention_heads × head_dim``, the only
    shape the network's transformers (4.44) loads: when the hidden size grows and no head count is
    given, new query heads are added (inside their kv groups) to match.
    """
    t = step.targets()
    _refuse_shrinking(t, before)
    d2 = t.get("hidden_size", before.hidden_size)
    clone, clone_inter = _clone_factor(step, t, before, d2)
    heads, kv = before.num_attention_heads * clone, before.num_key_value_heads * clone
    h2, k2 = _head_counts(t, before, heads, kv, d2, clone, off_network)
    _check_head_dim(before, config, d2, h2, off_network)
    kv_repeat = _kv_repeat(heads // kv, h2 // k2, k2)
    layers = layer_sources(
        before.num_hidden_layers,
        t.get("num_hidden_layers", before.num_hidden_layers),
        step.layer_placement,
        step.layer_positions,
    )
    after = before.replace(
        hidden_size=d2,
        intermediate_size=t.get(
            "intermediate_size", before.intermediate_size * (clone if clone_inter else 1)
        ),
        num_hidden_layers=len(layers),
        num_attention_heads=h2,
        num_key_value_heads=k2,
        vocab_size=t.get("vocab_size", before.vocab_size),
    )
    sp = StepPlan(index, step, before, after, layers, clone, clone_inter, kv_repeat)
    divisor, eps = sp.padded.norm_divisor, sp.padded.rms_norm_eps
    if sp.fold:
        eps = ops.fold_divisor_into_eps(eps, divisor, d2)
        divisor = None
    return StepPlan(
        index,
        step,
        before,
        after.replace(norm_divisor=divisor, rms_norm_eps=eps),
        layers,
        clone,
        clone_inter,
        kv_repeat,
    )


def _refuse_shrinking(t: dict[str, int], before: Shape) -> None:
    for key, value in t.items():
        old = getattr(before, key)
        if value < old:
            raise GrowthError(
                f"{FLAGS[key]} {value} is smaller than the current {key} {old}: shrinking is not supported"
            )


def _clone_factor(step: GrowthStep, t: dict[str, int], before: Shape, d2: int) -> tuple[int, bool]:
    """How many times ``--hidden-method clone`` tiles the hidden size (1 otherwise), and whether the MLP
    grows enough to be tiled too."""
    if step.hidden_method != "clone" or d2 == before.hidden_size:
        return 1, False
    if d2 % before.hidden_size:
        raise GrowthError(
            f"--hidden-method clone needs --hidden-size to be an integer multiple of "
            f"{before.hidden_size}, got {d2}"
        )
    clone = d2 // before.hidden_size
    heads, kv = before.num_attention_heads * clone, before.num_key_value_heads * clone
    for key, v in (("num_attention_heads", heads), ("num_key_value_heads", kv)):
        if t.get(key, v) < v:
            raise GrowthError(
                f"{FLAGS[key]} {t[key]}: --hidden-method clone tiles heads ×{clone}, so it must be ≥ {v}"
            )
    return clone, t.get("intermediate_size", 0) >= clone * before.intermediate_size


def _head_counts(
    t: dict[str, int], before: Shape, heads: int, kv: int, d2: int, clone: int, off_network: bool
) -> tuple[int, int]:
    """The target's query and kv head counts: given, or added to keep hidden = heads × head_dim."""
    hd = before.head_dim
    h2 = t.get("num_attention_heads", heads)
    auto_heads = (
        "num_attention_heads" not in t and not off_network and d2 != before.hidden_size and clone == 1
    )
    if auto_heads:
        h2 = max(heads, network_heads(d2, hd) or heads)
    if "num_key_value_heads" in t:
        k2 = t["num_key_value_heads"]
    elif h2 % kv == 0:
        k2 = kv
    elif auto_heads and h2 % (heads // kv) == 0:
        k2 = h2 // (heads // kv)  # the added heads need kv heads of their own: the group size is kept
    else:
        raise GrowthError(
            f"--num-attention-heads {h2} is not a multiple of the {kv} kv heads; "
            f"give --num-key-value-heads as well"
        )
    if h2 % k2:
        raise GrowthError(f"--num-key-value-heads {k2} does not divide --num-attention-heads {h2}")
    if k2 < kv:
        raise GrowthError(
            f"--num-key-value-heads {k2} is smaller than the current {kv}: shrinking is not supported"
        )
    return h2, k2


def _check_head_dim(before: Shape, config: dict[str, Any], d2: int, h2: int, off_network: bool) -> None:
    """head_dim is kept; the hidden size must split into the heads as transformers (and the network) needs."""
    hd = before.head_dim
    if d2 % hd:
        raise GrowthError(f"--hidden-size {d2} is not a multiple of head_dim {hd} (head_dim is kept)")
    if d2 % h2:
        raise GrowthError(
            f"--hidden-size {d2} is not a multiple of --num-attention-heads {h2} (transformers requires it)"
        )
    if (
        before.model_type == "phi3"
        and _rotary_factors(config)
        and d2 // h2 != before.hidden_size // before.num_attention_heads
    ):
        raise GrowthError(
            f"--num-attention-heads {h2}: Phi3 rope factors are validated against hidden/heads, so "
            f"--hidden-size/--num-attention-heads must stay {before.hidden_size // before.num_attention_heads}"
        )
    if not off_network and d2 != h2 * hd:
        want = network_heads(d2, hd)
        hint = f"--num-attention-heads {want}" if want else f"a --hidden-size that is a multiple of {hd}"
        raise GrowthError(
            f"hidden_size {d2} with {h2} heads of head_dim {hd} ({h2 * hd}): the network's transformers "
            f"(4.44) computes head_dim = hidden_size / num_attention_heads and could not load it; use "
            f"{hint}, or {OFF_NETWORK_FLAG} to write it anyway"
        )


def _kv_repeat(group: int, group2: int, k2: int) -> int:
    """How many times each kv head is repeated when the query group shrinks from ``group`` to ``group2``."""
    if group2 >= group:
        return 1
    if group % group2:
        raise GrowthError(
            f"--num-key-value-heads {k2}: the query group size would go from {group} to {group2}, "
            f"which does not divide it"
        )
    return group // group2


@dataclass(frozen=True)
class GrowthPlan:
    """A resolved growth: the architecture table, every step, the output dtype and config."""

    spec: GrowthSpec
    arch: Architecture
    source_config: dict[str, Any] = field(compare=False)
    steps: tuple[StepPlan, ...]
    dtype: str
    source_dtype: str | None = None

    @property
    def source(self) -> Shape:
        return self.steps[0].before

    @property
    def target(self) -> Shape:
        return self.steps[-1].after

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def exact_storage(self) -> bool:
        """Whether the output dtype holds the grown weights exactly.

        True for fp32 output, or output in the source's own dtype without rescaled gains (stock fold) or
        divided/noised clone copies; a cast to a lower precision rounds the source weights themselves.
        """
        if self.dtype == "float32":
            return True
        return self.source_dtype == self.dtype and all(sp.clone == 1 and not sp.fold for sp in self.steps)

    def output_config(self) -> dict[str, Any]:
        cfg = self.target.to_config(self.source_config)
        cfg["dtype"] = self.dtype
        if "torch_dtype" in cfg:
            cfg["torch_dtype"] = self.dtype
        cfg.pop("_name_or_path", None)
        cfg["architectures"] = [self.arch.class_name]
        return cfg

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.arch.expected_shapes(self.target)

    def outputs_of(self, name: str) -> list[str]:
        """Output tensor names that source tensor ``name`` becomes (none for a dropped tied lm_head)."""
        entry, layer = self.arch.lookup(name)
        if entry.requires == "untied" and self.source.tie_word_embeddings:
            return []
        if not entry.layered:
            return [name]
        layers = [layer]
        for sp in self.steps:
            layers = [out for cur in layers for out, _ in sp.routes(cur)]
        return [entry.name(i) for i in layers]

    def summary(self) -> dict[str, Any]:
        return {
            "model_type": self.arch.model_type,
            "dtype": self.dtype,
            "source": shape_dict(self.source),
            "target": shape_dict(self.target),
            "steps": [sp.summary() for sp in self.steps],
        }


def resolve_plan(spec: GrowthSpec, config: dict[str, Any], source_dtype: str | None = None) -> GrowthPlan:
    """The :class:`GrowthPlan` of ``spec`` applied to a raw ``config.json`` dict."""
    shape = Shape.from_config(config)
    arch = architecture_for(shape.model_type)
    steps = []
    for i, step in enumerate(spec.steps):
        sp = resolve_step(step, shape, i, config, off_network=spec.off_network)
        steps.append(sp)
        shape = sp.after
    src_dtype = normalize_dtype(source_dtype) if source_dtype else declared_dtype(config)
    dtype = spec.dtype or src_dtype or "float32"
    return GrowthPlan(spec, arch, dict(config), tuple(steps), dtype, src_dtype)
