"""Grow one tensor (``grow_tensor``) or a whole state dict in memory (``grow_state_dict``).

New values are computed in fp32 and cast once to the plan's dtype; old values are copied exactly.
Randomness comes from a generator seeded by (seed, step, output tensor name), so a tensor's result does
not depend on the order in which tensors are processed.
:func:`new_masks` mirrors the operators on boolean masks: which entries of each output are new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from sn29_growth.arch import Axis, TensorEntry
from sn29_growth.growth import ops
from sn29_growth.growth.resolve import GrowthPlan, Stage, StepPlan, resolve_plan
from sn29_growth.growth.spec import GrowthSpec

log = logging.getLogger(__name__)


def _axis_map(axis: Axis, stage: Stage) -> torch.Tensor | None:
    """The composite index map of one (possibly fused) axis for ``stage``, or None if it is unchanged."""
    if not any(r in stage.maps for r in axis.roles):
        return None
    sizes = [stage.before.role_size(r) for r in axis.roles]
    maps = [stage.maps.get(r, torch.arange(s)) for r, s in zip(axis.roles, sizes, strict=True)]
    return ops.segmented_map(maps, sizes)


def _apply_stage(
    stage: Stage, sp: StepPlan, entry: TensorEntry, t: torch.Tensor, gen: torch.Generator, std: ops.Scale
) -> torch.Tensor:
    zeros = sp.step.init == "zeros"
    rules = ["zero" if zeros and axis.new == "random" else axis.new for axis in entry.axes]
    if stage.kind != "clone":
        srcs = [_axis_map(axis, stage) for axis in entry.axes]
        return ops.gather_nd(t, srcs, rules, gen=gen, std=std, noise=sp.extra_noise)
    for i, axis in enumerate(entry.axes):
        src = _axis_map(axis, stage)
        if src is None:
            continue
        t = ops.gather(t, i, src, rules[i], gen=gen, std=std, noise=sp.extra_noise)
        if axis.reads:
            n = stage.tiling.get(axis.roles[0], 1)
            if n > 1:
                t = t / n
                if sp.step.noise_level > 0 and entry.kind == "linear":
                    scale = sp.step.noise_level * ops._std(t, std())
                    t = t + ops.zero_sum_noise(t.shape, i, n, gen=gen, scale=scale)
    if entry.kind == "norm" and not entry.layered and stage.before.tie_word_embeddings:
        t = t / sp.clone  # tied logits read the tiled stream n times
    return t


def _identity_block(sp: StepPlan, entry: TensorEntry, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """An inserted block: writers zeroed (identity); with ``init: zeros`` everything but the norms is zero."""
    if entry.kind == "norm":
        return torch.ones_like(t) if sp.step.init == "zeros" else t
    if entry.writer or sp.step.init == "zeros":
        return torch.zeros_like(t)
    if sp.extra_noise > 0 and entry.kind == "linear":
        return t + torch.randn(t.shape, generator=gen) * (sp.extra_noise * ops._std(t, 0.02))
    return t


def _shape_of(entry: TensorEntry, shape) -> tuple[int, ...]:
    return tuple(sum(shape.role_size(r) for r in axis.roles) for axis in entry.axes)


def apply_step(
    sp: StepPlan, entry: TensorEntry, out_name: str, inserted: bool, t: torch.Tensor, seed: int
) -> torch.Tensor:
    """One step on one tensor (``out_name`` is its name after the step, ``inserted``: a new block)."""
    gen = ops.generator(seed, sp.index, out_name)
    if inserted and entry.kind != "norm" and (entry.writer or sp.step.init == "zeros"):
        return torch.zeros(_shape_of(entry, sp.after), dtype=t.dtype)  # nothing to grow: all zero
    std = ops.Scale(t, sp.before.initializer_range)
    for stage in sp.stages:
        t = _apply_stage(stage, sp, entry, t, gen, std)
    if sp.fold and entry.kind == "norm":
        t = ops.fold_divisor_into_gains(t, sp.padded.norm_divisor, sp.after.hidden_size)
    if inserted:
        t = _identity_block(sp, entry, t, gen)
    return t


def work_dtype(plan: GrowthPlan, entry: TensorEntry, dtype: torch.dtype) -> torch.dtype:
    """fp32 whenever arithmetic touches existing values (clone division and noise, the stock fold, noise
    on inserted blocks) or the output dtype differs from the source's; otherwise the source dtype, since
    copying old entries is exact and new entries are drawn in fp32 and cast once: bit-identical results."""
    arithmetic = any(
        sp.clone > 1 or sp.extra_noise > 0 or (sp.fold and entry.kind == "norm") for sp in plan.steps
    )
    return dtype if dtype == plan.torch_dtype and not arithmetic else torch.float32


def grow_tensor(name: str, tensor: torch.Tensor, plan: GrowthPlan) -> dict[str, torch.Tensor]:
    """Every output tensor that source tensor ``name`` becomes, in the plan's dtype.

    Pure: depends only on ``name``, ``tensor`` and ``plan``. A tied model's stored ``lm_head.weight``
    yields nothing (the output stays tied). New values are computed in fp32 and cast once.
    """
    entry, layer = plan.arch.lookup(name)
    if entry.requires == "untied" and plan.source.tie_word_embeddings:
        return {}
    expected = plan.arch.tensor_shape(entry, plan.source)
    if tuple(tensor.shape) != expected:
        raise ValueError(f"tensor {name} has shape {tuple(tensor.shape)}, the config implies {expected}")
    items: list[tuple[int | None, torch.Tensor]] = [(layer, tensor.to(work_dtype(plan, entry, tensor.dtype)))]
    for sp in plan.steps:
        nxt = []
        for cur, t in items:
            routes = sp.routes(cur) if entry.layered else [(None, False)]
            for out_layer, inserted in routes:
                nxt.append(
                    (out_layer, apply_step(sp, entry, entry.name(out_layer), inserted, t, plan.spec.seed))
                )
        items = nxt
    dtype = plan.torch_dtype
    return {entry.name(i): t.to(dtype).contiguous() for i, t in items}


@dataclass(frozen=True)
class NewMask:
    """Which entries of an output tensor are new: per-axis masks, or the whole tensor (inserted block)."""

    axes: tuple[torch.Tensor, ...]
    whole: bool = False

    @property
    def any(self) -> bool:
        return self.whole or any(bool(m.any()) for m in self.axes)

    def dense(self) -> torch.Tensor:
        """The element-wise mask: new along any axis."""
        shape = tuple(m.numel() for m in self.axes)
        out = torch.full(shape, self.whole, dtype=torch.bool)
        for i, m in enumerate(self.axes):
            view = [1] * len(shape)
            view[i] = -1
            out |= m.view(view)
        return out

    def slices(self) -> list[list[list[int]] | None]:
        """Boxes covering the new entries: ``None`` (the whole tensor) or one ``[start, stop]`` per axis."""
        if self.whole:
            return [None]
        out = []
        full = [[0, m.numel()] for m in self.axes]
        for i, m in enumerate(self.axes):
            for start, stop in ops.true_runs(m):
                out.append([*full[:i], [start, stop], *full[i + 1 :]])
        return out


def _mask_step(sp: StepPlan, entry: TensorEntry, mask: NewMask, inserted: bool) -> NewMask:
    axes = list(mask.axes)
    for stage in sp.stages:
        for i, axis in enumerate(entry.axes):
            src = _axis_map(axis, stage)
            if src is not None:
                axes[i] = ops.gather_mask(axes[i], src)
    return NewMask(tuple(axes), mask.whole or inserted)


def new_masks(plan: GrowthPlan) -> dict[str, NewMask]:
    """For every output tensor, which of its entries the growth added (no tensor data needed)."""
    out: dict[str, NewMask] = {}
    for name in plan.arch.names(plan.source):
        entry, layer = plan.arch.lookup(name)
        shape = plan.arch.tensor_shape(entry, plan.source)
        items = [(layer, NewMask(tuple(torch.zeros(n, dtype=torch.bool) for n in shape)))]
        for sp in plan.steps:
            items = [
                (o, _mask_step(sp, entry, m, ins))
                for cur, m in items
                for o, ins in (sp.routes(cur) if entry.layered else [(None, False)])
            ]
        out.update({entry.name(i): m for i, m in items})
    return out


def new_slices(plan: GrowthPlan) -> list[dict[str, Any]]:
    """The new parameter slices, as ``growth_recipe.json`` records them for training (re-warming).

    ``[{"name": ..., "index": [[start, stop], ...] | None}]``; ``None`` marks a whole new tensor.
    """
    return [
        {"name": name, "index": box}
        for name, mask in new_masks(plan).items()
        if mask.any
        for box in mask.slices()
    ]


def grow_state_dict(
    state_dict: dict[str, torch.Tensor], config: dict[str, Any], spec: GrowthSpec
) -> tuple[dict[str, torch.Tensor], dict[str, Any], GrowthPlan]:
    """Grow an in-memory state dict: ``(new_state_dict, new_config, plan)``. The small-model path."""
    plan = resolve_plan(spec, config, source_dtype=str(next(iter(state_dict.values())).dtype))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if plan.source.tie_word_embeddings and name == "lm_head.weight":
            continue
        out.update(grow_tensor(name, tensor, plan))
    missing = set(plan.output_shapes()) - set(out)
    if missing:
        raise ValueError(f"state dict lacks tensors for: {', '.join(sorted(missing)[:5])}")
    return out, plan.output_config(), plan


def grow_model(model: torch.nn.Module, spec: GrowthSpec) -> tuple[torch.nn.Module, GrowthPlan]:
    """Grow an in-memory transformers model (fp32, eval mode); the source model is left untouched."""
    from transformers import AutoModelForCausalLM

    from sn29_growth.params import config_from

    cfg = model.config.to_dict()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    new_sd, new_cfg, plan = grow_state_dict(sd, cfg, spec)
    config = config_from(new_cfg)
    with torch.random.fork_rng(devices=[]):
        grown = AutoModelForCausalLM.from_config(config, dtype=plan.torch_dtype)
    missing, unexpected = grown.load_state_dict(new_sd, strict=False)
    allowed = {"lm_head.weight"} if plan.target.tie_word_embeddings else set()
    if set(missing) - allowed or unexpected:
        raise ValueError(
            f"grown state dict does not fit the model: missing {missing}, unexpected {unexpected}"
        )
    return grown.eval(), plan
