"""Shared helpers of the growth tests: cached tiny models, in-memory growth, losses, the CLI."""

from __future__ import annotations

import argparse
import functools
import math

import torch

from sn29_growth.growth.engine import grow_model
from sn29_growth.growth.spec import GrowthSpec, GrowthStep
from sn29_growth.lm import corpus_loss

VARIANTS = ("llama-mha", "llama-gqa", "llama-tied", "llama-bias", "phi3")


_CACHED_MODELS: list = []


@functools.cache
def tiny(variant: str, seed: int = 0):
    """A tiny model with a non-trivial function (init std 0.1), built once per variant (do not modify)."""
    from sn29_growth.tiny import build_tiny

    model = build_tiny(variant, seed=seed, init_std=0.1)
    _CACHED_MODELS.append(model)
    return model


def grow(model, steps=None, *, seed: int = 0, off_network: bool = True, **step):
    """Grow ``model`` in memory with one step (keywords) or several (``steps``).

    The operator tests check the maths of every dimension alone, including shapes the network cannot
    load (more heads at the same width), so the network-shape rule is off unless asked for.
    """
    steps = steps or (GrowthStep(**step),)
    return grow_model(model, GrowthSpec(tuple(steps), seed=seed, off_network=off_network))


def loss(model, ids) -> float:
    return corpus_loss(model, ids).mean_token_loss


_SOURCE_OUTPUTS: dict[tuple[int, int], tuple[float, list[torch.Tensor]]] = {}


def _outputs(model, ids, cache: bool = False) -> tuple[float, list[torch.Tensor]]:
    from sn29_growth.growth.verify import _loss_and_logits

    key = (id(model), sum(int(i.numel()) for i in ids))
    if cache and key in _SOURCE_OUTPUTS:
        return _SOURCE_OUTPUTS[key]
    out = _loss_and_logits(model, ids)
    if cache:
        _SOURCE_OUTPUTS[key] = out
    return out


def assert_same_function(src, grown, ids, *, vocab_growth: int = 0, loss_tol=1e-5, logit_tol=1e-4):
    """fp32 loss within ``loss_tol`` (or within log(1+k/V) for vocab growth) and logits within ``logit_tol``."""
    before, la = _outputs(src, ids, cache=src in _CACHED_MODELS)
    after, lb = _outputs(grown, ids)
    old_vocab = src.config.vocab_size
    if vocab_growth:
        bound = math.log1p(vocab_growth / old_vocab)
        assert 0 < after - before <= bound + loss_tol, (before, after, bound)
    else:
        assert abs(after - before) <= loss_tol, (before, after)
    diff = max((a[:, :old_vocab] - b[:, :old_vocab]).abs().max().item() for a, b in zip(la, lb, strict=True))
    assert diff <= logit_tol, diff
    return after - before


def cli(argv: list[str]) -> int:
    """Run ``sn29 grow``/``sn29 plan`` through their own parsers (as the ``sn29`` CLI does)."""
    from sn29_growth.commands import grow as grow_cmd
    from sn29_growth.commands import plan as plan_cmd

    parser = argparse.ArgumentParser(prog="sn29")
    sub = parser.add_subparsers(dest="command", required=True)
    grow_cmd.register(sub)
    plan_cmd.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
