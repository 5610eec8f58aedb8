"""Trainability: with ``init: trainable`` no new slice is stuck after two AdamW steps; with zeros they are."""

from __future__ import annotations

import copy

import pytest
import torch
from growth_helpers import VARIANTS, grow, tiny

from sn29_growth.growth.engine import new_masks
from sn29_growth.growth.verify import corpus_sequences, probe_trainability


@pytest.fixture(scope="module")
def train_ids(tokenizer):
    return corpus_sequences(tokenizer, split="train", samples=3, max_len=96)


def _dims(model) -> dict[str, dict]:
    h, k = model.config.num_attention_heads, model.config.num_key_value_heads
    return {
        "hidden": dict(hidden_size=96),
        "intermediate": dict(intermediate_size=256),
        "layers": dict(num_hidden_layers=3),
        "heads": dict(num_attention_heads=2 * h),
        "kv_heads": dict(num_attention_heads=2 * h, num_key_value_heads=2 * k),
        "vocab": dict(vocab_size=1100),
    }


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dim", ["hidden", "intermediate", "layers", "heads", "kv_heads", "vocab"])
def test_trainable_init_leaves_nothing_stuck(variant, dim, train_ids):
    grown, plan = grow(tiny(variant), **_dims(tiny(variant))[dim])
    result = probe_trainability(grown, new_masks(plan), train_ids, steps=2)
    assert result.lines_checked > 0
    assert result.ok, [str(s) for s in result.stuck]


@pytest.mark.parametrize(
    ("variant", "dim", "expected"),
    [
        (
            "llama-gqa",
            "hidden",
            {
                "model.embed_tokens.weight",
                "self_attn.q_proj.weight",
                "mlp.down_proj.weight",
                "lm_head.weight",
            },
        ),
        (
            "llama-tied",
            "hidden",
            {"model.embed_tokens.weight", "model.norm.weight", "input_layernorm.weight"},
        ),
        ("phi3", "intermediate", {"mlp.gate_up_proj.weight", "mlp.down_proj.weight"}),
        ("llama-bias", "layers", {"self_attn.o_proj.weight", "mlp.up_proj.bias", "mlp.down_proj.weight"}),
        (
            "llama-mha",
            "kv_heads",
            {"self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"},
        ),
    ],
)
def test_zeros_init_stuck_slices_are_detected(variant, dim, expected, train_ids):
    grown, plan = grow(tiny(variant), init="zeros", **_dims(tiny(variant))[dim])
    result = probe_trainability(grown, new_masks(plan), train_ids, steps=2)
    assert not result.ok
    assert expected <= _names(result)


def _names(result) -> set[str]:
    """Stuck tensor names with the block index dropped (``self_attn.q_proj.weight``)."""
    out = set()
    for s in result.stuck:
        name = s.tensor.removeprefix("model.layers.")
        out.add(name.split(".", 1)[1] if name[0].isdigit() else name)
    return out


def test_zeros_and_trainable_start_at_the_same_loss(held_out_ids):
    from growth_helpers import loss

    src = tiny("llama-gqa")
    a, _ = grow(src, hidden_size=96, intermediate_size=256, init="zeros")
    b, _ = grow(src, hidden_size=96, intermediate_size=256)
    assert abs(loss(a, held_out_ids) - loss(b, held_out_ids)) < 1e-5
    assert a.model.layers[0].mlp.gate_proj.weight[160:].abs().sum() == 0
    assert b.model.layers[0].mlp.gate_proj.weight[160:].abs().sum() > 0


def _train(model, ids, steps=2):
    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        for x in ids:
            torch.nn.functional.cross_entropy(model(input_ids=x[None]).logits[0, :-1], x[1:]).backward()
        opt.step()
    return model


@pytest.mark.parametrize("variant", ["llama-tied", "phi3"])
def test_clone_noise_breaks_the_symmetry_of_copies(variant, train_ids):
    src = tiny(variant)
    locked, _ = grow(src, hidden_size=128, hidden_method="clone", noise=0.0)
    noisy, _ = grow(src, hidden_size=128, hidden_method="clone")
    e0 = _train(locked, train_ids).model.embed_tokens.weight.detach()
    e1 = _train(noisy, train_ids).model.embed_tokens.weight.detach()
    assert torch.equal(e0[:, :64], e0[:, 64:])  # without noise the two copies stay identical forever
    assert (e1[:, :64] - e1[:, 64:]).abs().max() > 1e-5
