"""The per-model time budget: derived from the model's own work, printed, overridable; a hanging upload
costs its budget, not an hour; a token-inflating tokenizer's forward work stays within the bound the
budget assumes."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from validator_fakes import hotkey, make_env, publish

from sn29_growth.eval.budget import BudgetSettings, measure_flops, model_budget, token_bound
from sn29_growth.eval.worker import run_in_worker
from sn29_growth.validator.cli import build_parser, config_from_args
from sn29_growth.validator.runner import run_steps


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("budget") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def test_the_budget_is_the_model_s_own_work_with_a_margin():
    settings = BudgetSettings(factor=10.0, floor_s=120.0, read_bytes_per_s=1e8, tokenize_bytes_per_s=1e5)
    budget = model_budget(
        settings,
        flops_per_s=1e12,
        parameters=1_000_000_000,
        weight_bytes=2_000_000_000,
        sample_bytes=[10_000] * 100,
        max_sequence_len=4096,
    )
    forward = 2 * 1e9 * (100 * 4096) / 1e12  # 819.2 s
    assert budget.seconds == pytest.approx(120 + 10 * forward + 20.0 + 10.0)
    assert "819.2 s forward" in budget.explanation and "2.00 GB" in budget.explanation
    small = model_budget(
        settings,
        flops_per_s=1e12,
        parameters=1e6,
        weight_bytes=4e6,
        sample_bytes=[100] * 8,
        max_sequence_len=64,
    )
    assert 120 < small.seconds < 122  # a tiny model: the floor
    with pytest.raises(ValueError, match="factor"):
        BudgetSettings(factor=0)


def test_the_token_bound_is_the_length_limit_or_the_worst_byte_fallback():
    assert token_bound([10, 20, 30], 4096) == 3 * 4096
    assert token_bound([10, 20], None) == (4 * 10 + 2) + (4 * 20 + 2)


def test_the_device_throughput_is_measured():
    assert measure_flops("cpu", seconds=0.05) > 1e7


def test_the_validator_derives_each_budget_and_logs_it(tmp_path, base_dir, caplog):
    config, clients, chain, _, hub = make_env(tmp_path)
    assert config.eval_timeout_s is None
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    seen = []
    real = clients.evaluate
    clients.evaluate = lambda request, timeout: (seen.append(timeout), real(request, timeout))[1]
    with caplog.at_level(logging.INFO, logger="sn29_growth.validator.step"):
        run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert len(seen) == 1 and 120 <= seen[0] < 600  # a tiny model: about the floor, not an hour
    assert any("time budget" in r.getMessage() and "FLOP/s" in r.getMessage() for r in caplog.records)

    (tmp_path / "fixed").mkdir()
    config, clients, chain, _, hub = make_env(tmp_path / "fixed", eval_timeout_s=25.0)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    seen.clear()
    real = clients.evaluate
    clients.evaluate = lambda request, timeout: (seen.append(timeout), real(request, timeout))[1]
    run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert seen == [25.0]  # the fixed override


def test_a_hanging_upload_costs_its_budget_not_an_hour(tmp_path, base_dir):
    config, clients, chain, _, hub = make_env(tmp_path, budget=BudgetSettings(factor=0.001, floor_s=2.0))
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    hang = [
        sys.executable,
        "-c",
        "import pathlib, sys, time; pathlib.Path(sys.argv[2] + '.started').touch(); time.sleep(600)",
    ]
    times = []

    def evaluate(request, timeout):
        result = run_in_worker(request, timeout, command=hang)
        times.append(result.seconds)
        return result

    clients.evaluate = evaluate
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    rec = summary.state.models[hotkey(0)]
    assert rec.status == "failed" and "timed out after 2" in rec.reason
    assert times[0] < 30


def test_validator_flags_set_the_budget(tmp_path):
    args = build_parser().parse_args(
        [
            "--model-dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--eval-timeout-factor",
            "4",
            "--eval-timeout-floor",
            "60",
        ]
    )
    config = config_from_args(args)
    assert config.eval_timeout_s is None and config.budget == BudgetSettings(factor=4.0, floor_s=60.0)
    args = build_parser().parse_args(["--model-dir", str(tmp_path), "--eval-timeout", "900"])
    assert config_from_args(args).eval_timeout_s == 900.0


def _inflating_tokenizer(folder, tokenizer, times: int = 30):
    """The embedded tokenizer with a normalizer that turns each space into ``times`` spaces and a decoder
    that turns them back: it passes the round trip and multiplies the tokens."""
    from tokenizers import Tokenizer, decoders, normalizers

    from sn29_growth.network.tokenizer import network_tokenizer_json

    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.normalizer = normalizers.Replace(" ", " " * times)
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(" " * times, " ")])
    data = network_tokenizer_json(json.loads(tok.to_str()))
    (folder / "tokenizer.json").write_text(json.dumps(data))


def test_a_token_inflating_tokenizer_is_scored_within_the_bound(tmp_path, base_dir, tokenizer, corpus):
    """The network scores such a model, so it is scored here too; its forward passes never exceed
    max_sequence_len tokens per sample (longer samples are +inf), the bound the budget assumes."""
    import shutil

    from sn29_growth.eval.competitions import default_competitions
    from sn29_growth.eval.evaluate import evaluate_models
    from sn29_growth.eval.tokenize import TokenizeSettings, tokenize_samples
    from sn29_growth.eval.tokenizers import load_tokenizer

    folder = tmp_path / "inflating"
    shutil.copytree(base_dir, folder)
    _inflating_tokenizer(folder, tokenizer)
    samples = corpus.held_out[:16]
    plain = tokenize_samples(load_tokenizer(base_dir), samples, TokenizeSettings(0, 0))
    inflated = tokenize_samples(load_tokenizer(folder), samples, TokenizeSettings(0, 0))
    assert all(t.failure is None for t in inflated.items)  # the round trip passes
    n_plain = sum(len(t.ids) for t in plain.items)
    n_inflated = sum(len(t.ids) for t in inflated.items)
    assert n_inflated > 2 * n_plain

    comp = default_competitions()["c00"]
    limit = 256
    bounded = tokenize_samples(load_tokenizer(folder), samples, TokenizeSettings(0, limit))
    run = [t.ids for t in bounded.items if t.ids is not None]
    assert sum(map(len, run)) <= token_bound([1] * len(samples), limit)
    assert any(t.failure == "too_long" for t in bounded.items)
    result = evaluate_models([folder], competition=comp, dataset="local", samples=16, cache_dir=None)
    assert result.models[0].rejection is None  # scored, as the network scores it
