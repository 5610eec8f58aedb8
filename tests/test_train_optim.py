"""MaskedAdamW: plain AdamW without masks; per-element learning rates with masks; exact freezing."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from sn29_growth.train.config import OptimizerConfig
from sn29_growth.train.optim import MaskedAdamW, build_optimizer
from sn29_growth.train.schedule import LearningRates


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(6, 5, generator=g)),
        torch.nn.Parameter(torch.randn(7, generator=g)),
    ]


def _grads(step, params):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) * (1 + step) for p in params]


def _run(opt, params, lrs, steps=5):
    for step in range(steps):
        for p, g in zip(params, _grads(step, params), strict=True):
            p.grad = g.clone()
        lrs(opt, step)
        opt.step()
    return [p.detach().clone() for p in params]


def _torch_adamw(lr_of_step, wd=0.1):
    params = _params()
    opt = torch.optim.AdamW(params, lr=0.0, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd, foreach=False)

    def set_lr(o, step):
        for group in o.param_groups:
            group["lr"] = lr_of_step(step)

    return _run(opt, params, set_lr)


def test_without_masks_it_is_adamw():
    params = _params()
    ours = MaskedAdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    got = _run(ours, params, lambda o, s: o.set_learning_rates(LearningRates(1e-2 * (s + 1), 0.0)))
    want = _torch_adamw(lambda s: 1e-2 * (s + 1))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_masked_elements_follow_their_own_learning_rate():
    """Element e moves exactly as an AdamW whose learning rate is new_lr (mask) or lr (elsewhere)."""
    params = _params()
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[4:] = True
    mask[0, 0] = True
    ours = MaskedAdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, masks={params[0]: mask})
    old_lr, new_lr = (lambda s: 1e-2), (lambda s: 1e-3 * (s + 1))
    got = _run(ours, params, lambda o, s: o.set_learning_rates(LearningRates(old_lr(s), new_lr(s))))
    as_old, as_new = _torch_adamw(old_lr), _torch_adamw(new_lr)
    torch.testing.assert_close(got[0][mask], as_new[0][mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[0][~mask], as_old[0][~mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], as_old[1], rtol=0, atol=1e-6)
    assert (got[0][mask] - as_old[0][mask]).abs().max() > 1e-3  # the two rates really differ


def test_gradient_scaling_would_not_warm_up():
    """Why the mask acts on the update: Adam's first step is ±lr whatever the gradient's scale."""
    for scale in (1.0, 1e-3):
        p = torch.nn.Parameter(torch.zeros(4))
        opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.0)
        p.grad = torch.tensor([1.0, -2.0, 3.0, -4.0]) * scale
        opt.step()
        torch.testing.assert_close(p.detach().abs(), torch.full((4,), 1e-2), rtol=1e-4, atol=0)


def test_zero_rate_leaves_old_elements_bit_identical():
    params = _params()
    before = [p.detach().clone() for p in params]
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[:, 3:] = True
    ours = MaskedAdamW(params, weight_decay=0.5, masks={params[0]: mask})
    got = _run(ours, params, lambda o, s: o.set_learning_rates(LearningRates(0.0, 1e-2)))
    assert torch.equal(got[0][~mask], before[0][~mask])
    assert torch.equal(got[1], before[1])  # a parameter with no new elements does not move either
    assert not torch.equal(got[0][mask], before[0][mask])
    assert float(ours.state[params[1]]["exp_avg_sq"].sum()) > 0  # frozen elements keep Adam statistics


def test_build_optimizer_groups_and_masks():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    masks = {"0.weight": torch.ones(3, 4, dtype=torch.bool)}
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.3), masks)
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4])] and decay["weight_decay"] == 0.3
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0  # bias, norm weight, norm bias
    assert torch.equal(opt.masks[model[0].weight], masks["0.weight"])
    assert opt.state  # created eagerly: state-dict helpers never take a dummy step
    with pytest.raises(ValueError, match="shape"):
        build_optimizer(model, OptimizerConfig(), {"0.weight": torch.ones(4, 3, dtype=torch.bool)})


# ------------------------------------------------------------------------ foreach against the old loop


class LoopAdamW(MaskedAdamW):
    """The per-parameter step MaskedAdamW had before its foreach kernels, kept as the reference."""

    @torch.no_grad()
    def step(self, closure=None):
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
                x, g = p, p.grad
                m, v = state["exp_avg"], state["exp_avg_sq"]
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


def _model_params(seed=0, dtype=torch.float32):
    """Matrices and vectors of several shapes, two of them masked, in two groups (decay / no decay)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 5), (5,), (3, 8), (8,), (8, 8), (4, 8)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in shapes]
    masks = {params[0]: torch.rand(8, 5, generator=g) < 0.3, params[3]: torch.rand(8, generator=g) < 0.5}
    groups = [
        {"params": [p for p in params if p.ndim == 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0},
    ]
    return params, groups, masks


def _schedule(step):  # old elements frozen for two steps, then both move at different rates
    return LearningRates(0.0 if step < 2 else 1e-2, 3e-3 * (step + 1))


def _train(cls, steps=6, dtype=torch.float32, **kwargs):
    params, groups, masks = _model_params(dtype=dtype)
    opt = cls(groups, betas=(0.9, 0.95), eps=1e-8, masks=masks, **kwargs)
    history = []
    for step in range(steps):
        for p, grad in zip(params, _grads(step, params), strict=True):
            p.grad = grad.to(dtype)
        params[-1].grad = None if step == 3 else params[-1].grad  # a parameter without a gradient
        opt.set_learning_rates(_schedule(step))
        opt.step()
        history.append([p.detach().clone() for p in params])
    return params, masks, opt, history


@pytest.mark.parametrize("foreach", [True, False])
def test_foreach_matches_the_per_parameter_loop(foreach):
    """Several steps, weight decay, masks, a frozen phase, a parameter skipping a step. Measured: equal
    to the bit on the CPU; the tolerance (float32 rounding) leaves room for CUDA's multi-tensor kernels."""
    *_, got = _train(MaskedAdamW, foreach=foreach)
    *_, want = _train(LoopAdamW)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=f"step {step + 1}")


def test_foreach_keeps_frozen_elements_bit_identical():
    params, masks, _, history = _train(MaskedAdamW, foreach=True)
    start, _, _ = _model_params()
    for i, p in enumerate(params):
        mask = masks.get(p)
        frozen = ~mask if mask is not None else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(history[1][i][frozen], start[i].detach()[frozen])  # after 2 new-only steps
        if mask is not None:
            assert not torch.equal(history[1][i][mask], start[i].detach()[mask])
        assert not torch.equal(history[-1][i], start[i].detach())


def test_bfloat16_parameters_keep_float32_moments_and_frozen_elements():
    params, masks, opt, history = _train(MaskedAdamW, dtype=torch.bfloat16, foreach=True)
    start, _, _ = _model_params(dtype=torch.bfloat16)
    reference, *_ = _train(MaskedAdamW, dtype=torch.float32)
    for i, p in enumerate(params):
        assert p.dtype == torch.bfloat16 and opt.state[p]["exp_avg"].dtype == torch.float32
        mask = masks.get(p)
        frozen = ~mask if mask is not None else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(history[1][i][frozen], start[i].detach()[frozen])
        # bf16 storage rounds each step's result (relative 2^-8): the trajectory stays near fp32's
        torch.testing.assert_close(p.float(), reference[i].detach(), rtol=2e-2, atol=2e-2)

    # a resumed bf16 run keeps float32 moments (the base class would cast them to bfloat16)
    saved = copy.deepcopy(opt.state_dict())
    fresh_params, groups, fresh_masks = _model_params(dtype=torch.bfloat16)
    fresh = MaskedAdamW(groups, masks=fresh_masks)
    fresh.load_state_dict(saved)
    for p, q in zip(params, fresh_params, strict=True):
        assert fresh.state[q]["exp_avg_sq"].dtype == torch.float32
        assert torch.equal(fresh.state[q]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def test_state_dict_format_is_unchanged_and_resumes():
    """A state saved by the per-parameter optimizer resumes in the foreach one, step for step."""
    params, groups, masks = _model_params()
    old = LoopAdamW(groups, masks=masks)
    for step in range(3):
        for p, grad in zip(params, _grads(step, params), strict=True):
            p.grad = grad
        old.set_learning_rates(_schedule(step))
        old.step()
    saved = copy.deepcopy(old.state_dict())
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    new_params, new_groups, new_masks = _model_params()
    with torch.no_grad():
        for a, b in zip(new_params, params, strict=True):
            a.copy_(b)
    new = MaskedAdamW(new_groups, masks=new_masks, foreach=True)
    new.load_state_dict(saved)
    assert new.state_dict()["state"].keys() == saved["state"].keys()
    for step in range(3, 6):
        for ps in (params, new_params):
            for p, grad in zip(ps, _grads(step, ps), strict=True):
                p.grad = grad
        for opt in (old, new):
            opt.set_learning_rates(_schedule(step))
            opt.step()
    for a, b in zip(params, new_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_foreach_batches_are_capped(monkeypatch):
    """Batches split at MAX_BATCH_ELEMENTS (bounded temporaries) compute the same steps."""
    import sn29_growth.train.optim as optim

    *_, whole = _train(MaskedAdamW, foreach=True)
    monkeypatch.setattr(optim, "MAX_BATCH_ELEMENTS", 50)
    params, _, opt, split = _train(MaskedAdamW, foreach=True)
    assert len(opt._batches(opt.param_groups[0])) > 2  # 8x5 | 3x8 | 8x8 | 4x8: no two fit in 50
    for a, b in zip(whole, split, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
