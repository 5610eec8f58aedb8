"""Stage times travel with each model: ``sn29 evaluate --json`` rows and one validator log line per model."""

from __future__ import annotations

import json
import logging
import re

import pytest
from validator_fakes import make_env, publish

from sn29_growth.checkpoint import save_model
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer

KEYS = (
    "download_s",
    "startup_s",
    "checks_s",
    "tokenize_s",
    "hash_s",
    "load_s",
    "eval_s",
    "outside_s",
    "outside_ratio",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("timing") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


@pytest.mark.parametrize("isolate", ["--isolate", "--no-isolate"])
def test_evaluate_json_rows_carry_the_stage_times(model_dir, tmp_path, capsys, isolate):
    from sn29_growth.cli import main

    args = ["evaluate", str(model_dir), "--samples", "4", "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*args, isolate]) == 0
    (row,) = json.loads(capsys.readouterr().out)["models"]
    assert row["rejection"] is None
    stages = row["stages"]
    assert set(stages) == set(KEYS)
    assert all(isinstance(stages[k], int | float) and stages[k] >= 0 for k in KEYS)
    assert stages["eval_s"] > 0 and stages["load_s"] > 0 and stages["hash_s"] > 0
    inside = ("startup_s", "checks_s", "tokenize_s", "hash_s", "load_s")
    assert stages["outside_s"] == pytest.approx(sum(stages[k] for k in inside), abs=1e-3)
    assert (stages["startup_s"] > 0) == (isolate == "--isolate")  # a worker process starts


def test_the_validator_logs_one_breakdown_line_per_model(tmp_path, model_dir, caplog):
    from sn29_growth.validator.state import ValidatorState
    from sn29_growth.validator.step import step

    config, clients, chain, _, hub = make_env(tmp_path)

    chain.put(0, publish(hub, "alice/base", model_dir, 0), block=100)
    with caplog.at_level(logging.INFO, logger="sn29_growth.validator.step"):
        step(ValidatorState(), clients, config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alice/base: download")]
    assert len(lines) == 1
    seconds = dict(re.findall(r"(\w+) ([0-9.e+-]+)s", lines[0]))
    assert set(seconds) == {"download", "startup", "checks", "tokenize", "hash", "load", "eval"}
    assert all(float(v) >= 0 for v in seconds.values()) and float(seconds["eval"]) > 0
    assert float(seconds["download"]) > 0 and float(seconds["hash"]) > 0
    assert re.search(r"outside eval \d+\.\d%$", lines[0])
