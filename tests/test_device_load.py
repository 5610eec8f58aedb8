"""Direct-to-device loading gives the model from_pretrained gives: every tensor, tie and loss equal."""

from __future__ import annotations

import json

import pytest
import torch

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.loss import summed_losses
from sn29_growth.io.device_load import DirectLoadError, empty_model, fill_from_shards
from sn29_growth.loading import ModelLoadError, load_config, load_model
from sn29_growth.tiny import build_tiny

CASES = [
    ("llama-gqa", {}),
    ("llama-tied", {"norm_divisor": 40}),
    ("llama-bias", {}),
    ("phi3", {"norm_divisor": 8}),
]


def _tensors(model):
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update({f"buffer:{k}": v for k, v in model.named_buffers(remove_duplicate=False)})
    return named


@pytest.mark.parametrize(("variant", "extra"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_direct_load_equals_from_pretrained(variant, extra, dtype, save_tiny, held_out_ids):
    path = save_tiny(build_tiny(variant, seed=3, init_std=0.2, **extra))
    direct = load_model(path, dtype=dtype, network=True, direct=True)
    stock = load_model(path, dtype=dtype, network=True, direct=False)
    assert type(direct) is type(stock)
    got, want = _tensors(direct), _tensors(stock)
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].device == tensor.device, name
        assert got[name].requires_grad == tensor.requires_grad, name
        assert torch.equal(got[name], tensor), name
    if direct.config.tie_word_embeddings:
        assert direct.lm_head.weight is direct.model.embed_tokens.weight
    else:
        assert direct.lm_head.weight.data_ptr() != direct.model.embed_tokens.weight.data_ptr()
    assert direct.config._attn_implementation == stock.config._attn_implementation
    assert not direct.training
    seqs = held_out_ids[:6]
    assert summed_losses(direct, seqs).losses == summed_losses(stock, seqs).losses


def test_a_shard_with_a_foreign_tensor_is_refused(save_tiny, tmp_path):
    from safetensors.torch import save_file

    path = save_tiny(build_tiny("llama-gqa", seed=0))
    config = load_config(path)
    stray = tmp_path / "stray.safetensors"
    save_file({"model.layers.0.mlp.gate_proj.weight": torch.zeros(3, 3)}, str(stray))
    model = empty_model(config, dtype=torch.float32)
    with pytest.raises(DirectLoadError, match="gate_proj.weight.*shape"):
        fill_from_shards(model, [stray], dtype=torch.float32, device="cpu")
    save_file({"model.nothing.weight": torch.zeros(3)}, str(stray))
    with pytest.raises(DirectLoadError, match="model.nothing.weight"):
        fill_from_shards(model, [stray], dtype=torch.float32, device="cpu")


def test_load_model_keeps_its_checks_before_reading_weights(save_tiny):
    path = save_tiny(build_tiny("llama-gqa", seed=0))
    index = {"metadata": {}, "weight_map": {}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError):
        load_model(path, direct=True)


def test_sharded_bf16_checkpoint_loads_directly(tmp_path, tokenizer, monkeypatch):
    import transformers
    from safetensors.torch import load_file

    from sn29_growth.io import save_shards

    path = tmp_path / "sharded"
    save_model(build_tiny("llama-gqa", seed=1, init_std=0.2), path, tokenizer=tokenizer, dtype=torch.bfloat16)
    tensors = load_file(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    save_shards(tensors, path, max_shard_bytes=40_000)
    assert len(list(path.glob("*.safetensors"))) > 2
    with monkeypatch.context() as m:
        m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", None)  # never called on this path
        direct = load_model(path, dtype=torch.float32, direct=True)
    stock = load_model(path, dtype=torch.float32, direct=False)
    state = direct.state_dict()
    for name, tensor in stock.state_dict().items():
        assert state[name].dtype == torch.float32
        assert torch.equal(state[name], tensor), name


def test_a_directly_loaded_model_never_writes_back_to_its_files(save_tiny):
    path = save_tiny(build_tiny("llama-gqa", seed=0))
    before = (path / "model.safetensors").read_bytes()
    model = load_model(path, dtype=torch.float32, direct=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert (path / "model.safetensors").read_bytes() == before
    again = load_model(path, dtype=torch.float32, direct=True)
    assert not torch.equal(again.model.norm.weight, model.model.norm.weight)
