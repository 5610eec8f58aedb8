"""config.json in the network's keys: transformers 5 reads what we write exactly as it read the source,
and transformers 4.44's keys carry the same values; what 4.44 ignores is ignored when we score."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import transformers_llama
import transformers_phi3
from sn29_growth.network.config import (
    NetworkFormatError,
    as_network_reads,
    network_config,
    network_rope,
    our_rope,
)

CONFIGS = Path(__file__).parent / "data" / "configs"
LONGROPE = dict(
    hidden_size=64,
    num_attention_heads=4,
    max_position_embeddings=8192,
    original_max_position_embeddings=1024,
    rope_scaling={"type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8},
)


def _config_class(model_type):
    return {"llama": transformers_llama.LlamaConfig, "phi3": transformers_phi3.Phi3Config}[model_type]


def _sources():
    out = {p.stem: json.loads(p.read_text()) for p in sorted(CONFIGS.glob("*.json"))}
    out["phi3-longrope"] = {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], **LONGROPE}
    out["llama-linear"] = {
        "model_type": "llama",
        "rope_theta": 1234.0,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
    }
    return out


def _v5(raw):
    """What transformers 5 makes of ``raw`` (and writes back with save_pretrained)."""
    fields = {k: v for k, v in copy.deepcopy(raw).items() if k not in ("model_type", "auto_map")}
    return _config_class(raw["model_type"])(**fields)


@pytest.mark.parametrize("name", list(_sources()))
def test_v5_output_goes_back_to_the_keys_the_network_reads(name):
    source = _sources()[name]
    saved_by_v5 = _v5(source).to_dict()
    assert "rope_parameters" in saved_by_v5 and "rope_theta" not in saved_by_v5  # what the bug was
    ours = network_config(saved_by_v5)
    assert "rope_parameters" not in ours and "dtype" not in ours
    # transformers 5 reads our file exactly as it read the source
    assert _v5(ours).rope_parameters == _v5(source).rope_parameters
    assert _v5(ours).dtype == _v5(source).dtype
    # and the keys 4.44 reads say the same as the source's
    assert network_rope(ours) == network_rope(source)
    assert ours.get("torch_dtype") == source.get("torch_dtype")
    assert our_rope(saved_by_v5) == network_rope(ours)


def test_llama3_rope_values_reach_the_legacy_keys():
    source = json.loads((CONFIGS / "llama-3.2-1b.json").read_text())
    ours = network_config(_v5(source).to_dict())
    assert ours["rope_theta"] == 500000.0
    assert ours["rope_scaling"] == source["rope_scaling"]
    assert ours["torch_dtype"] == "bfloat16"


def test_unknown_keys_are_preserved_and_nulls_dropped():
    raw = {"model_type": "llama", "norm_divisor": None, "my_key": {"x": [1, 2]}, "rope_theta": 5.0}
    assert network_config(raw) == {"model_type": "llama", "my_key": {"x": [1, 2]}, "rope_theta": 5.0}
    assert network_config({"model_type": "llama", "norm_divisor": 2048})["norm_divisor"] == 2048


def test_phi3_longrope_takes_the_three_fields_4_44_requires():
    saved_by_v5 = _v5({"model_type": "phi3", **LONGROPE}).to_dict()
    ours = network_config(saved_by_v5)
    assert ours["rope_scaling"] == {
        "type": "longrope",
        **{k: LONGROPE["rope_scaling"][k] for k in ("short_factor", "long_factor")},
    }
    assert ours["original_max_position_embeddings"] == 1024


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"model_type": "llama", "rope_parameters": {"rope_theta": 1.0, "partial_rotary_factor": 0.5}},
            "partial",
        ),
        ({"model_type": "phi3", "partial_rotary_factor": 0.5}, "partial"),
        ({"model_type": "phi3", "rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "only 'longrope'"),
        (
            {
                "model_type": "phi3",
                "rope_parameters": {
                    "rope_type": "longrope",
                    "short_factor": [1],
                    "long_factor": [1],
                    "attention_factor": 3.0,
                },
            },
            "attention_factor",
        ),
        ({"model_type": "llama", "rope_parameters": "yes"}, "must be an object"),
    ],
)
def test_meanings_4_44_cannot_express_are_errors(config, message):
    with pytest.raises(NetworkFormatError, match=message):
        network_config(config)


def test_as_network_reads_drops_what_4_44_ignores():
    v5_only = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "head_dim": 32,
        "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
        "dtype": "bfloat16",
        "partial_rotary_factor": 0.5,
    }
    seen = as_network_reads(v5_only)
    assert seen == {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}
    config = _v5(seen)
    assert config.rope_parameters["rope_theta"] == 10000.0  # 4.44's default, as the network computes it
    assert config.head_dim == 16  # hidden // heads, as 4.44 derives it
