"""The validator step over injected clients: discover → download → check → evaluate → score → weights."""

from __future__ import annotations

import pytest
from validator_fakes import hotkey, make_env, publish, trained_tiny

from sn29_growth.checkpoint import save_model
from sn29_growth.tiny import build_tiny
from sn29_growth.validator.runner import run
from sn29_growth.validator.state import load_state
from sn29_growth.validator.step import step


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved checkpoints: an untrained base, a trained (better) model, a Phi3."""
    from sn29_growth.tokenizer import embedded_tokenizer

    root = tmp_path_factory.mktemp("models")
    tok = embedded_tokenizer()
    out = {}
    for name, model in {
        "base": build_tiny("llama-gqa", seed=0),
        "trained": trained_tiny(),
        "phi3": build_tiny("phi3", seed=0),
    }.items():
        save_model(model, root / name, tokenizer=tok)
        out[name] = root / name
    return out


def test_step_scores_commitments_and_sets_weights(tmp_path, models):
    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", models["base"], 0), block=100)
    chain.put(1, publish(hub, "bob/trained", models["trained"], 1), block=200)
    chain.put(2, publish(hub, "carol/phi", models["phi3"], 2, "c01"), block=150)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    recs = {r.uid: r for r in state.models.values()}
    assert recs[1].win_rate == 1.0 and recs[0].win_rate == 0.0  # the trained model takes every sample
    assert recs[2].status == "pool" and recs[2].win_rate == 1.0
    assert recs[1].mean_loss < recs[0].mean_loss
    ((block, weights, version),) = chain.weights
    assert weights[1] == pytest.approx(0.5) and weights[2] == pytest.approx(0.5) and weights.get(0, 0) == 0
    assert sum(weights.values()) == pytest.approx(1.0)
    saved = load_state(config.state_path)
    assert saved.last_weights_block == block and saved.ema_weights


def test_weights_only_every_interval_and_ema_persists(tmp_path, models):
    config, clients, chain, _, hub = make_env(tmp_path, weights_interval_blocks=100)
    chain.put(0, publish(hub, "alice/base", models["base"], 0), block=100)
    chain.put(1, publish(hub, "bob/trained", models["trained"], 1), block=200)
    run(config, clients, max_steps=3, sleep=lambda s: None)  # blocks 1050, 1100, 1150
    assert [b for b, _, _ in chain.weights] == [1050, 1150]
    state = load_state(config.state_path)
    assert state.ema_weights["1"] == pytest.approx(1.0)


def test_recommitted_pool_model_is_fetched_next_step(tmp_path, models):
    config, clients, chain, hub_client, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", models["base"], 0), block=100)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    assert state.pools["c00"] == [hotkey(0)]
    chain.put(0, publish(hub, "alice/trained", models["trained"], 0), block=chain.block)
    step(state, clients, config)
    rec = state.models[hotkey(0)]
    assert rec.label == "alice/trained" and rec.status == "pool" and rec.last_eval_step == state.step


def test_duplicates_and_copies_are_rejected(tmp_path, models):
    config, clients, chain, _, hub = make_env(tmp_path)
    original = publish(hub, "alice/base", models["base"], 0)
    chain.put(0, original, block=100)
    # Same repo+commit by a later hotkey (its hash cannot match, but the duplicate rule comes first).
    chain.put(1, original, block=300)
    # Byte-identical content re-uploaded under another name and hotkey.
    chain.put(2, publish(hub, "mallory/copy", models["base"], 2), block=400)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    recs = {r.uid: r for r in state.models.values()}
    assert recs[0].status == "pool"
    assert recs[1].status == "rejected" and "duplicate" in recs[1].reason
    assert recs[2].status == "rejected" and "byte-identical" in recs[2].reason


def test_injected_models_are_scored_but_never_weighted(tmp_path, models):
    from sn29_growth.validator.entries import ModelEntry

    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", models["base"], 0), block=100)
    clients.entries = [ModelEntry(model=str(models["trained"]), block=150, label="bench")]
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    bench = state.models["injected:bench"]
    assert bench.win_rate == 1.0  # the benchmark wins every sample ...
    assert not chain.weights  # ... but gets no weight, and all-zero weights are never sent
    clients.entries = [ModelEntry(model=str(models["phi3"]), block=150, label="bench")]
    chain.put(1, publish(hub, "bob/trained", models["trained"], 1), block=200)
    run(config, clients, max_steps=1, sleep=lambda s: None)
    ((_, weights, _),) = chain.weights
    assert state.models["injected:bench"].uid not in weights
    assert weights[1] == pytest.approx(1.0)  # c01 has only the injected model: its share goes to c00


def test_the_step_table_names_the_competitions_file_it_scores_with(tmp_path, models):
    from sn29_growth.validator.state import ValidatorState

    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", models["base"], 0), block=100)
    comp_file = tmp_path / "competitions.json"
    report = step(ValidatorState(), clients, config)
    assert f"competitions: {comp_file}" in report.format_table()
    comp_file.write_text("{broken")  # a bad re-read: the last good copy is kept, and the table says so
    clients.competitions.min_interval_s = 0.0
    report = step(ValidatorState(), clients, config)
    table = report.format_table()
    assert f"reading {comp_file} failed" in table and "using the last good copy" in table
