"""Each model file is digested once: the commitment check and the loss-cache key share one pass, the worker
hashes nothing, and a later step reads no bytes of unchanged files (their digests live in the state)."""

from __future__ import annotations

import logging
import os

from validator_fakes import hotkey, in_process_evaluate, make_env, publish

from sn29_growth import digest
from sn29_growth.eval import evaluate as evaluate_module
from sn29_growth.validator.runner import run_steps
from sn29_growth.validator.state import ValidatorState, load_state


def _save(path):
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def test_a_second_step_reads_no_model_bytes_to_hash(tmp_path, monkeypatch, caplog):
    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", _save(tmp_path / "base"), 0), block=10)
    requests = []

    def evaluate(request, timeout):
        requests.append(request)
        return in_process_evaluate(request, timeout)

    clients.evaluate = evaluate
    read: list[str] = []
    real = digest.sha256_file
    monkeypatch.setattr(digest, "sha256_file", lambda path, **kw: read.append(str(path)) or real(path, **kw))

    def no_worker_hash(*args, **kwargs):
        raise AssertionError("the worker re-hashed the model")

    monkeypatch.setattr(evaluate_module, "model_content_hash", no_worker_hash)
    caplog.set_level(logging.INFO)
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert summary.state.models[hotkey(0)].status == "pool"
    assert read and len(read) == len(set(read)), "a file was digested twice"
    assert requests[0]["models"][0]["content_hash"]
    state = load_state(config.model_dir / "validator_state.json")
    assert state.file_digests and all(os.path.exists(p) for p in state.file_digests)

    read.clear()
    summary = run_steps(config, clients, max_steps=1, sleep=lambda s: None)
    assert summary.state.step == 2 and summary.state.models[hotkey(0)].status == "pool"
    assert (
        len(requests) == 2
        and requests[1]["models"][0]["content_hash"] == requests[0]["models"][0]["content_hash"]
    )
    assert read == [], f"the second step read {read}"
    assert any("outside forward passes" in r.getMessage() for r in caplog.records)


def test_digests_follow_the_files_and_stay_bounded(tmp_path):
    from sn29_growth.chain.commitment import directory_hash, hashed_files
    from sn29_growth.eval.cache import model_content_hash
    from sn29_growth.validator.step import model_hashes

    path = _save(tmp_path / "m")
    state = ValidatorState()
    commitment, content = model_hashes(path, state)
    assert commitment == directory_hash(hashed_files(path))
    assert content == model_content_hash(path)
    assert ValidatorState.from_json(state.to_json()).file_digests == state.file_digests  # persisted as is
    config = path / "config.json"
    config.write_text(config.read_text() + " ")  # changed: read again, a new hash
    assert model_hashes(path, state)[0] != commitment
    (path / "tokenizer.json").unlink()
    dropped = digest.DigestMemo(state.file_digests).prune()
    assert dropped == 1 and all(os.path.exists(p) for p in state.file_digests)
