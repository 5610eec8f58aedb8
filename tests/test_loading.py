"""The one model loader: safetensors only, no remote code, norm_divisor never silently ignored."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from sn29_growth import loading
from sn29_growth.loading import ModelLoadError, load_model, verify_norms
from sn29_growth.norm import DivisorRMSNorm
from sn29_growth.tiny import build_tiny


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("variant", ["llama-tied", "phi3"])
def test_load_model_uses_patched_classes_for_norm_divisor(variant, save_tiny):
    path = save_tiny(build_tiny(variant, seed=0, norm_divisor=40))
    model = load_model(path)
    norms = [m for m in model.modules() if isinstance(m, DivisorRMSNorm)]
    assert len(norms) == 2 * model.config.num_hidden_layers + 1
    assert all(m.norm_divisor == 40 for m in norms)
    assert not model.training


def test_refuses_when_the_classes_that_would_run_are_stock(save_tiny, monkeypatch):
    path = save_tiny(build_tiny("llama-gqa", seed=0, norm_divisor=40))
    # Simulate a process where stock transformers classes are what AutoModel resolves to.
    monkeypatch.setattr(loading, "ensure_patched", lambda model_type: None)
    transformers.AutoConfig.register("llama", transformers.LlamaConfig, exist_ok=True)
    transformers.AutoModelForCausalLM.register(
        transformers.LlamaConfig, transformers.LlamaForCausalLM, exist_ok=True
    )
    try:
        with pytest.raises(ModelLoadError, match="norm_divisor"):
            load_model(path)
    finally:
        import transformers_llama

        transformers_llama.register()


def test_verify_norms_catches_a_stock_model_with_a_divisor_config():
    stock = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=64,
            vocab_size=64,
            num_hidden_layers=1,
            pad_token_id=0,
            eos_token_id=0,
            bos_token_id=1,
        )
    )
    with pytest.raises(ModelLoadError, match="silently wrong"):
        verify_norms(stock, 16)
    verify_norms(stock, None)


def test_refuses_norm_divisor_on_unpatched_model_types(save_tiny):
    path = save_tiny(build_tiny("llama-mha", seed=0))
    _edit_config(path, model_type="mistral", architectures=["MistralForCausalLM"], norm_divisor=32)
    with pytest.raises(ModelLoadError, match="no patched classes"):
        load_model(path)


def test_refuses_remote_code_and_pickles(save_tiny):
    path = save_tiny(build_tiny("llama-mha", seed=0))
    _edit_config(path, auto_map={"AutoModelForCausalLM": "evil.Model"})
    with pytest.raises(ModelLoadError, match="auto_map"):
        load_model(path)
    path2 = save_tiny(build_tiny("llama-mha", seed=0), name="pickled")
    for f in path2.glob("*.safetensors"):
        f.unlink()
    torch.save({"x": torch.zeros(1)}, path2 / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(path2)


@pytest.mark.parametrize("bad", [0, -1, "x"])
def test_invalid_norm_divisor_is_a_load_error(bad, save_tiny):
    path = save_tiny(build_tiny("llama-mha", seed=0))
    _edit_config(path, norm_divisor=bad)
    with pytest.raises(ModelLoadError, match="norm_divisor"):
        load_model(path)


def test_missing_or_corrupt_checkpoint(tmp_path, save_tiny):
    with pytest.raises(ModelLoadError, match="not a checkpoint directory"):
        load_model(tmp_path / "nope")
    path = save_tiny(build_tiny("llama-mha", seed=0))
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(path)
    path = save_tiny(build_tiny("llama-mha", seed=0), name="truncated")
    shard = next(path.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="corrupt safetensors header"):
        load_model(path)
