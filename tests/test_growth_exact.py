"""Function preservation: every dimension × every tiny variant keeps the fp32 loss (vocab: within log(1+k/V))."""

from __future__ import annotations

import math

import pytest
import torch
from growth_helpers import VARIANTS, assert_same_function, grow, loss, tiny

from sn29_growth.growth.spec import GrowthStep


def _dims(model) -> dict[str, dict]:
    c = model.config
    h, k = c.num_attention_heads, c.num_key_value_heads
    dims = {
        "hidden": dict(hidden_size=96),
        "intermediate": dict(intermediate_size=256),
        "layers": dict(num_hidden_layers=4),
        "heads": dict(num_attention_heads=2 * h),  # new query heads inside each kv group
        "kv_heads": dict(num_attention_heads=2 * h, num_key_value_heads=2 * k),  # new kv groups appended
        "vocab": dict(vocab_size=1100),
        "all": dict(
            hidden_size=128,
            intermediate_size=320,
            num_hidden_layers=3,
            num_attention_heads=2 * h,
            num_key_value_heads=2 * k,
            vocab_size=1056,
        ),
    }
    if h // k > 1:
        dims["kv_split"] = dict(num_key_value_heads=2 * k)  # query groups halved: kv heads duplicated
    return dims


CASES = [(v, d) for v in VARIANTS for d in _dims(tiny(v))]


@pytest.mark.parametrize(("variant", "dim"), CASES)
def test_growth_preserves_loss(variant, dim, held_out_ids):
    src = tiny(variant)
    step = _dims(src)[dim]
    grown, plan = grow(src, **step)
    k = step.get("vocab_size", src.config.vocab_size) - src.config.vocab_size
    assert_same_function(src, grown, held_out_ids, vocab_growth=k)
    assert grown.config.head_dim == src.config.head_dim  # pinned
    for key, value in step.items():
        assert getattr(grown.config, key) == value
    assert plan.target.tie_word_embeddings == src.config.tie_word_embeddings


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", ["divisor", "stock", "clone"])
def test_hidden_methods_preserve_loss(variant, method, held_out_ids):
    src = tiny(variant)
    grown, plan = grow(src, hidden_size=128, hidden_method=method)
    assert_same_function(src, grown, held_out_ids)
    if method == "divisor":
        assert grown.config.norm_divisor == 64
    else:
        assert grown.config.norm_divisor is None  # runs on stock transformers
    if method == "stock":
        assert grown.config.rms_norm_eps == pytest.approx(src.config.rms_norm_eps * 64 / 128)
    if method == "clone":
        assert grown.config.num_attention_heads == 2 * src.config.num_attention_heads
        assert grown.config.num_key_value_heads == 2 * src.config.num_key_value_heads


def test_divisor_is_kept_and_clone_multiplies_it(held_out_ids):
    src = tiny("llama-gqa")
    first = GrowthStep(hidden_size=96)
    kept, _ = grow(src, (first, GrowthStep(hidden_size=128)))
    assert kept.config.norm_divisor == 64
    assert_same_function(src, kept, held_out_ids)
    cloned, _ = grow(src, (first, GrowthStep(hidden_size=192, hidden_method="clone", num_attention_heads=16)))
    assert cloned.config.norm_divisor == 128
    assert_same_function(src, cloned, held_out_ids)
    folded, _ = grow(src, (first, GrowthStep(hidden_method="stock", intermediate_size=192)))
    assert folded.config.norm_divisor is None
    assert_same_function(src, folded, held_out_ids)


def test_clone_with_mlp_tiling_and_three_copies(held_out_ids):
    src = tiny("llama-bias")
    grown, plan = grow(src, hidden_size=192, intermediate_size=480, hidden_method="clone")
    assert plan.steps[0].clone == 3 and plan.steps[0].clone_inter
    assert_same_function(src, grown, held_out_ids)


def test_gqa_head_mapping_is_preserved_and_naive_append_is_not(held_out_ids):
    src = tiny("llama-gqa")  # 8 query heads on 2 kv heads
    grown, _ = grow(src, num_attention_heads=16)
    hd, g2 = 8, 8
    q_old = src.model.layers[0].self_attn.q_proj.weight.view(8, hd, -1)
    q_new = grown.model.layers[0].self_attn.q_proj.weight.view(16, hd, -1)
    for h in range(8):
        j, p = divmod(h, 4)
        assert torch.equal(q_new[j * g2 + p], q_old[h])  # old head h stays on kv head j
    # Appending the 8 new heads at the end instead re-maps old heads to other kv heads: not exact.
    naive = grow(src, num_attention_heads=16)[0]
    with torch.no_grad():
        for old_layer, layer in zip(src.model.layers, naive.model.layers, strict=True):
            q = layer.self_attn.q_proj.weight
            o = layer.self_attn.o_proj.weight
            q.zero_()
            o.zero_()
            q[: 8 * hd] = old_layer.self_attn.q_proj.weight
            o[:, : 8 * hd] = old_layer.self_attn.o_proj.weight
    assert abs(loss(naive, held_out_ids) - loss(src, held_out_ids)) > 1e-3


def test_phi3_fused_projections_grow_per_segment(held_out_ids):
    src = tiny("phi3")  # 4 heads × 16, MLP 160
    grown, _ = grow(src, intermediate_size=256, num_attention_heads=8, num_key_value_heads=8)
    old = src.model.layers[1]
    new = grown.model.layers[1]
    gu_old, gu_new = old.mlp.gate_up_proj.weight, new.mlp.gate_up_proj.weight
    assert torch.equal(gu_new[:160], gu_old[:160])  # [G; G_new; U; U_new]
    assert torch.equal(gu_new[256 : 256 + 160], gu_old[160:])
    qkv_old, qkv_new = old.self_attn.qkv_proj.weight, new.self_attn.qkv_proj.weight
    assert torch.equal(qkv_new[:64], qkv_old[:64])  # q of the old heads (MHA: groups of one)
    assert torch.equal(qkv_new[128 : 128 + 64], qkv_old[64:128])  # k
    assert torch.equal(qkv_new[256 : 256 + 64], qkv_old[128:])  # v
    assert new.mlp.down_proj.weight[:, 160:].abs().sum() == 0
    assert_same_function(src, grown, held_out_ids)
    # A plain append of the new MLP rows after [G; U] reads the wrong halves: not exact.
    broken = grow(src, intermediate_size=256)[0]
    with torch.no_grad():
        for o, b in zip(src.model.layers, broken.model.layers, strict=True):
            w = b.mlp.gate_up_proj.weight
            w.copy_(torch.cat([o.mlp.gate_up_proj.weight, w[256 : 256 + 96], w[256 + 160 :]]))
    assert abs(loss(broken, held_out_ids) - loss(src, held_out_ids)) > 1e-3


def test_inserted_blocks_are_identity_and_zero_biases(held_out_ids):
    src = tiny("llama-bias")
    grown, plan = grow(src, num_hidden_layers=4)
    inserted = [i for i, ls in enumerate(plan.steps[0].layers) if ls.inserted]
    assert inserted == [1, 3]
    for i in inserted:
        blk, nb = grown.model.layers[i], grown.model.layers[i - 1]
        for name in ("o_proj", "down_proj"):
            mod = getattr(blk.self_attn if name == "o_proj" else blk.mlp, name)
            assert mod.weight.abs().sum() == 0 and mod.bias.abs().sum() == 0
        assert torch.equal(blk.self_attn.q_proj.weight, nb.self_attn.q_proj.weight)
        assert torch.equal(blk.mlp.up_proj.bias, nb.mlp.up_proj.bias)
    assert_same_function(src, grown, held_out_ids, loss_tol=0, logit_tol=0)  # depth is bit-exact


def test_layer_positions_and_append(held_out_ids):
    src = tiny("llama-mha")
    for step in (dict(layer_placement="append"), dict(layer_placement="positions", layer_positions=(0, 2))):
        grown, _ = grow(src, num_hidden_layers=4, **step)
        assert_same_function(src, grown, held_out_ids)


def test_vocab_growth_uses_mean_rows_and_stays_in_bound(held_out_ids):
    src = tiny("llama-tied")
    grown, _ = grow(src, vocab_size=2048)
    emb = grown.model.embed_tokens.weight
    torch.testing.assert_close(emb[1500], src.model.embed_tokens.weight.mean(0))
    delta = assert_same_function(src, grown, held_out_ids, vocab_growth=1024)
    assert delta <= math.log(2)


def test_growth_is_deterministic_and_seeded():
    src = tiny("llama-gqa")
    a, _ = grow(src, hidden_size=96, seed=1)
    b, _ = grow(src, hidden_size=96, seed=1)
    c, _ = grow(src, hidden_size=96, seed=2)
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    new_cols = wa[:, 64:].detach()
    ref = src.model.layers[0].self_attn.q_proj.weight.detach()
    assert 0.5 < float(new_cols.std() / ref.std()) < 2  # the tensor's own scale


def test_multi_step_equals_combined_function(held_out_ids):
    src = tiny("phi3")
    steps = (
        GrowthStep(hidden_size=96, num_attention_heads=6, num_key_value_heads=6),
        GrowthStep(num_hidden_layers=3),
        GrowthStep(intermediate_size=256, hidden_method="stock"),
    )
    grown, plan = grow(src, steps)
    assert len(plan.steps) == 3 and grown.config.norm_divisor is None
    assert_same_function(src, grown, held_out_ids)
