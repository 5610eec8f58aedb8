"""Fakes and builders for validator tests: an in-memory chain, a faulty local Hub, tiny published models."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from fake_hub_faults import FaultyHubClient

from sn29_growth.chain.commitment import ModelCommitment, content_hash
from sn29_growth.chain.protocol import ChainUnavailable, Neuron, RawCommitment
from sn29_growth.eval.competitions import parse_competitions
from sn29_growth.eval.request import handle_request
from sn29_growth.eval.worker import result_of
from sn29_growth.hub.local import add_commit
from sn29_growth.hub.store import DiskBudget, ModelStore
from sn29_growth.validator.config import ValidatorConfig
from sn29_growth.validator.step import Clients

COMPETITIONS = {
    "default": {
        "group_samples": 1,
        "pool_size": 3,
        "pend_size": 3,
        "advantage_initial": 0.004,
        "advantage_decay": 0.995,
        "weight_skew_factor": 2.0,
        "free_tokenizer": True,
        "max_sequence_len": 1024,
        "cap_sample_len": 4000,
        "dataset": "fineweb2",
        "eval_samples": 8,
    },
    "c00": {
        "reward": 0.5,
        "model_types": ["LlamaForCausalLM"],
        "model_size": 5_000_000,
        "parameters": 400_000,
    },
    "c01": {
        "reward": 0.5,
        "model_types": ["Phi3ForCausalLM"],
        "model_size": 5_000_000,
        "parameters": 400_000,
    },
}


@functools.cache
def hotkey(i: int) -> str:
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(f"//miner{i}").ss58_address


class MemoryChain:
    """ChainClient in memory: commitments by hotkey, recorded weights, injectable disconnects."""

    def __init__(self, block: int = 1_000, blocks_per_query: int = 50) -> None:
        self.block = block
        self.blocks_per_query = blocks_per_query
        self.raw: dict[str, RawCommitment] = {}
        self.weights: list[tuple[int, dict[int, float], int]] = []
        self.fail_next: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        if self.fail_next.get(op, 0) > 0:
            self.fail_next[op] -= 1
            raise ChainUnavailable(f"{op}: connection dropped (injected)")

    def current_block(self) -> int:
        self._maybe_fail("current_block")
        self.block += self.blocks_per_query
        return self.block

    def metagraph(self) -> list[Neuron]:
        return [
            Neuron(uid=r.uid, hotkey=h, stake=0.0, incentive=0.0, validator_permit=False)
            for h, r in self.raw.items()
        ]

    def commitments(self) -> dict[str, RawCommitment]:
        self._maybe_fail("commitments")
        return dict(self.raw)

    def set_weights(self, weights: dict[int, float], version_key: int) -> None:
        self._maybe_fail("set_weights")
        self.weights.append((self.block, dict(weights), version_key))

    def commit(self, value: str) -> None:
        raise NotImplementedError

    def read_commitment(self, hotkey: str) -> str | None:
        rc = self.raw.get(hotkey)
        return rc.value if rc else None

    def put(self, uid: int, value: str, block: int | None = None) -> None:
        self.raw[hotkey(uid)] = RawCommitment(
            uid=uid, hotkey=hotkey(uid), block=block or self.block, value=value
        )


def files_of(model_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(model_dir).iterdir()) if p.is_file()}


def publish(
    hub_root: Path,
    repo_id: str,
    model_dir: Path,
    uid: int,
    competition: str = "c00",
    *,
    files: dict[str, bytes] | None = None,
    hash_override: str | None = None,
) -> str:
    """Commit ``model_dir`` to the local Hub as ``repo_id``; return the SN29 commitment string for ``uid``."""
    commit = add_commit(hub_root, repo_id, files or files_of(model_dir))
    snap = Path(hub_root) / repo_id / commit
    digest = hash_override or content_hash(snap, hotkey(uid))
    ns, name = repo_id.split("/")
    return ModelCommitment(ns, name, commit, digest, competition).format()


def in_process_evaluate(request, timeout_s):
    return result_of(handle_request(request), 0.0)


def make_env(tmp_path: Path, *, free_bytes=None, **config_overrides):
    """A validator config + clients over MemoryChain, a local Hub and the in-process evaluator."""
    comp_file = tmp_path / "competitions.json"
    comp_file.write_text(json.dumps(COMPETITIONS))
    from sn29_growth.eval.competitions import CompetitionsSource

    hub_root = tmp_path / "hub"
    hub_root.mkdir(exist_ok=True)
    client = FaultyHubClient(hub_root)
    kwargs = {} if free_bytes is None else {"free_bytes": free_bytes}
    store = ModelStore(client, tmp_path / "vd" / "hub", DiskBudget(margin_bytes=0), **kwargs)
    chain = MemoryChain()
    settings = dict(
        model_dir=tmp_path / "vd",
        dataset="local",
        samples=8,
        seed=0,
        device="cpu",
        weights_interval_blocks=100,
        step_interval_s=0,
    )
    settings.update(config_overrides)
    config = ValidatorConfig(**settings)
    clients = Clients(
        chain=chain,
        competitions=CompetitionsSource(str(comp_file)),
        store=store,
        evaluate=in_process_evaluate,
    )
    assert parse_competitions(COMPETITIONS).rejected == {}
    return config, clients, chain, client, hub_root


def trained_tiny(steps: int = 25, seed: int = 0, variant: str = "llama-gqa"):
    """A tiny model trained briefly on the corpus's train part: it beats the untrained one on held-out text."""
    from sn29_growth.corpus import load_corpus
    from sn29_growth.lm import encode
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    model = build_tiny(variant, seed=seed).train()
    seqs = encode(embedded_tokenizer(), [s.text for s in load_corpus().train[:64]], max_len=96)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = [seqs[i] for i in torch.randint(0, len(seqs), (8,), generator=g)]
        n = min(len(s) for s in batch)
        ids = torch.stack([s[:n] for s in batch])
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
