"""The planner at real scale, on the meta device: 7B→14B and →20.1B shapes that fill the limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from growth_helpers import cli

from sn29_growth.arch import Shape
from sn29_growth.growth.fit import count_params, effective_limit, plan_options
from sn29_growth.growth.resolve import resolve_plan
from sn29_growth.growth.spec import GrowthSpec, GrowthStep
from sn29_growth.params import count_parameters

CONFIGS = Path(__file__).parent / "data" / "configs"


def _config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("llama-2-7b", 14_000_000_000),
        ("llama-2-7b", 20_100_000_000),
        ("llama-3-8b", 20_100_000_000),
        ("phi-3-mini-4k", 20_100_000_000),
    ],
)
def test_plans_fill_the_limit_with_gpu_friendly_shapes(name, limit):
    config = _config(name)
    src = Shape.from_config(config)
    options = plan_options(src, limit)
    assert {o.name for o in options} >= {"balanced", "wider", "deeper"}
    best = options[0]
    assert 0.98 * limit <= best.parameters <= limit
    for o in options:
        s = o.shape
        assert s.head_dim == src.head_dim and s.vocab_size == src.vocab_size
        assert s.hidden_size % 256 == 0 and s.intermediate_size % 256 == 0
        assert s.num_attention_heads % s.num_key_value_heads == 0 and s.group_size == src.group_size
        assert s.hidden_size % s.num_attention_heads == 0
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            assert getattr(s, key) >= getattr(src, key)
    # The chosen shape is a valid growth, and transformers (meta device) counts what the planner counted.
    plan = resolve_plan(GrowthSpec((GrowthStep(**best.targets()),)), config)
    assert count_parameters(plan.output_config())["parameters"] == best.parameters


def test_closed_form_count_matches_transformers():
    from sn29_growth.tiny import tiny_config

    for variant in ("llama-mha", "llama-gqa", "llama-tied", "llama-bias", "phi3"):
        cfg = tiny_config(variant).to_dict()
        assert count_params(Shape.from_config(cfg)) == count_parameters(cfg)["parameters"], variant
    for name in ("llama-3.2-1b", "phi-3-mini-4k", "llama-3-8b"):
        assert count_params(Shape.from_config(_config(name))) == count_parameters(_config(name))["parameters"]


def test_byte_limit_and_clone_plans():
    assert effective_limit(20_100_000_000, 42_000_000_000, 2) == 20_100_000_000
    assert effective_limit(None, 10_000_000_000, 2) == 5_000_000_000
    with pytest.raises(ValueError, match="--max-params"):
        effective_limit(None, None, 2)
    src = Shape.from_config(_config("llama-3.2-1b"))
    clone = plan_options(src, 5_000_000_000, clone_only=True)
    assert all(o.shape.hidden_size in (2048, 4096, 6144, 8192) for o in clone)
    with pytest.raises(ValueError, match="above the limit"):
        plan_options(src, 1_000_000_000)


def test_plan_command_prints_table_and_json(capsys):
    assert cli(["plan", str(CONFIGS / "llama-3-8b.json"), "--max-params", "20.1B"]) == 0
    out = capsys.readouterr().out
    assert "balanced" in out and "recommended" in out
    assert cli(["plan", str(CONFIGS / "phi-3-mini-4k.json"), "--max-bytes", "28GB", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["limit"] == 14_000_000_000 and doc["recommended"]["usage"] >= 0.98


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "llama-3.2-1b", "phi-3-mini-4k"])
def test_every_option_is_a_shape_the_network_loads(name):
    src = Shape.from_config(_config(name))
    for limit in (2 * count_params(src), 20_100_000_000):
        options = plan_options(src, limit)
        assert options
        for option in options:
            s = option.shape
            assert s.hidden_size == s.num_attention_heads * s.head_dim, option


def test_a_source_off_the_network_shape_is_planned_back_onto_it():
    odd = Shape.from_config(_config("llama-3.2-1b")).replace(num_attention_heads=16)  # 16 x 64 != 2048
    options = plan_options(odd, 3 * count_params(odd))
    assert options and all(
        o.shape.hidden_size == o.shape.num_attention_heads * o.shape.head_dim for o in options
    )
    kept = plan_options(odd, 3 * count_params(odd), off_network=True)
    assert any(o.shape.hidden_size != o.shape.num_attention_heads * o.shape.head_dim for o in kept)
