"""``sn29 plan SRC --competition``: the miner's limits (its byte margin included), which limit binds each
option or why it stops short, and a ``sn29 grow`` command per option that produces exactly that option."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from sn29_growth.checkpoint import checkpoint_dtype, read_model_config
from sn29_growth.cli import main as sn29
from sn29_growth.eval.competitions import Competition, load_competitions
from sn29_growth.growth.fit import MAX_FACTOR, MAX_MLP_RATIO
from sn29_growth.miner.grow import HEADER_MARGIN, auto_spec, parameter_limit
from sn29_growth.params import count_parameters
from sn29_growth.tiny import build_tiny

DATA = Path(__file__).parent / "data"
LIVE = DATA / "sn29" / "competitions.json"
CONFIGS = DATA / "configs"
TINY = {
    "default": {"dataset": "fineweb2", "group_samples": 10, "advantage_initial": 0.004},
    # parameters bind: 3,000,000 parameters, 40 MB
    "c00": {
        "reward": 1.0,
        "model_types": ["LlamaForCausalLM"],
        "model_size": 40_000_000,
        "parameters": 3_000_000,
    },
    # model_size binds: 6 MB of fp32 weights (less the margin) is ~1.47M parameters
    "c01": {
        "reward": 1.0,
        "model_types": ["LlamaForCausalLM"],
        "model_size": 6_000_000,
        "parameters": 3_000_000,
    },
}


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer):
    from sn29_growth.checkpoint import save_model

    path = tmp_path_factory.mktemp("plan") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=tokenizer)
    return path


@pytest.fixture(scope="module")
def tiny_competitions(tmp_path_factory):
    path = tmp_path_factory.mktemp("comps") / "competitions.json"
    path.write_text(json.dumps(TINY))
    return path


def plan_json(capsys, *argv: str) -> tuple[int, dict]:
    code = sn29(["plan", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_live_competitions_file_against_a_config(capsys):
    code, doc = plan_json(
        capsys, str(CONFIGS / "llama-3-8b.json"), "--competition", "c00", "--competitions", str(LIVE)
    )
    assert code == 0
    assert doc["competition"] == {
        "name": "c00",
        "origin": str(LIVE),
        "parameters": 20_100_000_000,
        "model_size": 42_000_000_000,
    }
    assert doc["dtype"] == "bfloat16" and doc["limit"] == 20_100_000_000 and doc["binding"] == ["parameters"]
    limits = {x["name"]: x for x in doc["limits"]}
    config_bytes = (CONFIGS / "llama-3-8b.json").stat().st_size
    assert limits["model_size"]["parameters"] == (int(42e9 * (1 - HEADER_MARGIN)) - config_bytes) // 2
    assert limits["model_size"]["bytes"] == 42_000_000_000
    for option in doc["options"]:
        assert option["bound_by"] == ["parameters"] and option["stops_short"] == []
        assert option["bytes"] == 2 * option["parameters"] + config_bytes and option["bytes"] < 42e9
        assert option["query_heads"] == option["num_attention_heads"]
        assert option["kv_heads"] == option["num_key_value_heads"]
        assert option["command"].startswith(
            f"sn29 grow {CONFIGS / 'llama-3-8b.json'} grown-{option['name']} "
        )
    # in float32 the byte limit binds instead
    code, doc = plan_json(
        capsys, str(CONFIGS / "llama-3-8b.json"), "--competition", "c00", "--competitions", str(LIVE),
        "--dtype", "float32",
    )  # fmt: skip
    assert doc["binding"] == ["model_size"] and doc["limit"] == (int(42e9 * 0.99) - config_bytes) // 4
    assert all(o["bound_by"] == ["model_size"] for o in doc["options"])
    assert all(o["argv"][-2:] == ["--dtype", "float32"] for o in doc["options"])  # not the source's bf16


def test_the_limit_is_the_miners_and_the_recommendation_is_what_auto_grows(base, tiny_competitions, capsys):
    competitions = load_competitions(tiny_competitions)
    for name in ("c00", "c01"):
        code, doc = plan_json(
            capsys, str(base), "--competition", name, "--competitions", str(tiny_competitions)
        )
        assert code == 0
        dtype = checkpoint_dtype(read_model_config(base))
        assert doc["dtype"] == dtype == "float32"
        assert doc["limit"] == parameter_limit(competitions[name], base, dtype)
        spec, option, limit = auto_spec(base, competitions[name])
        assert (doc["recommended"]["name"], doc["limit"]) == (option, limit)
        step = spec.steps[0]
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            assert doc["recommended"][key] == getattr(step, key)
    assert doc["binding"] == ["model_size"]  # c01: its bytes, less the margin and the tokenizer/config files
    other = sum(doc["source"]["other_files"].values())
    assert "tokenizer.json" in doc["source"]["other_files"] and other > 0
    assert doc["limit"] == (int(6_000_000 * (1 - HEADER_MARGIN)) - other) // 4


def test_binding_limit_and_stop_reasons_in_the_table(base, tiny_competitions, capsys):
    assert sn29(["plan", str(base), "--competition", "c00", "--competitions", str(tiny_competitions)]) == 0
    out = capsys.readouterr().out
    for needle in ("q heads", "kv heads", "bytes", "bound by", "<- binds", "recommended", "sn29 grow "):
        assert needle in out
    table = [line for line in out.splitlines() if line and not line.startswith(" ")]
    rows = {
        line.split()[0]: line for line in table if line.split()[0] in ("balanced", "wider", "deeper", "mlp")
    }
    assert rows["balanced"].rstrip().endswith("parameters *")
    assert "caps (below)" in rows["deeper"] and "caps (below)" in rows["mlp"]
    assert f"the {MAX_FACTOR:g}x depth cap (MAX_FACTOR)" in out
    assert f"the cap of {MAX_MLP_RATIO:g}x the source's MLP/hidden ratio (MAX_MLP_RATIO)" in out

    code, doc = plan_json(capsys, str(base), "--competition", "c00", "--competitions", str(tiny_competitions))
    by_name = {o["name"]: o for o in doc["options"]}
    assert set(by_name) == {"balanced", "wider", "deeper", "mlp"}
    assert by_name["balanced"]["bound_by"] == ["parameters"] and by_name["wider"]["bound_by"] == [
        "parameters"
    ]
    assert by_name["deeper"]["bound_by"] is None
    assert any("MAX_FACTOR" in r for r in by_name["deeper"]["stops_short"])
    assert any("MAX_MLP_RATIO" in r for r in by_name["mlp"]["stops_short"])
    other = sum(doc["source"]["other_files"].values())
    assert all(o["bytes"] == 4 * o["parameters"] + other for o in doc["options"])


def test_printed_grow_commands_produce_the_planned_parameters(base, tiny_competitions, tmp_path, capsys):
    code, doc = plan_json(
        capsys, str(base), "--competition", "c00", "--competitions", str(tiny_competitions),
        "--dst", str(tmp_path / "grown-{option}"),
    )  # fmt: skip
    assert code == 0
    for option in doc["options"]:
        argv = shlex.split(option["command"])
        assert argv == option["argv"] and argv[:2] == ["sn29", "grow"]
        dst = Path(argv[3])
        assert dst == tmp_path / f"grown-{option['name']}"
        assert sn29(argv[1:]) == 0, option["command"]
        capsys.readouterr()
        assert count_parameters(dst)["parameters"] == option["parameters"], option["name"]
        grown = read_model_config(dst)
        assert grown["num_attention_heads"] == option["query_heads"]
        assert grown["num_key_value_heads"] == option["kv_heads"]


def test_max_params_still_works_and_combines(base, tiny_competitions, capsys):
    code, doc = plan_json(capsys, str(base), "--max-params", "1M")
    assert code == 0 and doc["limit"] == 1_000_000 and doc["binding"] == ["--max-params"]
    assert doc["competition"] is None and doc["recommended"]["parameters"] <= 1_000_000
    code, doc = plan_json(
        capsys,
        str(base),
        "--competition",
        "c00",
        "--competitions",
        str(tiny_competitions),
        "--max-params",
        "1M",
    )
    assert doc["binding"] == ["--max-params"] and doc["limit"] == 1_000_000
    assert [x["name"] for x in doc["limits"]] == ["parameters", "model_size", "--max-params"]
    code, doc = plan_json(capsys, str(base), "--max-bytes", "8MB")
    assert doc["limit"] == 8_000_000 // 4 and doc["binding"] == ["--max-bytes"]


def test_plan_errors(base, tiny_competitions, capsys):
    assert sn29(["plan", str(base)]) == 2
    assert "--competition" in capsys.readouterr().err
    assert sn29(["plan", str(base), "--competition", "c99", "--competitions", str(tiny_competitions)]) == 2
    err = capsys.readouterr().err
    assert "c99" in err and "c00, c01" in err
    assert sn29(["plan", "./no/such/model", "--max-params", "1M"]) == 2
    assert "SRC ./no/such/model: not found" in capsys.readouterr().err
    assert sn29(["plan", "org/name", "--max-params", "1M"]) == 2  # a Hub id, offline: said, no traceback
    assert "offline" in capsys.readouterr().err
    tiny = dict(TINY, c02=dict(TINY["c00"], parameters=100_000))  # below the base: nothing fits
    path = Path(tiny_competitions).with_name("tiny2.json")
    path.write_text(json.dumps(tiny))
    assert sn29(["plan", str(base), "--competition", "c02", "--competitions", str(path)]) == 2
    assert "above the limit" in capsys.readouterr().err


def test_competition_copy_with_no_parameter_limit_is_valid():
    """The byte limit alone is computed by giving the miner's function a competition without a parameter
    limit: such a copy must be a valid Competition."""
    import dataclasses

    from sn29_growth.commands.plan import NO_LIMIT

    comp = Competition.from_dict("c00", dict(TINY["default"], **TINY["c00"]))
    assert dataclasses.replace(comp, parameters=NO_LIMIT).parameters == NO_LIMIT
