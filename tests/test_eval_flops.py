"""FLOP counting for MFU: weights from the config match the model's matrices; attention by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sn29_growth.eval.flops import (
    attention_flops,
    body_matmul_params,
    forward_flops,
    head_params,
    matmul_params,
    mfu,
)
from sn29_growth.tiny import build_tiny, tiny_config

CONFIGS = Path("/work/shared/data/configs")


@pytest.mark.parametrize("variant", ["llama-gqa", "llama-tied", "phi3"])
def test_matmul_params_match_the_models_linear_layers(variant):
    model = build_tiny(variant)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(model.config) == linear  # lm_head counted once, tied or not
    assert head_params(model.config) == model.get_output_embeddings().weight.numel()


def test_attention_and_forward_flops_by_hand():
    cfg = tiny_config("llama-gqa")  # 2 layers, 8 heads of 8, hidden 64
    assert attention_flops(cfg, 1) == 2 * 8 * 8 * 1 * 4
    assert attention_flops(cfg, 4) == 2 * 8 * 8 * 10 * 4  # 4 + 3 + 2 + 1 causal pairs
    body, head = body_matmul_params(cfg), head_params(cfg)
    assert forward_flops(cfg, [4, 1]) == 2 * body * 4 + 2 * head * 3 + attention_flops(cfg, 4)
    assert forward_flops(cfg, []) == 0
    assert mfu(989e12, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="seconds"):
        mfu(1.0, 0.0)


@pytest.mark.skipif(not (CONFIGS / "llama-3-8b.json").exists(), reason="real configs not present")
def test_llama3_8b_shape_counts():
    from transformers import LlamaConfig

    cfg = LlamaConfig(**json.loads((CONFIGS / "llama-3-8b.json").read_text()))
    # Llama 3 8B: 8.03e9 parameters, of which 2 × 128256 × 4096 embedding + lm_head; norms are tiny
    assert matmul_params(cfg) == pytest.approx(8.03e9 - 128256 * 4096, rel=1e-3)
    # at 4096 tokens causal attention is ~7 % of the useful work (4.4e12 of 6.6e13 FLOPs)
    n = 4096
    share = attention_flops(cfg, n) / forward_flops(cfg, [n])
    assert 0.06 < share < 0.075
