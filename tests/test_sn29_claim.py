"""The core SN29 claim: zero-padding the hidden size with norm_divisor = old hidden size keeps the loss."""

from __future__ import annotations

import pytest
import torch

from sn29_growth.lm import corpus_loss
from sn29_growth.tiny import build_tiny

WRITERS = ("o_proj", "down_proj")


def _segments(name, cfg_old, cfg_new):
    """Row segments (old_start, old_len, new_start) of a Phi3 fused projection, else None."""
    if name.endswith("qkv_proj.weight"):
        hd = cfg_old.head_dim
        q0, k0 = cfg_old.num_attention_heads * hd, cfg_old.num_key_value_heads * hd
        q1, k1 = cfg_new.num_attention_heads * hd, cfg_new.num_key_value_heads * hd
        return [(0, q0, 0), (q0, k0, q1), (q0 + k0, k0, q1 + k1)]
    return None


def zero_pad_hidden(old, new_hidden, new_heads, new_kv, use_divisor=True):
    """Grow ``old`` to ``new_hidden`` by zero-padding (new heads at fixed head_dim), as a test oracle."""
    cfg = old.config
    overrides = dict(
        hidden_size=new_hidden,
        num_attention_heads=new_heads,
        num_key_value_heads=new_kv,
        head_dim=cfg.head_dim,
    )
    if use_divisor:
        overrides["norm_divisor"] = cfg.hidden_size
    variant = "phi3" if cfg.model_type == "phi3" else "llama-mha"
    extra = {}
    if cfg.model_type == "llama":
        extra = dict(
            tie_word_embeddings=cfg.tie_word_embeddings,
            attention_bias=cfg.attention_bias,
            mlp_bias=cfg.mlp_bias,
        )
    new = build_tiny(variant, seed=99, init_std=0.1, **{**extra, **overrides})
    old_sd = old.state_dict()
    new_sd = new.state_dict()
    with torch.no_grad():
        for name, t_new in new_sd.items():
            t_old = old_sd[name]
            segs = _segments(name, cfg, new.config)
            if segs:
                for o0, n, n0 in segs:
                    t_new[n0 : n0 + n, : t_old.shape[1]] = t_old[o0 : o0 + n]
            else:
                t_new[tuple(slice(0, s) for s in t_old.shape)] = t_old
            if "embed_tokens" in name:
                t_new[:, cfg.hidden_size :] = 0
            if any(w in name for w in WRITERS):
                t_new[cfg.hidden_size :] = 0  # new residual rows (weight and bias)
                if t_new.dim() == 2:
                    t_new[:, t_old.shape[1] :] = 0  # new heads' outputs into old rows
    new.load_state_dict(new_sd)
    return new


CASES = {
    "llama-mha": (96, 6, 6),
    "llama-gqa": (96, 12, 3),
    "llama-tied": (96, 6, 3),
    "llama-bias": (96, 6, 6),
    "phi3": (96, 6, 6),
}


@pytest.mark.parametrize("variant", list(CASES))
def test_zero_padding_with_norm_divisor_keeps_the_loss(variant, held_out_ids):
    old = build_tiny(variant, seed=5, init_std=0.1)
    hidden, heads, kv = CASES[variant]
    grown = zero_pad_hidden(old, hidden, heads, kv, use_divisor=True)
    assert grown.config.head_dim == old.config.head_dim
    base = corpus_loss(old, held_out_ids).mean_token_loss
    after = corpus_loss(grown, held_out_ids).mean_token_loss
    assert abs(after - base) <= 1e-5, (base, after)
    plain = zero_pad_hidden(old, hidden, heads, kv, use_divisor=False)
    assert abs(corpus_loss(plain, held_out_ids).mean_token_loss - base) > 1e-3
