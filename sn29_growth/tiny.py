"""Tiny Llama/Phi3 models from fixed seeds: the demo's default and every test's fixture.

Each variant builds in well under a second on a CPU. Shapes follow SN29 rules (hidden % heads == 0,
head_dim pinned in the config) so that growth and evaluation see what they would see at scale.
"""

from __future__ import annotations

import copy

import torch

from sn29_growth.tokenizer import VOCAB_SIZE

VARIANTS = ("llama-mha", "llama-gqa", "llama-tied", "llama-bias", "phi3")

_BASE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=16,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    bos_token_id=None,
    eos_token_id=0,
    pad_token_id=0,
    initializer_range=0.02,
)


def tiny_config(variant: str = "llama-gqa", **overrides):
    """The config of a tiny model ``variant`` (one of :data:`VARIANTS`), with keyword overrides."""
    import transformers_llama
    import transformers_phi3

    if variant not in VARIANTS:
        raise ValueError(f"unknown tiny variant {variant!r}; choose from {', '.join(VARIANTS)}")
    kw = dict(_BASE)
    if variant == "llama-gqa":
        kw.update(num_attention_heads=8, num_key_value_heads=2, head_dim=8)
    elif variant == "llama-tied":
        kw.update(num_key_value_heads=2, tie_word_embeddings=True)
    elif variant == "llama-bias":
        kw.update(attention_bias=True, mlp_bias=True)
    kw.update(copy.deepcopy(overrides))  # transformers' configs edit nested dicts (rope_scaling) in place
    if variant == "phi3":
        kw.pop("mlp_bias", None)
        kw.pop("attention_bias", None)
        kw.setdefault("resid_pdrop", 0.0)
        kw.setdefault("embd_pdrop", 0.0)
        kw.setdefault("attention_dropout", 0.0)
        kw.setdefault("original_max_position_embeddings", kw["max_position_embeddings"])
        kw.setdefault("tie_word_embeddings", False)
        return transformers_phi3.Phi3Config(**kw)
    return transformers_llama.LlamaConfig(**kw)


def build_tiny(variant: str = "llama-gqa", seed: int = 0, init_std: float | None = None, **overrides):
    """A tiny causal LM with weights drawn from ``seed`` (fp32, eval mode).

    ``init_std`` (default: the config's ``initializer_range``) widens the random init so that untrained
    tiny models still compute a non-trivial function — useful when a test compares logits.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(variant, **overrides)
    if init_std is not None:
        config.initializer_range = init_std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        if variant == "llama-bias":
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    torch.nn.init.normal_(p, std=config.initializer_range)
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                with torch.no_grad():
                    p.add_(torch.randn_like(p) * 0.1)
    return model.eval()
