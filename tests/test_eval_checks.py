"""Model checks before download (file list + config) and after load (weights, vocabulary)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from sn29_growth.eval import checks
from sn29_growth.eval.competitions import default_competitions
from sn29_growth.tiny import build_tiny, tiny_config

GOOD_FILES = {"config.json": 700, "model.safetensors": 1_000_000, "tokenizer.json": 50_000}


@pytest.fixture(scope="module")
def c00():
    return default_competitions()["c00"]


def llama_config(**overrides) -> dict:
    cfg = tiny_config("llama-gqa").to_dict()
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg.update(overrides)
    return cfg


def test_a_valid_model_passes(c00):
    assert checks.precheck(llama_config(), GOOD_FILES, c00) is None


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({**GOOD_FILES, "pytorch_model.bin": 10}, "pickle-format weights"),
        ({"config.json": 1, "model.pt": 10}, "pickle-format weights"),
        ({"config.json": 1, "tokenizer.json": 10}, "no \\*.safetensors"),
        ({"model.safetensors": 10}, "no config.json"),
        (
            {
                "config.json": 1,
                "model-00001-of-00002.safetensors": 21e9,
                "model-00002-of-00002.safetensors": 21e9,
            },
            "above the limit of 42,000,000,000",
        ),
    ],
)
def test_file_checks(c00, files, reason):
    got = checks.check_files(files, c00)
    assert got is not None and re.search(reason, got)


def test_repo_size_limit_is_inclusive(c00):
    files = {"config.json": 1_000, "model.safetensors": c00.model_size - 1_000}
    assert checks.check_files(files, c00) is None
    files["model.safetensors"] += 1
    assert "above the limit" in checks.check_files(files, c00)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}, "auto_map"),
        ({"architectures": ["Phi3ForCausalLM"]}, "architecture Phi3ForCausalLM is not allowed in c00"),
        ({"architectures": ["LlamaForCausalLMv2"]}, "not allowed"),  # exact class names, no substring match
        ({"architectures": ["LlamaForCausalLM", "Evil"]}, "architecture Evil"),
        ({"architectures": []}, "no architectures"),
        ({"norm_divisor": -2.0}, "norm_divisor"),
        ({"norm_divisor": 0}, "norm_divisor"),
        ({"hidden_size": 63}, "not a multiple of num_attention_heads"),
    ],
)
def test_config_checks(c00, overrides, reason):
    got = checks.check_config(llama_config(**overrides), c00)
    assert got is not None and reason in got


def test_valid_norm_divisor_passes(c00):
    assert checks.check_config(llama_config(norm_divisor=2.0), c00) is None


def test_parameter_limit_counts_on_meta_device(c00):
    n = checks.count_parameters_safe(llama_config())
    assert n == sum(p.numel() for p in build_tiny("llama-gqa").parameters())
    assert checks.check_config(llama_config(), dataclasses.replace(c00, parameters=n)) is None
    got = checks.check_config(llama_config(), dataclasses.replace(c00, parameters=n - 1))
    assert got == f"{n:,} parameters, above the limit of {n - 1:,}"


def test_parameter_limit_at_real_scale(c00):
    """A 20B-class Llama config is counted on the meta device in well under a second."""
    big = llama_config(
        vocab_size=128_256,
        hidden_size=6144,
        intermediate_size=24576,
        num_hidden_layers=44,
        num_attention_heads=48,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=4096,
    )
    n = checks.count_parameters_safe(big)
    assert n > c00.parameters
    assert "above the limit of 20,100,000,000" in checks.check_config(big, c00)


def test_nonfinite_weights_are_found():
    model = build_tiny("llama-bias", seed=0)
    assert checks.nonfinite_parameters(model) == []
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.bias[3] = float("inf")
        model.lm_head.weight[0, 0] = float("nan")
    assert checks.nonfinite_parameters(model) == ["model.layers.1.self_attn.q_proj.bias", "lm_head.weight"]


def test_vocab_check(tokenizer):
    model = build_tiny("llama-tied", seed=0)
    assert checks.embedding_rows(model) == 1024
    assert checks.tokenizer_max_id(tokenizer) == 1023
    assert checks.check_vocab(1023, model) is None
    assert checks.check_vocab(1024, model) == "token id 1024 is not below the model's 1024 embedding rows"


def test_local_files_and_architecture(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x").write_text("hidden")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("abc")
    (tmp_path / "sub" / "optimizer.pt").write_bytes(b"\x80\x02")  # e.g. sn29 train's checkpoints/
    assert checks.local_files(tmp_path) == {"config.json": 2}  # a model folder is its top-level files
    assert checks.architecture({"architectures": ["Phi3ForCausalLM"]}) == "Phi3ForCausalLM"
    assert checks.architecture({}) is None
