"""End to end on CPU: a base committed on chain → the miner grows, trains, checks, uploads and commits →
the validator picks the new model up and it wins.

The chain is the real bittensor SDK over the in-process fake substrate (every commitment is a signed
extrinsic); the Hub is the local-directory Hub (the validator's view hides private repositories); the
validator runs its own step with the in-process evaluator on the embedded corpus's held-out part, while
the miner trains on the train part.
"""

from __future__ import annotations

import json

import pytest
from fake_substrate import NETUID
from validator_fakes import COMPETITIONS, in_process_evaluate, trained_tiny

from sn29_growth.chain.commitment import ModelCommitment, content_hash
from sn29_growth.checkpoint import save_model
from sn29_growth.eval.competitions import CompetitionsSource
from sn29_growth.hub.local import LocalHubClient, add_commit
from sn29_growth.hub.store import DiskBudget, ModelStore
from sn29_growth.miner import MinerClients, MinerConfig, run_miner
from sn29_growth.train import BatchConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from sn29_growth.validator.config import ValidatorConfig
from sn29_growth.validator.runner import run as run_validator
from sn29_growth.validator.step import Clients

pytest_plugins = ("chain_fixtures",)

TRAIN = TrainConfig(
    steps=20,
    eval_every=20,
    optimizer=OptimizerConfig(lr=1e-3),
    schedule=ScheduleConfig(warmup_steps=2),
    batch=BatchConfig(batch_size=8, seq_len=64, eval_windows=16),
    checkpoint=CheckpointConfig(save_every=10),
    device="cpu",
    progress=False,
)


@pytest.fixture
def subnet(tmp_path, fake_chain, make_wallet, chain_client):
    """The chain with a base model committed by another miner, the local Hub, competitions.json."""
    from sn29_growth.tokenizer import embedded_tokenizer

    alice, miner, validator = make_wallet("alice"), make_wallet("miner"), make_wallet("validator")
    fake_chain.register_wallet(NETUID, alice, incentive_u16=65535)
    fake_chain.register_wallet(NETUID, miner)
    fake_chain.register_wallet(NETUID, validator, stake_rao=10**12, validator_permit=True)

    base = tmp_path / "alice-base"
    save_model(trained_tiny(steps=20), base, tokenizer=embedded_tokenizer())
    hub_root = tmp_path / "hub"
    commit = add_commit(hub_root, "alice/base", {p.name: p.read_bytes() for p in base.iterdir()})
    alice_key = alice.hotkey.ss58_address
    digest = content_hash(hub_root / "alice" / "base" / commit, alice_key)
    chain_client(alice).commit(ModelCommitment("alice", "base", commit, digest, "c00").format())

    comp_file = tmp_path / "competitions.json"
    comp_file.write_text(json.dumps(COMPETITIONS))
    return {"miner": miner, "validator": validator, "alice": alice_key, "hub": hub_root, "comps": comp_file}


def test_grown_and_trained_model_is_published_and_wins_the_validator_step(
    tmp_path, subnet, fake_chain, chain_client
):
    miner_chain = chain_client(subnet["miner"])
    hub = LocalHubClient(subnet["hub"])
    clients = MinerClients(
        chain=miner_chain,
        hub=hub,
        hotkey=miner_chain.hotkey,
        competitions=CompetitionsSource(str(subnet["comps"])),
    )
    config = MinerConfig(
        work_dir=tmp_path / "miner",
        competition="c00",
        hf_repo="miner/grown",
        train=TRAIN,
        train_data="local",
        dataset="local",
        samples=8,
        seed=1,
        device="cpu",
    )

    report = run_miner(config, clients)

    assert report.status == "published", report.format()
    assert report.base["hotkey"] == subnet["alice"]  # the chain's best, found through incentive
    g, t, v = report.growth, report.training, report.verdict
    assert g["parameters_before"] < g["parameters_after"] <= 400_000
    assert g["loss_after"] == pytest.approx(g["loss_before"], abs=1e-5)  # growth kept the loss
    assert t["steps"] == 20 and t["final_val_loss"] < t["initial_val_loss"]
    assert v["wins"] and v["win_rate"] > 0.5
    assert v["mean_losses"]["candidate"] < v["mean_losses"]["current-best"]
    print("\n" + report.format())

    value = report.published["commitment"]
    (extrinsic,) = [x for x in fake_chain.extrinsics if x.signer == miner_chain.hotkey]
    assert (extrinsic.function, extrinsic.success) == ("set_commitment", True)  # signed by the miner's hotkey
    reader = chain_client()
    assert reader.read_commitment(miner_chain.hotkey) == value
    assert not hub.hub.is_private("miner/grown")

    # The validator: its own step over the same chain and Hub (private repositories invisible to it).
    vconfig = ValidatorConfig(
        model_dir=tmp_path / "validator",
        dataset="local",
        samples=8,
        seed=0,
        device="cpu",
        weights_interval_blocks=1,
        step_interval_s=0,
    )
    store = ModelStore(
        LocalHubClient(subnet["hub"], hide_private=True),
        tmp_path / "validator" / "hub",
        DiskBudget(margin_bytes=0),
    )
    vclients = Clients(
        chain=chain_client(subnet["validator"]),
        competitions=CompetitionsSource(str(subnet["comps"])),
        store=store,
        evaluate=in_process_evaluate,
    )
    state = run_validator(vconfig, vclients, max_steps=1, sleep=lambda s: None)
    mine, base = state.models[miner_chain.hotkey], state.models[subnet["alice"]]
    assert mine.status == "pool" and not mine.reason, mine.reason  # downloaded, hash-checked, evaluated
    assert mine.win_rate > base.win_rate and mine.mean_loss < base.mean_loss
    weights = dict(zip(fake_chain.weights_log[-1].uids, fake_chain.weights_log[-1].values, strict=True))
    assert max(weights, key=weights.get) == mine.uid

    # Running the same command again resumes: nothing is trained, uploaded or committed twice.
    commits = len(fake_chain.extrinsics)
    again = run_miner(config, clients)
    assert again.status == "published" and tuple(again.published["skipped"]) == (
        "uploaded",
        "committed",
        "public",
    )
    assert again.training["steps"] == 20 and again.run_dir == report.run_dir
    assert len(fake_chain.extrinsics) == commits
