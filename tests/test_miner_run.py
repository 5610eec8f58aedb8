"""``run_miner`` decisions with injected training and evaluation: upload only a winner, dry runs, resumes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import SimpleNamespace

import pytest
from validator_fakes import COMPETITIONS

from sn29_growth.checkpoint import save_model
from sn29_growth.miner import MinerConfig, run_miner
from sn29_growth.miner.offline import offline_clients
from sn29_growth.miner.run import train_args
from sn29_growth.miner.wins import CANDIDATE
from sn29_growth.tiny import build_tiny
from sn29_growth.train import BatchConfig, CheckpointConfig, TrainConfig
from sn29_growth.train.loop import TrainResult

TRAIN = TrainConfig(steps=5, batch=BatchConfig(batch_size=2, seq_len=16), device="cpu", progress=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("run") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def fake_train(calls):
    def train(model_dir, out_dir, config, data=None):
        calls.append((model_dir, out_dir, config, data))
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in model_dir.iterdir():
            if p.is_file():
                shutil.copy2(p, out_dir / p.name)
        (out_dir / "train_log.jsonl").write_text("{}\n")
        done = config.stop_after is None
        return TrainResult(
            str(out_dir),
            done,
            config.steps if done else config.stop_after,
            100,
            1.0,
            100.0,
            7.0,
            6.0,
            6.1,
            None,
            1,
            "cpu",
            "float32",
            1,
            0,
            None,
        )

    return train


def fake_evaluate(candidate_factor):
    def evaluate(paths, *, names, **kw):
        rows = [
            SimpleNamespace(
                name=n,
                rejection=None,
                losses=tuple(v * (candidate_factor if n == CANDIDATE else 1.0) for v in (10.0, 20.0)),
            )
            for n in names
        ]
        return SimpleNamespace(models=rows, dataset="fake", format_table=lambda: "table")

    return evaluate


@pytest.fixture
def setup(tmp_path, base):
    comps = tmp_path / "competitions.json"
    comps.write_text(json.dumps(COMPETITIONS))
    clients = offline_clients(tmp_path / "work", competitions=comps)
    calls = []
    clients.train = fake_train(calls)
    config = MinerConfig(
        work_dir=tmp_path / "work",
        hf_repo="me/model",
        base=str(base),
        grow="none",
        train=TRAIN,
        dataset="local",
        device="cpu",
    )
    return config, clients, calls


def test_a_model_that_would_not_win_is_not_uploaded(setup):
    config, clients, calls = setup
    clients.evaluate = fake_evaluate(0.999)  # better, but not by the advantage of the older model
    report = run_miner(config, clients)
    assert report.status == "not-winning" and "win rate 0.000" in report.message
    assert clients.hub.calls == [] and clients.chain.read_commitment(clients.hotkey) is None
    assert (calls[0][2].checkpoint.resume, calls[0][3].name) == (True, "local:train")  # resumable training


def test_force_upload_and_dry_run(setup):
    config, clients, _ = setup
    clients.evaluate = fake_evaluate(0.999)
    report = run_miner(dataclasses.replace(config, upload="always"), clients)
    assert report.status == "published" and clients.chain.read_commitment(clients.hotkey)
    clients.evaluate = fake_evaluate(0.5)
    dry = run_miner(dataclasses.replace(config, upload="never"), clients)
    assert dry.status == "dry-run" and dry.verdict["wins"]


def test_winner_is_published_with_a_card_and_stopped_training_resumes(setup):
    config, clients, calls = setup
    clients.evaluate = fake_evaluate(0.5)
    stopped = run_miner(dataclasses.replace(config, train=dataclasses.replace(TRAIN, stop_after=2)), clients)
    assert stopped.status == "stopped" and clients.hub.calls == []
    report = run_miner(config, clients)
    assert report.status == "published" and report.run_dir == stopped.run_dir  # same run: training resumes
    upload = set((clients.hub.hub.repo_dir("me/model") / report.published["hub_commit"]).iterdir())
    names = {p.name for p in upload}
    assert "README.md" in names and "train_log.jsonl" not in names
    saved = json.loads((config.runs_dir / report.run_dir.split("/")[-1] / "report.json").read_text())
    assert saved["status"] == "published" and saved["published"] == report.published


def test_unknown_competition(setup):
    config, clients, _ = setup
    with pytest.raises(ValueError, match="c99"):
        run_miner(dataclasses.replace(config, competition="c99"), clients)


def test_torchrun_flags_give_back_the_same_train_config():
    import argparse

    from sn29_growth.commands.train import config_from_args, register

    tc = TrainConfig(
        steps=7,
        eval_every=7,
        batch=BatchConfig(batch_size=3, seq_len=64, grad_accum=2),
        checkpoint=CheckpointConfig(save_every=5, keep=3, resume=True),
        device="cpu",
        progress=False,
        save_dtype="bfloat16",
        stop_after=4,
    )
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "model", "out", *train_args(tc)])
    assert config_from_args(args) == tc


def test_a_named_base_is_still_compared_with_the_chains_best(setup, base):
    from validator_fakes import hotkey, publish

    config, clients, _ = setup
    hub_root = clients.hub.hub.root
    clients.chain.put(hotkey(0), publish(hub_root, "alice/best", base, 0), block=10)
    seen = []

    def evaluate(paths, *, names, **kw):
        seen.append(names)
        return fake_evaluate(0.5)(paths, names=names, **kw)

    clients.evaluate = evaluate
    report = run_miner(dataclasses.replace(config, upload="never"), clients)
    assert seen == [["current-best", CANDIDATE]] and report.verdict["wins"]


def test_a_failure_is_recorded_in_the_report(setup):
    config, clients, _ = setup

    def broken(*args, **kw):
        raise RuntimeError("CUDA out of memory (injected)")

    clients.train = broken
    with pytest.raises(RuntimeError, match="out of memory"):
        run_miner(config, clients)
    (saved,) = [json.loads(p.read_text()) for p in config.runs_dir.glob("*/report.json")]
    assert saved["status"] == "failed" and "out of memory" in saved["message"]
    assert saved["growth"]["option"] == "none"


def test_a_changed_limit_plans_in_a_new_run_directory(setup):
    """The run directory follows the competition's limits: a smaller limit is a new plan, not a reuse of a
    growth made for the larger one."""
    from sn29_growth.miner.base import find_base
    from sn29_growth.miner.run import run_id

    config, clients, _ = setup
    comps = clients.competitions.get()
    base = find_base(config.base, comps["c00"], clients.chain, None)
    smaller = dataclasses.replace(comps["c00"], parameters=comps["c00"].parameters // 2)
    tighter = dataclasses.replace(comps["c00"], model_size=comps["c00"].model_size - 1)
    ids = {run_id(base, config, c) for c in (comps["c00"], smaller, tighter)}
    assert len(ids) == 3
    assert run_id(base, config, comps["c00"]) == run_id(base, config, comps["c00"])
