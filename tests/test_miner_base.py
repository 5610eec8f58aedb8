"""Finding the base: the chain's best committed model (hash-checked like a validator), or a named one."""

from __future__ import annotations

import pytest
from validator_fakes import COMPETITIONS, hotkey, publish

from sn29_growth.chain.commitment import ModelCommitment
from sn29_growth.checkpoint import save_model
from sn29_growth.eval.competitions import parse_competitions
from sn29_growth.hub.local import LocalHubClient
from sn29_growth.hub.store import DiskBudget, ModelStore
from sn29_growth.miner.base import BaseNotFound, find_base, ranked_commitments
from sn29_growth.miner.offline import FileChain
from sn29_growth.tiny import build_tiny

COMPS = parse_competitions(COMPETITIONS)
C00 = COMPS["c00"]
WRONG_HASH = "A" * 43 + "="


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from sn29_growth.tokenizer import embedded_tokenizer

    root = tmp_path_factory.mktemp("base-models")
    tok = embedded_tokenizer()
    out = {}
    for name, model in {
        "a": build_tiny("llama-gqa", seed=0),
        "b": build_tiny("llama-gqa", seed=1),
        "big": build_tiny("llama-gqa", seed=0, num_hidden_layers=12),
    }.items():
        save_model(model, root / name, tokenizer=tok)
        out[name] = root / name
    return out


@pytest.fixture
def env(tmp_path):
    hub_root = tmp_path / "hub"
    hub_root.mkdir()
    chain = FileChain(tmp_path / "chain.json", hotkey(9))
    store = ModelStore(LocalHubClient(hub_root), tmp_path / "cache", DiskBudget(margin_bytes=0))
    return chain, store, hub_root


def test_ranking_by_incentive_then_age(env, models):
    chain, _, hub = env
    a = publish(hub, "alice/a", models["a"], 0)
    b = publish(hub, "bob/b", models["b"], 1)
    chain.put(hotkey(0), a, block=100, incentive=0.2)
    chain.put(hotkey(1), b, block=200, incentive=0.7)
    chain.put(hotkey(2), publish(hub, "carol/p", models["a"], 2, "c01"), block=50, incentive=1.0)
    chain.put(hotkey(3), "not a commitment", block=10, incentive=1.0)
    chain.put(hotkey(4), b, block=300, incentive=0.9)  # the same repo+commit, later: does not count
    ranked = ranked_commitments(chain, "c00")
    assert [c.raw.hotkey for c in ranked] == [hotkey(1), hotkey(0)]
    chain.put(hotkey(1), b, block=200, incentive=0.0)
    chain.put(hotkey(0), a, block=100, incentive=0.0)
    assert [c.raw.hotkey for c in ranked_commitments(chain, "c00")] == [
        hotkey(0),
        hotkey(1),
    ]  # no incentive: oldest


def test_best_on_chain_is_downloaded_and_hash_checked(env, models):
    chain, store, hub = env
    chain.put(hotkey(0), publish(hub, "alice/a", models["a"], 0), block=100, incentive=0.3)
    forged = publish(hub, "bob/b", models["b"], 1, hash_override=WRONG_HASH)
    chain.put(hotkey(1), forged, block=200, incentive=0.9)
    base = find_base(None, C00, chain, store)
    assert base.committed.raw.hotkey == hotkey(0) and base.label == "alice/a" and base.block == 100
    assert (base.path / "model.safetensors").read_bytes() == (models["a"] / "model.safetensors").read_bytes()


def test_a_model_over_the_limit_is_skipped(env, models):
    chain, store, hub = env
    chain.put(hotkey(0), publish(hub, "alice/big", models["big"], 0), block=100, incentive=0.9)
    with pytest.raises(BaseNotFound, match="above the limit"):
        find_base(None, C00, chain, store)


def test_nothing_committed(env):
    chain, store, _ = env
    with pytest.raises(BaseNotFound, match="no commitment"):
        find_base(None, C00, chain, store)


def test_named_local_directory(env, models):
    chain, store, _ = env
    base = find_base(str(models["a"]), C00, chain, store)
    assert base.path == models["a"].resolve() and base.committed is None
    with pytest.raises(ValueError, match="above the limit"):
        find_base(str(models["big"]), C00, chain, store)


def test_named_hub_model_matching_a_commitment_carries_its_block(env, models):
    chain, store, hub = env
    value = publish(hub, "alice/a", models["a"], 0)
    chain.put(hotkey(0), value, block=123)
    base = find_base("alice/a", C00, chain, store)  # main resolves to the committed revision
    assert base.block == 123 and base.committed.model == ModelCommitment.parse(value)
    plain = find_base(f"bob/b@{publish(hub, 'bob/b', models['b'], 1).split(':')[2]}", C00, chain, store)
    assert plain.committed is None and plain.label.startswith("bob/b@")


def _hostile(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _nested_config(path):
    (path / "config.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def _million_layers(path):
    import json

    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=10_000_000, hidden_size=1)))


def _panicking_tokenizer(path):
    import json

    tok = json.loads((path / "tokenizer.json").read_text())
    tok["normalizer"] = {"type": "Replace", "pattern": {"Regex": ""}, "content": "x"}
    (path / "tokenizer.json").write_text(json.dumps(tok))


def test_hostile_current_bests_are_skipped_for_the_next_best(env, models, tmp_path):
    """The chain's top three are hostile (a config nested 100k deep, 10M layers, a tokenizer that panics):
    each is skipped with its reason, and the honest fourth becomes the base."""
    chain, store, hub = env
    for uid, (name, edit) in enumerate(
        (("nested", _nested_config), ("layers", _million_layers), ("panic", _panicking_tokenizer)), start=1
    ):
        path = _hostile(models["b"], tmp_path / name, edit)
        chain.put(
            hotkey(uid), publish(hub, f"eve/{name}", path, uid), block=10 * uid, incentive=1.0 - uid / 10
        )
    chain.put(hotkey(0), publish(hub, "alice/a", models["a"], 0), block=500, incentive=0.1)
    from sn29_growth.miner.base import best_on_chain

    base, problems = best_on_chain(chain, C00, store)
    assert base.label == "alice/a"
    assert len(problems) == 3
    assert "nested 100000 levels deep" in problems[0]
    assert "outside 1..1,024" in problems[1]
    assert "PanicException" in problems[2]
