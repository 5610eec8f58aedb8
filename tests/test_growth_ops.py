"""Pure operators and plan resolution: index maps, placements, noise, the norm_divisor fold, specs."""

from __future__ import annotations

import math

import pytest
import torch

from sn29_growth.arch import LLAMA, PHI3, Shape
from sn29_growth.growth import ops
from sn29_growth.growth.resolve import GrowthError, layer_sources, resolve_plan
from sn29_growth.growth.spec import GrowthSpec, GrowthStep, load_recipe
from sn29_growth.norm import DivisorRMSNorm


@pytest.mark.parametrize(
    ("kv", "group", "kv2", "group2"), [(2, 4, 2, 8), (2, 4, 4, 4), (2, 4, 3, 6), (4, 1, 8, 2)]
)
def test_query_head_map_keeps_every_old_head_on_its_kv_head(kv, group, kv2, group2):
    src = ops.query_head_map(kv, group, kv2, group2)
    assert src.numel() == kv2 * group2
    old = {int(h): i for i, h in enumerate(src) if h >= 0}
    assert sorted(old) == list(range(kv * group))
    for h, new in old.items():
        assert new // group2 == h // group  # HF pairs query head h with kv head h // group
    assert int((src < 0).sum()) == kv2 * group2 - kv * group


def test_kv_repeat_map_keeps_query_heads_on_copies_of_their_kv_head():
    heads, kv, r = 8, 2, 2
    kv_src = ops.kv_repeat_map(kv, r)  # new kv j holds old kv kv_src[j]
    group2 = heads // (kv * r)
    for h in range(heads):
        assert kv_src[h // group2] == h // (heads // kv)


def test_expand_heads_and_segmented_map():
    rows = ops.expand_heads(torch.tensor([1, -1, 0]), 2)
    assert rows.tolist() == [2, 3, -1, -1, 0, 1]
    fused = ops.segmented_map([ops.pad_map(2, 3), torch.arange(2)], [2, 2])
    assert fused.tolist() == [0, 1, -1, 2, 3]


@pytest.mark.parametrize(
    ("layers", "k", "expected"), [(20, 4, [4, 9, 14, 19]), (2, 3, [0, 1, 1]), (4, 2, [1, 3])]
)
def test_interleaved_insertions_spread_evenly(layers, k, expected):
    assert ops.interleaved_insertions(layers, k) == expected


def test_layer_sources_placements():
    inter = layer_sources(4, 6, "interleaved", ())
    assert [(s.source, s.inserted) for s in inter] == [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)]
    app = layer_sources(3, 5, "append", ())
    assert [s.inserted for s in app] == [False, False, False, True, True]
    assert {s.source for s in app if s.inserted} == {2}
    pos = layer_sources(3, 5, "positions", (0, 3))
    assert [(s.source, s.inserted) for s in pos] == [(0, 1), (0, 0), (1, 0), (1, 1), (2, 0)]
    with pytest.raises(GrowthError, match="--layer-positions"):
        layer_sources(3, 5, "positions", (0,))


def test_zero_sum_noise_sums_to_zero_across_copies():
    g = torch.Generator().manual_seed(0)
    n = ops.zero_sum_noise((6, 12), 1, 3, gen=g, scale=0.5)
    assert n.abs().max() > 0.01
    torch.testing.assert_close(n.unflatten(1, (3, 4)).sum(1), torch.zeros(6, 4), atol=1e-6, rtol=0)


def test_gather_fill_rules():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    src = ops.pad_map(2, 4)
    assert ops.gather(t, 0, src, "zero")[2:].abs().sum() == 0
    assert (ops.gather(t, 0, src, "one")[2:] == 1).all()
    mean = ops.gather(t, 0, src, "mean")
    torch.testing.assert_close(mean[3], t.mean(0))
    rnd = ops.gather(t, 1, ops.pad_map(3, 5), "random", gen=torch.Generator().manual_seed(1), std=2.0)
    assert torch.equal(rnd[:, :3], t) and rnd[:, 3:].abs().min() > 0


def test_generator_is_deterministic_and_name_dependent():
    a = torch.randn(4, generator=ops.generator(0, 1, "x"))
    assert torch.equal(a, torch.randn(4, generator=ops.generator(0, 1, "x")))
    assert not torch.equal(a, torch.randn(4, generator=ops.generator(0, 1, "y")))


@pytest.mark.parametrize(("d", "divisor"), [(96, 64), (128, 64), (64, 64.0), (100, 37)])
def test_fold_divisor_into_gains_is_exact(d, divisor):
    torch.manual_seed(0)
    gain = torch.randn(d)
    x = torch.randn(5, d) * 3
    eps = 1e-5
    div = DivisorRMSNorm(d, eps=eps, norm_divisor=divisor)
    div.weight.data.copy_(gain)
    folded = ops.fold_divisor_into_gains(gain, divisor, d)
    eps2 = ops.fold_divisor_into_eps(eps, divisor, d)
    stock = folded * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps2)
    torch.testing.assert_close(div(x), stock, rtol=1e-5, atol=1e-6)
    assert eps2 == pytest.approx(eps * divisor / d)
    assert math.isclose(float(folded[0] / gain[0]), math.sqrt(divisor / d), rel_tol=1e-6)


def _cfg(**kw):
    base = dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=1024,
        rms_norm_eps=1e-5,
    )
    return base | kw


def test_plan_pins_head_dim_and_sets_divisor():
    plan = resolve_plan(
        GrowthSpec((GrowthStep(hidden_size=128),)), _cfg(head_dim=None, num_attention_heads=4)
    )
    cfg = plan.output_config()
    assert cfg["head_dim"] == 16 and cfg["hidden_size"] == 128 and cfg["norm_divisor"] == 64
    kept = resolve_plan(GrowthSpec((GrowthStep(hidden_size=128),)), _cfg(norm_divisor=48))
    assert kept.output_config()["norm_divisor"] == 48
    stock = resolve_plan(GrowthSpec((GrowthStep(hidden_size=128, hidden_method="stock"),)), _cfg())
    assert "norm_divisor" not in stock.output_config()
    assert stock.output_config()["rms_norm_eps"] == pytest.approx(1e-5 * 64 / 128)
    clone = resolve_plan(
        GrowthSpec((GrowthStep(hidden_size=128, hidden_method="clone"),)), _cfg(norm_divisor=48)
    )
    c = clone.output_config()
    assert (c["norm_divisor"], c["num_attention_heads"], c["num_key_value_heads"]) == (96, 16, 4)


@pytest.mark.parametrize(
    ("step", "flag"),
    [
        (dict(hidden_size=32), "--hidden-size"),
        (dict(intermediate_size=100), "--intermediate-size"),
        (dict(num_hidden_layers=1), "--num-layers"),
        (dict(vocab_size=1000), "--vocab-size"),
        (dict(hidden_size=68), "--hidden-size"),  # not a multiple of head_dim 8
        (dict(num_key_value_heads=3, num_attention_heads=8), "--num-key-value-heads"),
        (dict(num_attention_heads=12), "--num-attention-heads"),  # 64 % 12
        (dict(hidden_size=96, hidden_method="clone"), "--hidden-method clone"),
        (dict(hidden_size=128, hidden_method="clone", num_attention_heads=8), "--num-attention-heads"),
    ],
)
def test_bad_growth_names_the_flag(step, flag):
    with pytest.raises(GrowthError, match=flag):
        resolve_plan(GrowthSpec((GrowthStep(**step),)), _cfg())


def test_unsupported_architecture_is_rejected():
    with pytest.raises(ValueError, match="not supported"):
        resolve_plan(GrowthSpec((GrowthStep(hidden_size=128),)), _cfg(model_type="gpt2"))


def test_spec_validation_and_recipe_round_trip(tmp_path):
    with pytest.raises(ValueError, match="hidden_method"):
        GrowthStep(hidden_method="magic")
    with pytest.raises(ValueError, match="init"):
        GrowthStep(init="ones")
    with pytest.raises(ValueError, match="unknown growth step key"):
        GrowthStep.from_dict({"hidden": 3})
    (tmp_path / "r.yaml").write_text(
        "seed: 7\ndtype: bf16\nsteps:\n  - {hidden_size: 96, hidden_method: stock}\n  - {num_layers: 4, layer_positions: [1, 3]}\n"
    )
    spec = load_recipe(tmp_path / "r.yaml")
    assert spec.seed == 7 and spec.dtype == "bfloat16"
    assert spec.steps[1].num_hidden_layers == 4 and spec.steps[1].layer_placement == "positions"
    assert GrowthSpec.from_dict(spec.to_dict()) == spec
    (tmp_path / "bad.yaml").write_text("steps: []\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_recipe(tmp_path / "bad.yaml")


def test_arch_tables_describe_fused_phi3_and_tied_llama():
    shape = Shape.from_config(_cfg(model_type="phi3", architectures=["Phi3ForCausalLM"]))
    qkv, _ = PHI3.lookup("model.layers.3.self_attn.qkv_proj.weight")
    assert qkv.axes[0].roles == ("q", "kv", "kv")
    assert PHI3.tensor_shape(qkv, shape) == (64 + 2 * 16, 64)
    tied = Shape.from_config(_cfg(tie_word_embeddings=True))
    assert "lm_head.weight" not in LLAMA.names(tied)
    assert "lm_head.weight" in LLAMA.names(Shape.from_config(_cfg()))


def test_low_precision_work_dtype_is_bit_identical_to_fp32():
    from sn29_growth.growth.engine import grow_tensor, work_dtype

    cfg = _cfg(dtype="bfloat16")
    step = GrowthStep(hidden_size=128, num_attention_heads=16, num_key_value_heads=4, vocab_size=1100)
    fast_plan = resolve_plan(GrowthSpec((step,)), cfg, source_dtype="bfloat16")  # works in bf16
    slow_plan = resolve_plan(GrowthSpec((step,), dtype="bfloat16"), cfg, source_dtype="float32")  # fp32
    g = torch.Generator().manual_seed(0)
    for name, shape in [
        ("model.embed_tokens.weight", (1024, 64)),
        ("model.layers.1.self_attn.q_proj.weight", (64, 64)),
    ]:
        t = torch.randn(shape, generator=g).bfloat16()
        entry = fast_plan.arch.lookup(name)[0]
        assert work_dtype(fast_plan, entry, t.dtype) == torch.bfloat16
        assert work_dtype(slow_plan, entry, torch.float32) == torch.float32
        fast = grow_tensor(name, t, fast_plan)[name]
        slow = grow_tensor(name, t.float(), slow_plan)[name]  # fp32 work, one cast at the end
        assert fast.dtype == slow.dtype == torch.bfloat16 and torch.equal(fast, slow)


def test_true_runs():
    m = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    assert ops.true_runs(m) == [(1, 3), (4, 5), (7, 8)]
    assert ops.true_runs(torch.zeros(3, dtype=torch.bool)) == []
