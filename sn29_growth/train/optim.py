"""AdamW with a per-element learning rate for the slices that growth added.

Why not scale gradients: Adam's step ``m̂ / (sqrt(v̂) + eps)`` is (up to eps) invariant to a constant
gradient scale, so multiplying a slice's gradient by 0.1 leaves its step about the same size — it
warms nothing up. And zeroing the gradient of "frozen" elements does not freeze them: decoupled weight
decay still shrinks them and momentum from earlier steps still moves them.

What is done instead: one Adam state for the whole tensor (``m`` and ``v`` per element, as usual) and a
boolean mask per parameter marking the new elements. Each step computes the ordinary AdamW update
``u = m̂ / (sqrt(v̂) + eps)`` for every element and applies it with an element-wise learning rate
``lr_e = new_lr`` where the mask is set and ``lr`` elsewhere:

    p ← p · (1 − lr_e · wd) − lr_e · u

which is exactly what an AdamW with that element's learning rate would do to that element (Adam is
element-wise). With ``lr_e = 0`` both factors are exact (``p · 1 − 0``), so frozen elements stay
bit-identical, while their ``m`` and ``v`` keep accumulating: when they are released their Adam state is
already warm. Parameters without new elements take the plain AdamW path.

The step runs as ``torch._foreach_*`` kernels over batches of parameters (one launch per operation for
all parameters of a device, dtype and kind instead of one per parameter), the way torch's own foreach
AdamW does.

Under FSDP2 the parameters and the state are DTensors; the arithmetic runs on the local shards, and
each mask is cut to the same shard (:func:`sn29_growth.train.distributed.local_shard`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch.distributed.tensor import DTensor

from sn29_growth.train.config import OptimizerConfig
from sn29_growth.train.schedule import LearningRates


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def state_dtype(param: torch.Tensor) -> torch.dtype:
    """The dtype of a parameter's Adam moments: float32 unless the parameter is wider (float64)."""
    return param.dtype if param.dtype == torch.float64 else torch.float32


MAX_BATCH_ELEMENTS = 2**27
"""Elements per foreach batch: bounds the step's temporaries (up to five float32 lists, each at most
512 MiB) for models whose parameters would not fit twice; launches stay few (a batch spans many layers)."""


class MaskedAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments) with group keys ``lr`` and ``new_lr``.

    ``masks`` maps a parameter to a boolean tensor of its local shape (True = new element, which
    uses ``new_lr``). State is created eagerly, so a state-dict helper never has to take a dummy step.

    ``foreach``: each step runs ``torch._foreach_*`` kernels over all parameters of one device, dtype
    and kind (with or without a mask) at once; ``False`` runs the same kernels one parameter at a time;
    ``None`` (default) = foreach for CUDA parameters only (as torch's own optimizers choose: on the CPU
    the foreach ops are per-tensor loops that hold every temporary at once, measured slower). The
    arithmetic is the same either way (bit-identical on the CPU). Moments are float32 whatever
    the parameter's dtype; a bfloat16 or float16 parameter is updated in float32 and rounded back once.
    """

    def __init__(
        self,
        params: Iterable,
        *,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        masks: dict[torch.Tensor, torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(lr=0.0, new_lr=0.0, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.masks: dict[torch.Tensor, torch.Tensor] = dict(masks or {})
        self.foreach = foreach
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(
                        p, dtype=state_dtype(p), memory_format=torch.preserve_format
                    ),
                }

    def set_learning_rates(self, rates: LearningRates) -> None:
        for group in self.param_groups:
            group["lr"] = rates.old
            group["new_lr"] = rates.new

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, except that the moments keep float32 (the base
        class casts them to each parameter's dtype, which would round them for a bfloat16 parameter)."""
        super().load_state_dict(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for i, p in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(i, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in saved and self.state[p][key].dtype != state_dtype(p):
                    self.state[p][key] = saved[key].to(device=p.device, dtype=state_dtype(p))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for batch in self._batches(group):
                self._update(batch, group)
        return loss

    def _batches(self, group: dict) -> list[_Batch]:
        """The parameters of ``group`` that have a gradient, counted one step further and batched by
        (device, dtype, masked, step count), at most :data:`MAX_BATCH_ELEMENTS` elements each (a larger
        parameter alone); one parameter per batch without ``foreach``."""
        batches: list[_Batch] = []
        filling: dict[tuple, _Batch] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            state["step"] += 1
            x = _local(p)
            mask = self.masks.get(p)
            key = (x.device, x.dtype, mask is not None, float(state["step"]))
            foreach = self.foreach if self.foreach is not None else x.device.type == "cuda"
            batch = filling.get(key)
            if batch is None or not foreach or batch.numel + x.numel() > MAX_BATCH_ELEMENTS:
                batch = filling[key] = _Batch(step=key[3])
                batches.append(batch)
            batch.add(x, _local(p.grad), _local(state["exp_avg"]), _local(state["exp_avg_sq"]), mask)
        return batches

    @staticmethod
    def _update(b: _Batch, group: dict) -> None:
        lr, new_lr = float(group["lr"]), float(group["new_lr"])
        beta1, beta2 = group["betas"]
        eps, wd = group["eps"], group["weight_decay"]
        masked = b.masks[0] is not None
        grads = (
            b.grads if b.grads[0].dtype == b.exp_avg[0].dtype else [g.to(b.exp_avg[0].dtype) for g in b.grads]
        )
        torch._foreach_lerp_(b.exp_avg, grads, 1.0 - beta1)
        torch._foreach_mul_(b.exp_avg_sq, beta2)
        torch._foreach_addcmul_(b.exp_avg_sq, grads, grads, value=1.0 - beta2)
        if lr == 0.0 and not masked:
            return
        bias1 = 1.0 - beta1**b.step
        denom = torch._foreach_sqrt(b.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1.0 - beta2**b.step))
        torch._foreach_add_(denom, eps)
        low = b.params[0].dtype != b.exp_avg[0].dtype
        xs = [x.to(b.exp_avg[0].dtype) for x in b.params] if low else b.params
        if not masked:
            if wd:
                torch._foreach_mul_(xs, 1.0 - lr * wd)
            torch._foreach_addcdiv_(xs, b.exp_avg, denom, value=-lr / bias1)
        else:
            # element-wise rate: exactly 0 where frozen, so p · (1 − 0) − 0 · u leaves p bit-identical
            rates = [torch.where(m, new_lr, lr).to(x.dtype) for m, x in zip(b.masks, xs, strict=True)]
            if wd:
                decay = torch._foreach_add(torch._foreach_mul(rates, -wd), 1.0)
                torch._foreach_mul_(xs, decay)
            step = torch._foreach_div(b.exp_avg, denom)
            torch._foreach_mul_(step, torch._foreach_div(rates, bias1))
            torch._foreach_sub_(xs, step)
        if low:
            torch._foreach_copy_(b.params, xs)


@dataclass
class _Batch:
    """Local tensors of parameters updated together (same device, dtype, masking and step count)."""

    step: float
    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)
    exp_avg: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sq: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor | None] = field(default_factory=list)
    numel: int = 0

    def add(self, x, g, m, v, mask) -> None:
        self.numel += x.numel()
        self.params.append(x)
        self.grads.append(g)
        self.exp_avg.append(m)
        self.exp_avg_sq.append(v)
        self.masks.append(mask)


def build_optimizer(
    model: torch.nn.Module,
    config: OptimizerConfig,
    masks: dict[str, torch.Tensor] | None = None,
    shard: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    foreach: bool | None = None,
) -> MaskedAdamW:
    """A :class:`MaskedAdamW` over ``model``'s trainable parameters.

    Two groups: matrices (≥ 2 dims, embeddings included) with ``config.weight_decay``, and vectors
    (norm gains, biases) without decay. ``masks`` (canonical name → full boolean mask) are placed on
    each parameter's device; ``shard(mask, param)`` cuts them to the parameter's local shard.
    """
    masks = masks or {}
    decay, no_decay, by_param = [], [], {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
        if name in masks:
            full = masks[name]
            if tuple(full.shape) != tuple(p.shape):
                raise ValueError(f"masks: {name}: shape {tuple(full.shape)} != parameter {tuple(p.shape)}")
            by_param[p] = shard(full, p) if shard is not None else full.to(p.device)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return MaskedAdamW(
        groups, betas=(config.beta1, config.beta2), eps=config.eps, masks=by_param, foreach=foreach
    )
