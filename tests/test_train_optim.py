"""MaskedAdamW: plain AdamW without masks; per-element learning rates with masks; exact freezing."""

from __future__ import annotations

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
