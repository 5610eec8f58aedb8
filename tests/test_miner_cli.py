"""``neurons/miner.py``: flags → config (the validator's names), real clients, and a whole offline run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from validator_fakes import COMPETITIONS

from sn29_growth.chain.commitment import ModelCommitment, content_hash
from sn29_growth.checkpoint import save_model
from sn29_growth.hub.local import LocalHub
from sn29_growth.miner.cli import build_clients, build_parser, config_from_args, main
from sn29_growth.miner.offline import FileChain, offline_hotkey

pytest_plugins = ("chain_fixtures",)
REPO = ["--hf-repo", "me/grown"]


def parse(*argv: str):
    args = build_parser().parse_args([*REPO, *argv])
    return args, config_from_args(args)


def test_flags_map_onto_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # --base org/base@main is fetched from the Hub
    args, config = parse(
        "--netuid",
        "7",
        "--subtensor.network",
        "test",
        "--wallet.name",
        "w",
        "--wallet.hotkey",
        "h",
        "--competition",
        "c01",
        "--base",
        "org/base@main",
        "--grow",
        "none",
        "--steps",
        "50",
        "--lr",
        "1e-3",
        "--seq-len",
        "128",
        "--device",
        "cpu",
        "--dataset",
        "local",
        "--samples",
        "64",
        "--seed",
        "5",
        "--model-dir",
        str(tmp_path),
        "--no-upload",
    )
    assert (args.netuid, args.network, args.wallet_name, args.wallet_hotkey) == (7, "test", "w", "h")
    assert (config.competition, config.base, config.grow, config.hf_repo) == (
        "c01",
        "org/base@main",
        "none",
        "me/grown",
    )
    assert (
        config.train.steps == 50 and config.train.optimizer.lr == 1e-3 and config.train.batch.seq_len == 128
    )
    assert (
        config.train.eval_every == 50 and config.train.device == "cpu"
    )  # validated at the start and the end
    assert (config.dataset, config.samples, config.seed, config.device) == ("local", 64, 5, "cpu")
    assert config.upload == "never" and config.work_dir == tmp_path
    assert config.train_data == "hf://HuggingFaceFW/fineweb-edu-score-2"  # online: FineWeb-edu parquet


def test_offline_defaults_and_upload_policies():
    _, config = parse("--offline", "--device", "cpu", "--steps", "0", "--force-upload")
    assert (config.dataset, config.train_data, config.train, config.upload) == (
        "local",
        "local",
        None,
        "always",
    )
    with pytest.raises(ValueError, match="contradict"):
        parse("--force-upload", "--no-upload")
    with pytest.raises(ValueError, match="hf_repo"):
        config_from_args(build_parser().parse_args(["--hf-repo", "no-namespace", "--device", "cpu"]))


def test_online_clients_use_the_wallet_hotkey(make_wallet, bt_cache):
    wallet = make_wallet("miner")
    args, config = parse(
        "--wallet.name",
        "miner",
        "--wallet.path",
        wallet.path,
        "--subtensor.network",
        "local",
        "--device",
        "cpu",
    )
    clients = build_clients(config, args)
    try:
        assert clients.hotkey == wallet.hotkey.ss58_address
        assert type(clients.hub).__name__ == "HfHubClient" and clients.chain.netuid == 29
    finally:
        clients.chain.close()


def test_entry_point_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["neurons/miner.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(Path(__file__).parents[1] / "neurons" / "miner.py"), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--netuid",
        "--wallet.name",
        "--subtensor.network",
        "--competition",
        "--hf-repo",
        "--base",
        "--grow",
        "--steps",
        "--offline",
        "--local-hub",
    ):
        assert flag in out


def test_offline_run_end_to_end_and_resume(tmp_path, capsys):
    from validator_fakes import trained_tiny

    from sn29_growth.tokenizer import embedded_tokenizer

    base = tmp_path / "base"
    save_model(trained_tiny(steps=4), base, tokenizer=embedded_tokenizer())
    comps = tmp_path / "competitions.json"
    comps.write_text(json.dumps(COMPETITIONS))
    argv = [
        *REPO,
        "--offline",
        "--model-dir",
        str(tmp_path / "work"),
        "--local-hub",
        str(tmp_path / "hub"),
        "--competitions",
        str(comps),
        "--base",
        str(base),
        "--steps",
        "3",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--samples",
        "4",
        "--device",
        "cpu",
        "--force-upload",
        "--json",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "published" and report["training"]["steps"] == 3
    chain = FileChain(tmp_path / "work" / "offline-chain.json", offline_hotkey())
    value = chain.read_commitment(offline_hotkey())
    assert value == report["published"]["commitment"]
    mc = ModelCommitment.parse(value)
    hub = LocalHub(tmp_path / "hub")
    assert not hub.is_private("me/grown")
    assert mc.hash == content_hash(hub.repo_dir("me/grown") / mc.commit, offline_hotkey())

    block = chain.commitments()[offline_hotkey()].block
    assert main(argv) == 0  # again: resumed, nothing redone
    again = json.loads(capsys.readouterr().out)
    assert again["published"]["skipped"] == ["uploaded", "committed", "public"]
    assert chain.commitments()[offline_hotkey()].block == block  # not committed again


def test_errors_exit_with_code_2(tmp_path, capsys):
    argv = [*REPO, "--offline", "--model-dir", str(tmp_path), "--competition", "c99", "--device", "cpu"]
    assert main(argv) == 2
    assert "c99" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        ("{not json", "JSON"),
        (json.dumps({"c00": {"reward": 1.0}}), "no valid competition"),
    ],
)
def test_explicit_competitions_that_cannot_be_used_stop_before_anything_is_done(
    tmp_path, capsys, caplog, content, reason
):
    comps = tmp_path / "competitions.json"
    if content is not None:
        comps.write_text(content)
    argv = [*REPO, "--offline", "--model-dir", str(tmp_path / "work"), "--competitions", str(comps)]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"--competitions {comps}" in err and reason in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not any("packaged default" in r.getMessage() for r in caplog.records)  # no fall-back announced
    assert not (tmp_path / "work" / "runs").exists()  # nothing grown, trained or published
