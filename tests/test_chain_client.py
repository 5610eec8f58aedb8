"""The bittensor adapter driving the real SDK over the in-memory chain of ``fake_substrate``."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time

import bittensor as bt
import pytest
from fake_substrate import NETUID, FakeSubstrate

from sn29_growth.chain.bittensor_client import BittensorChainClient, RetryPolicy
from sn29_growth.chain.commitment import ModelCommitment
from sn29_growth.chain.protocol import ChainClient, ChainRejected, ChainUnavailable, RawCommitment

pytest_plugins = ("chain_fixtures",)


def pointer(name: str, competition: str = "c00") -> str:
    digest = base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()
    commit = hashlib.sha1(name.encode()).hexdigest()
    return ModelCommitment("alice", name, commit, digest, competition).format()


@pytest.fixture
def miner(fake_chain, make_wallet):
    wallet = make_wallet("miner")
    fake_chain.register_wallet(NETUID, wallet)
    return wallet


@pytest.fixture
def validator(fake_chain, make_wallet):
    wallet = make_wallet("validator")
    fake_chain.register_wallet(NETUID, wallet, stake_rao=5 * 10**12, validator_permit=True)
    return wallet


def sdk_reader(fake_chain: FakeSubstrate) -> bt.Subtensor:
    """A plain blocking SDK client on the same chain: the SDK's own readers, no adapter involved."""
    return bt.Subtensor("local", substrate=fake_chain)


def test_adapter_satisfies_the_protocol(chain_client):
    assert isinstance(chain_client(), ChainClient)


def test_commit_is_read_back_by_the_sdk_readers(fake_chain, chain_client, miner):
    value = pointer("llama-grown")
    client = chain_client(miner)
    before = client.current_block()
    client.commit(value)

    (extrinsic,) = fake_chain.extrinsics
    assert (extrinsic.module, extrinsic.function, extrinsic.success) == (
        "Commitments",
        "set_commitment",
        True,
    )
    assert extrinsic.signer == miner.hotkey.ss58_address  # signed by the hotkey, not the coldkey
    assert client.current_block() == before + 1

    sdk = sdk_reader(fake_chain)
    try:
        one = sdk.identity.commitment(NETUID, miner.hotkey.ss58_address)
        assert one.data == value
        assert one.block == before + 1
        everything = sdk.subnets.commitments(NETUID)
        assert everything[miner.hotkey.ss58_address].value == value
        assert everything[miner.hotkey.ss58_address].uid == 0
    finally:
        sdk.close()
    assert client.read_commitment(miner.hotkey.ss58_address) == value
    assert ModelCommitment.parse(client.read_commitment(miner.hotkey.ss58_address)).name == "llama-grown"


def test_commitments_of_many_hotkeys_in_one_query(fake_chain, chain_client, make_wallet):
    wallets = [make_wallet(f"m{i}") for i in range(4)]
    for wallet in wallets:
        fake_chain.register_wallet(NETUID, wallet)
    for i, wallet in enumerate(wallets[:3]):
        chain_client(wallet).commit(pointer(f"model-{i}", competition="c01" if i == 2 else "c00"))
    fake_chain.set_commitment_raw(NETUID, "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", pointer("gone"))

    reader = chain_client()
    fake_chain.calls.clear()
    found = reader.commitments()

    assert fake_chain.calls.count("query_map") == 3  # CommitmentOf, RevealedCommitments, Uids
    assert "query" not in fake_chain.calls  # no per-hotkey reads
    assert set(found) == {w.hotkey.ss58_address for w in wallets[:3]}  # unregistered hotkey left out
    for i, wallet in enumerate(wallets[:3]):
        entry = found[wallet.hotkey.ss58_address]
        assert entry == RawCommitment(
            uid=i, hotkey=wallet.hotkey.ss58_address, block=1001 + i, value=entry.value
        )
        assert ModelCommitment.parse(entry.value).name == f"model-{i}"
    assert reader.read_commitment(wallets[3].hotkey.ss58_address) is None


def test_commit_from_an_unregistered_hotkey_is_rejected(fake_chain, chain_client, make_wallet):
    stranger = make_wallet("stranger")
    with pytest.raises(ChainRejected, match="AccountNotAllowedCommit"):
        chain_client(stranger).commit(pointer("x"))
    assert fake_chain.subnets[NETUID].commitments == {}


def test_set_weights_is_recorded_with_the_version_key(fake_chain, chain_client, validator, make_wallet):
    miners = [make_wallet(f"m{i}") for i in range(2)]
    for wallet in miners:
        fake_chain.register_wallet(NETUID, wallet)
    client = chain_client(validator)
    client.set_weights({1: 0.25, 2: 0.75}, version_key=1017)

    (record,) = fake_chain.weights_log
    assert record.version_key == 1017
    assert record.hotkey == validator.hotkey.ss58_address
    assert (record.uid, record.uids) == (0, (1, 2))
    assert record.values == (21845, 65535)  # max-upscaled u16, as the SDK quantizes
    sdk = sdk_reader(fake_chain)
    try:
        assert sdk.weights.weights(NETUID) == {0: pytest.approx({1: 0.25, 2: 0.75}, abs=1e-4)}
    finally:
        sdk.close()

    neurons = client.metagraph()
    assert [n.uid for n in neurons] == [0, 1, 2]
    assert neurons[0].hotkey == validator.hotkey.ss58_address
    assert neurons[0].validator_permit and not neurons[1].validator_permit
    assert neurons[0].stake == pytest.approx(5000.0)


def test_set_weights_refusals_are_chain_rejected(fake_chain, chain_client, validator, miner, make_wallet):
    fake_chain.subnets[NETUID].weights_version_key = 2000
    client = chain_client(validator)
    with pytest.raises(ChainRejected, match="IncorrectWeightVersionKey"):
        client.set_weights({1: 1.0}, version_key=1999)
    client.set_weights({1: 1.0}, version_key=2000)
    with pytest.raises(ChainRejected, match="rate_limited"):  # the SDK's preflight of the rate limit
        client.set_weights({1: 1.0}, version_key=2000)
    fake_chain.advance(10)
    client.set_weights({1: 1.0}, version_key=2000)
    with pytest.raises(ChainRejected, match="NeuronNoValidatorPermit"):
        chain_client(miner).set_weights({0: 1.0}, version_key=2000)
    with pytest.raises(ChainRejected, match="not_registered"):
        chain_client(make_wallet("outsider")).set_weights({1: 1.0}, version_key=2000)
    assert len(fake_chain.weights_log) == 2


@pytest.mark.parametrize("failures", [1, 2])
def test_reads_retry_through_disconnects(fake_chain, chain_client, miner, failures, caplog):
    client = chain_client(miner)
    client.commit(pointer("m"))
    fake_chain.disconnect_next(failures)
    with caplog.at_level(logging.WARNING, logger="sn29_growth.chain.bittensor_client"):
        assert set(client.commitments()) == {miner.hotkey.ss58_address}
    assert fake_chain.pending_faults == 0
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == failures
    assert "RpcConnectionError" in retries[0].getMessage()


def test_connect_is_retried(fake_chain, chain_client):
    fake_chain.disconnect_next(2, method="connect")
    assert chain_client().current_block() == 1000
    assert fake_chain.connects == 1


def test_too_many_disconnects_raise_chain_unavailable(fake_chain, chain_client):
    client = chain_client()
    client.current_block()
    fake_chain.disconnect_next(10)
    with pytest.raises(ChainUnavailable) as caught:
        client.commitments()
    message = str(caught.value)
    assert "commitments" in message and "after 3 attempt(s)" in message
    assert "RpcConnectionError" in message and "exhausting endpoint retries" in message
    assert fake_chain.pending_faults == 7
    assert isinstance(caught.value.__cause__, bt.RpcConnectionError)


def test_timeout_is_honoured(fake_chain, chain_client):
    policy = RetryPolicy(timeout_s=0.2, write_timeout_s=0.2, attempts=2, backoff_s=0.0)
    client = chain_client(retry=policy)
    client.current_block()
    fake_chain.stall_next(1, seconds=30.0)
    start = time.monotonic()
    assert client.current_block() == 1000  # the stalled attempt is cut off, the retry answers
    assert time.monotonic() - start < 2.0

    fake_chain.stall_next(5, seconds=30.0)
    start = time.monotonic()
    with pytest.raises(ChainUnavailable, match=r"no answer within 0\.2s"):
        client.current_block()
    assert time.monotonic() - start < 2.0


def test_real_transport_failures_become_chain_unavailable(bt_cache):
    """The SDK's own RPC backend (no fake) against loopback ports: refused, then silent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    policy = RetryPolicy(timeout_s=0.5, attempts=2, backoff_s=0.0)
    refused = BittensorChainClient(NETUID, network=f"ws://127.0.0.1:{closed_port}", retry=policy)
    with refused, pytest.raises(ChainUnavailable, match="RpcConnectionError: could not connect"):
        refused.current_block()

    with socket.socket() as silent:  # accepts TCP, never answers the websocket handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        stalled = BittensorChainClient(NETUID, network=url, retry=policy)
        with stalled, pytest.raises(ChainUnavailable, match=r"no answer within 0\.5s"):
            stalled.commitments()
        assert time.monotonic() - start < 3.0


def test_lost_submission_that_landed_is_not_committed_twice(fake_chain, chain_client, miner):
    client = chain_client(miner)
    client.current_block()
    fake_chain.disconnect_next(1, landed=True, method="submit")
    client.commit(pointer("m"))
    assert [x.function for x in fake_chain.extrinsics] == ["set_commitment"]
    assert client.read_commitment(miner.hotkey.ss58_address) == pointer("m")


def test_lost_submission_that_did_not_land_is_resubmitted(fake_chain, chain_client, validator, miner):
    client = chain_client(miner)
    fake_chain.disconnect_next(1, method="submit")
    client.commit(pointer("m"))
    assert [x.function for x in fake_chain.extrinsics] == ["set_commitment"]

    fake_chain.disconnect_next(1, method="submit")
    chain_client(validator).set_weights({1: 1.0}, version_key=3)
    assert [(r.uids, r.version_key) for r in fake_chain.weights_log] == [((1,), 3)]


def test_lost_weights_that_landed_are_not_set_twice(fake_chain, chain_client, validator, miner):
    client = chain_client(validator)
    client.current_block()
    fake_chain.disconnect_next(1, landed=True, method="submit")
    client.set_weights({0: 0.5, 1: 0.5}, version_key=3)  # a resubmission would hit the rate limit
    assert len(fake_chain.weights_log) == 1
    assert [x.function for x in fake_chain.extrinsics] == ["set_mechanism_weights"]


def test_commit_reveal_subnet_gets_a_timelocked_commit(fake_chain, chain_client, validator, miner):
    fake_chain.subnets[NETUID].commit_reveal = True
    chain_client(validator).set_weights({1: 1.0}, version_key=5)
    assert fake_chain.weights_log == []  # nothing in plaintext
    (commit,) = fake_chain.weight_commits
    assert commit.hotkey == validator.hotkey.ss58_address
    assert commit.reveal_round > 0 and len(commit.commit) > 100


def test_invalid_arguments_fail_before_the_chain(fake_chain, chain_client, miner):
    reader = chain_client()
    with pytest.raises(ValueError, match="needs a wallet"):
        reader.commit(pointer("m"))
    client = chain_client(miner)
    with pytest.raises(ValueError, match="at most 128"):
        client.commit("x" * 129)
    for bad in ({}, {0: 0.0}, {0: float("nan")}, {-1: 1.0}, {0: -1.0}):
        with pytest.raises(ValueError, match="weights"):
            client.set_weights(bad, version_key=1)
    assert fake_chain.calls == []


def test_missing_subnet_is_rejected(fake_chain, bt_cache):
    client = BittensorChainClient(7, network="local", substrate=fake_chain)
    try:
        with pytest.raises(ChainRejected, match="subnet 7 does not exist"):
            client.metagraph()
        assert client.commitments() == {}
    finally:
        client.close()


def test_close(fake_chain, chain_client):
    client = chain_client()
    client.current_block()
    client.close()
    client.close()
    assert not fake_chain.connected
    with pytest.raises(RuntimeError, match="closed"):
        client.current_block()
