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

Under FSDP2 the parameters and the state are DTensors; the arithmetic runs on the local shards, and
each mask is cut to the same shard (:func:`sn29_growth.train.distributed.local_shard`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.distributed.tensor import DTensor

from sn29_growth.train.config import OptimizerConfig
from sn29_growth.train.schedule import LearningRates


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class MaskedAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments) with group keys ``lr`` and ``new_lr``.

    ``masks`` maps a parameter to a boolean tensor of its local shape (True = new element, which
    uses ``new_lr``). State is created eagerly, so a state-dict helper never has to take a dummy step.
    """

    def __init__(
        self,
        params: Iterable,
        *,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        masks: dict[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        defaults = dict(lr=0.0, new_lr=0.0, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.masks: dict[torch.Tensor, torch.Tensor] = dict(masks or {})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    def set_learning_rates(self, rates: LearningRates) -> None:
        for group in self.param_groups:
            group["lr"] = rates.old
            group["new_lr"] = rates.new

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, new_lr = float(group["lr"]), float(group["new_lr"])
            beta1, beta2 = group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                step = float(state["step"])
                x, g = _local(p), _local(p.grad)
                m, v = _local(state["exp_avg"]), _local(state["exp_avg_sq"])
                m.lerp_(g, 1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                bias1 = 1.0 - beta1**step
                denom = (v.sqrt() / math.sqrt(1.0 - beta2**step)).add_(eps)
                mask = self.masks.get(p)
                if mask is None:
                    if lr == 0.0:
                        continue
                    if wd:
                        x.mul_(1.0 - lr * wd)
                    x.addcdiv_(m, denom, value=-lr / bias1)
                    continue
                lr_e = torch.where(mask, new_lr, lr).to(x.dtype)
                if wd:
                    x.mul_(1.0 - lr_e * wd)
                x.sub_(lr_e / bias1 * (m / denom))
        return loss


def build_optimizer(
    model: torch.nn.Module,
    config: OptimizerConfig,
    masks: dict[str, torch.Tensor] | None = None,
    shard: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
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
    return MaskedAdamW(groups, betas=(config.beta1, config.beta2), eps=config.eps, masks=by_param)
