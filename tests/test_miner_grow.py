"""Growing within the competition's limits (parameters and bytes), with the loss verified unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest
from validator_fakes import COMPETITIONS

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.competitions import parse_competitions
from sn29_growth.growth.fit import count_params
from sn29_growth.miner.grow import LimitExceeded, auto_spec, check_within, grow_base, parameter_limit
from sn29_growth.tiny import build_tiny

C00 = parse_competitions(COMPETITIONS)["c00"]  # 400,000 parameters, 5,000,000 bytes


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("plan") / "base"
    save_model(build_tiny("llama-gqa", seed=0, init_std=0.1), path, tokenizer=embedded_tokenizer())
    return path


def other_bytes(path):
    return sum(p.stat().st_size for p in path.iterdir() if p.name.endswith(".json"))


def test_the_tighter_limit_wins(base):
    assert parameter_limit(C00, base, "float32") == 400_000  # 5 MB of fp32 weights would be 1.2M parameters
    tight = dataclasses.replace(C00, model_size=1_000_000)
    expected = (int(1_000_000 * 0.99) - other_bytes(base)) // 4
    assert parameter_limit(tight, base, "float32") == expected
    assert parameter_limit(tight, base, "bfloat16") == min(400_000, expected * 2)


def test_auto_spec_fills_the_limit_without_exceeding_it(base):
    from sn29_growth.arch import Shape
    from sn29_growth.checkpoint import read_model_config

    spec, option, limit = auto_spec(base, C00)
    (step,) = spec.steps
    target = Shape.from_config(read_model_config(base)).replace(**step.targets())
    assert limit == 400_000 and option in ("balanced", "wider", "deeper", "mlp")
    assert 0.8 * limit < count_params(target) <= limit
    with pytest.raises(LimitExceeded, match="above"):
        auto_spec(base, dataclasses.replace(C00, parameters=100_000))


def test_grow_verifies_the_loss_and_stays_within_the_limits(base, tmp_path):
    out = tmp_path / "grown"
    growth = grow_base(base, out, C00, "auto")
    assert growth.parameters_before == count_params_of(base)
    assert growth.parameters_before < growth.parameters_after <= 400_000
    assert growth.loss_after == pytest.approx(growth.loss_before, abs=1e-5)  # function-preserving
    assert (out / "growth_recipe.json").is_file() and (out / "tokenizer.json").is_file()
    check_within(out, C00)
    again = grow_base(base, out, C00, "auto")  # a complete earlier growth is reused
    assert (
        again.reused and again.option == growth.option and again.parameters_after == growth.parameters_after
    )
    assert again.loss_before == growth.loss_before


def test_recipe_and_none(base, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"steps": [{"num_hidden_layers": 3}]}))
    growth = grow_base(base, tmp_path / "g", C00, str(recipe))
    assert growth.option == "recipe" and growth.spec.steps[0].num_hidden_layers == 3
    assert growth.parameters_after > growth.parameters_before
    none = grow_base(base, tmp_path / "unused", C00, "none")
    assert none.path == base and none.spec is None and not (tmp_path / "unused").exists()


def test_a_recipe_over_the_limit_is_refused(base, tmp_path):
    recipe = tmp_path / "too-big.json"
    recipe.write_text(json.dumps({"steps": [{"num_hidden_layers": 12}]}))
    with pytest.raises(LimitExceeded, match="above the limit"):
        grow_base(base, tmp_path / "g", C00, str(recipe))


def count_params_of(path):
    from sn29_growth.arch import Shape
    from sn29_growth.checkpoint import read_model_config

    return count_params(Shape.from_config(read_model_config(path)))


def test_auto_without_room_trains_the_base_as_it_is(base, tmp_path):
    full = dataclasses.replace(C00, parameters=count_params_of(base) + 100)
    growth = grow_base(base, tmp_path / "g", full, "auto")
    assert growth.option == "none" and growth.path == base and not (tmp_path / "g").exists()
