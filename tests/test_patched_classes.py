"""The patched Llama/Phi3 classes: stock-identical without norm_divisor, sum(x²)/D with it."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

import transformers_llama
import transformers_phi3
from sn29_growth.norm import DivisorRMSNorm, install_norm_divisor
from sn29_growth.tiny import VARIANTS, build_tiny, tiny_config

STOCK = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
}


def _ids(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 1024, (2, n), generator=g)


def test_register_is_idempotent_and_resolves_auto_classes():
    for _ in range(3):
        transformers_llama.register()
        transformers_phi3.register()
    assert transformers_llama.is_registered() and transformers_phi3.is_registered()
    cfg = AutoConfig.for_model(
        "llama", hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=50
    )
    assert type(cfg) is transformers_llama.LlamaConfig
    assert type(AutoModelForCausalLM.from_config(cfg)) is transformers_llama.LlamaForCausalLM
    cfg3 = AutoConfig.for_model(
        "phi3",
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=50,
        pad_token_id=0,
        eos_token_id=0,
        bos_token_id=1,
    )
    assert type(AutoModelForCausalLM.from_config(cfg3)) is transformers_phi3.Phi3ForCausalLM
    assert type(AutoModel.from_config(cfg3)) is transformers_phi3.Phi3Model


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (transformers_llama, ("LlamaConfig", "LlamaModel", "LlamaForCausalLM")),
        (transformers_phi3, ("Phi3Config", "Phi3Model", "Phi3ForCausalLM")),
    ],
)
def test_classes_are_declared_subclasses_of_the_installed_ones(module, names):
    for name in names:
        cls = getattr(module, name)
        # Declared in the module under the stock name, directly on the installed class (not a copy).
        assert (cls.__module__, cls.__qualname__) == (module.__name__, name)
        assert cls.__bases__ == (getattr(transformers, name),)
        assert "norm_divisor" in cls.__doc__


def test_is_registered_sees_a_later_registration_of_the_stock_classes():
    try:
        AutoModelForCausalLM.register(transformers.LlamaConfig, transformers.LlamaForCausalLM, exist_ok=True)
        assert transformers_llama.is_registered()  # our config still maps to our model class
        AutoConfig.register("llama", transformers.LlamaConfig, exist_ok=True)
        assert not transformers_llama.is_registered()
        assert transformers_phi3.is_registered()
    finally:
        transformers_llama.register()
    assert transformers_llama.is_registered()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("norm_divisor", [None, 24])
def test_same_seed_gives_the_stock_state_dict(variant, norm_divisor):
    ours_cfg = tiny_config(variant, norm_divisor=norm_divisor)
    stock_cfg_cls, stock_cls = STOCK[ours_cfg.model_type]
    stock_cfg = stock_cfg_cls(**{k: v for k, v in ours_cfg.to_dict().items() if k != "norm_divisor"})
    torch.manual_seed(5)
    ours = AutoModelForCausalLM.from_config(ours_cfg)
    torch.manual_seed(5)
    stock = stock_cls(stock_cfg)
    a, b = ours.state_dict(), stock.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("variant", ["llama-tied", "phi3"])
def test_config_written_gains_no_class_names(variant, tmp_path):
    ours = build_tiny(variant, seed=6)
    stock_cfg_cls, stock_cls = STOCK[ours.config.model_type]
    stock_cfg = stock_cfg_cls(**{k: v for k, v in ours.config.to_dict().items() if k != "norm_divisor"})
    ours.config.save_pretrained(tmp_path / "ours")
    stock_cls(stock_cfg).config.save_pretrained(tmp_path / "stock")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    expected = json.loads((tmp_path / "stock" / "config.json").read_text())
    assert written.pop("norm_divisor", None) is None  # save_pretrained writes the unset field as null
    assert written == expected and "auto_map" not in written
    divisor = build_tiny(variant, seed=6, norm_divisor=32)
    divisor.config.save_pretrained(tmp_path / "divisor")
    written = json.loads((tmp_path / "divisor" / "config.json").read_text())
    assert written.pop("norm_divisor") == 32 and written == expected


def test_install_matches_norms_by_type_not_by_name():
    class Renamed(transformers.models.llama.modeling_llama.LlamaRMSNorm):
        pass

    class LlamaRMSNorm(nn.Module):  # same name, not the installed class
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4))
            self.variance_epsilon = 1e-6

    holder = nn.ModuleDict({"sub": Renamed(4), "phi": transformers.models.phi3.modeling_phi3.Phi3RMSNorm(4)})
    holder["lookalike"] = LlamaRMSNorm()
    weight = holder["sub"].weight
    assert install_norm_divisor(holder, 2) == 2
    assert isinstance(holder["sub"], DivisorRMSNorm) and holder["sub"].weight is weight
    assert isinstance(holder["phi"], DivisorRMSNorm)
    assert type(holder["lookalike"]) is LlamaRMSNorm


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_without_norm_divisor_logits_are_bit_identical_to_stock(variant, dtype):
    ours = build_tiny(variant, seed=1, init_std=0.1).to(dtype)
    family = ours.config.model_type
    stock_cfg_cls, stock_cls = STOCK[family]
    stock_cfg = stock_cfg_cls(**{k: v for k, v in ours.config.to_dict().items() if k != "norm_divisor"})
    stock = stock_cls(stock_cfg).to(dtype).eval()
    stock.load_state_dict(ours.state_dict())
    assert not any(isinstance(m, DivisorRMSNorm) for m in ours.modules())
    with torch.no_grad():
        a = ours(_ids()).logits
        b = stock(_ids()).logits
    assert torch.equal(a, b)


@pytest.mark.parametrize("variant", ["llama-gqa", "llama-tied", "phi3"])
def test_norm_divisor_makes_every_rmsnorm_sum_over_divisor(variant):
    model = build_tiny(variant, seed=2, norm_divisor=24)
    norms = [m for m in model.modules() if isinstance(m, DivisorRMSNorm)]
    assert len(norms) == 2 * model.config.num_hidden_layers + 1
    x = torch.randn(3, 5, model.config.hidden_size)
    for norm in norms:
        expected = norm.weight * (x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) / 24 + norm.variance_epsilon))
        torch.testing.assert_close(norm(x), expected, rtol=1e-6, atol=1e-6)
    # The divisor changes the function (hidden 64 != 24).
    stock = build_tiny(variant, seed=2)
    with torch.no_grad():
        assert not torch.allclose(model(_ids()).logits, stock(_ids()).logits, atol=1e-3)


@pytest.mark.parametrize("variant", ["llama-gqa", "phi3"])
def test_norm_divisor_equal_to_hidden_size_is_the_stock_mean(variant):
    stock = build_tiny(variant, seed=3, init_std=0.1)
    divisor = build_tiny(variant, seed=3, init_std=0.1, norm_divisor=stock.config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(divisor(_ids()).logits, stock(_ids()).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["llama-mha", "phi3"])
def test_checkpoint_keeps_sn29_format_and_reloads_identically(variant, save_tiny):
    model = build_tiny(variant, seed=4, init_std=0.1, norm_divisor=48)
    path = save_tiny(model)
    cfg = json.loads((path / "config.json").read_text())
    family = model.config.model_type
    assert cfg["model_type"] == family
    assert cfg["architectures"] == ["LlamaForCausalLM" if family == "llama" else "Phi3ForCausalLM"]
    assert cfg["norm_divisor"] == 48
    reloaded = AutoModelForCausalLM.from_pretrained(path).eval()
    assert reloaded.config.norm_divisor == 48
    with torch.no_grad():
        assert torch.equal(model(_ids()).logits, reloaded(_ids()).logits)


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), "64", True, [64]])
@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_invalid_norm_divisor_fails_at_config_load(bad, family, tmp_path):
    cfg = {
        "model_type": family,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "vocab_size": 50,
        "norm_divisor": bad,
    }
    (tmp_path / "config.json").write_text(
        json.dumps(cfg).replace("NaN", "NaN").replace("Infinity", "Infinity")
    )
    with pytest.raises(Exception, match="norm_divisor"):
        AutoConfig.from_pretrained(tmp_path)


def test_llama_rejects_hidden_not_multiple_of_heads_even_with_head_dim():
    with pytest.raises(Exception, match="multiple"):
        transformers_llama.LlamaConfig(hidden_size=100, num_attention_heads=8, head_dim=16)
