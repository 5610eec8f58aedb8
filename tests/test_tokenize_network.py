"""Where tokenization runs: on the network's stack wherever it can, the emulation only when it cannot
(and then every tokenization and table says so); `sn29 check` runs the tokenizer there."""

from __future__ import annotations

import json

import pytest

from sn29_growth.corpus import Sample
from sn29_growth.eval import tokenizers as eval_tokenizers
from sn29_growth.eval.tokenize import EXACT_ENGINE, TokenizeSettings, tokenize_samples
from sn29_growth.network import exact, sidevenv
from sn29_growth.network.exact import NetworkTokenizer
from sn29_growth.network.sidevenv import NetworkVenvError, SideVenv

WIDE = TokenizeSettings(cap_sample_len=0, max_sequence_len=0)


@pytest.fixture
def folder(save_tiny):
    from sn29_growth.tiny import build_tiny

    return save_tiny(build_tiny("llama-gqa"))


def _set_config(folder, **keys):
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(keys)
    path.write_text(json.dumps(config))


def test_tokenizers_load_on_the_network_stack(folder, corpus):
    tok = eval_tokenizers.load_tokenizer(folder)
    assert isinstance(tok, NetworkTokenizer) and tok.exact
    assert tok.info["versions"]["transformers"] == "4.44.0" and tok.info["versions"]["tokenizers"] == "0.19.1"
    tokens = tokenize_samples(tok, corpus.held_out[:4], WIDE)
    assert tokens.exact and tokens.engine == EXACT_ENGINE
    assert all(t.ids is not None and t.ids[-1] == tok.eos_token_id for t in tokens.items)
    # training reads the same ids (the rule only appends EOS)
    encoded = tok([s.text for s in corpus.held_out[:4]])["input_ids"]
    assert [list(t.ids[:-1]) for t in tokens.items] == encoded


def test_the_emulation_stands_in_only_when_told_or_the_stack_cannot_run(folder, corpus, monkeypatch):
    monkeypatch.setenv(eval_tokenizers.EMULATE_ENV, "1")
    tok = eval_tokenizers.load_tokenizer(folder)
    assert not getattr(tok, "exact", False) and tok.emulation_reason == "SN29_TOKENIZE_EMULATED=1"
    tokens = tokenize_samples(tok, corpus.held_out[:2], WIDE)
    assert not tokens.exact and tokens.engine.startswith("emulated on transformers 5")
    assert "EMULATED" in eval_tokenizers.tokenization_note()

    monkeypatch.delenv(eval_tokenizers.EMULATE_ENV)

    def broken(*args, **kwargs):
        raise NetworkVenvError("pip: no matching distribution for tokenizers==0.19.1")

    monkeypatch.setattr(sidevenv, "ensure", broken)
    tok = eval_tokenizers.load_tokenizer(folder)
    assert "no matching distribution" in tok.emulation_reason
    note = eval_tokenizers.tokenization_note()
    assert note.startswith("tokenization: EMULATED") and "no matching distribution" in note


def test_a_step_table_says_which_engine_tokenized():
    assert (
        eval_tokenizers.tokenization_note() == f"tokenization: exact, on the network's stack ({EXACT_ENGINE})"
    )


def test_an_emulated_tokenization_is_noted_on_the_model_row(folder, corpus, monkeypatch):
    from sn29_growth.eval.competitions import default_competitions
    from sn29_growth.eval.tokenizers import TokenizerPolicy, Tokenizers

    comp = default_competitions()["c00"]
    samples = corpus.held_out[:3]
    exact_row = Tokenizers().choose(folder, "llama", comp, TokenizerPolicy(own=True, fallback=False), samples)
    assert exact_row.note is None and exact_row.tokens.exact
    monkeypatch.setenv(eval_tokenizers.EMULATE_ENV, "1")
    emulated = Tokenizers().choose(folder, "llama", comp, TokenizerPolicy(own=True, fallback=False), samples)
    assert emulated.note and "tokenized by emulation" in emulated.note
    assert emulated.tokens.tokenizer_fingerprint != exact_row.tokens.tokenizer_fingerprint


def test_a_tokenizer_4_44_cannot_load_is_unusable(folder):
    _set_config(folder, tokenizer_class="NoSuchTokenizerFast")
    with pytest.raises(eval_tokenizers.TokenizerUnusable, match="does not load on the network's stack"):
        eval_tokenizers.load_tokenizer(folder)


def test_check_runs_the_tokenizer_on_the_network_stack(folder):
    assert eval_tokenizers.tokenizer_findings_on_network(folder) == ()
    assert eval_tokenizers.check_on_network(folder).ok

    _set_config(folder, tokenizer_class="LlamaTokenizer")  # 4.44: LlamaTokenizerFast prepends its BOS
    (finding,) = eval_tokenizers.tokenizer_findings_on_network(folder)
    assert finding.severity == "error" and finding.code == "round_trip"
    assert "adds a BOS token" in finding.message and "4.44.0" in finding.message
    _set_config(folder, add_bos_token=False)
    assert eval_tokenizers.tokenizer_findings_on_network(folder) == ()

    _set_config(folder, tokenizer_class="NoSuchTokenizerFast")
    (finding,) = eval_tokenizers.tokenizer_findings_on_network(folder)
    assert finding.code == "network_load" and finding.blocks_loading


def test_check_command_reports_the_tokenizer_run(folder, capsys):
    from sn29_growth.cli import main

    _set_config(folder, tokenizer_class="LlamaTokenizer")
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "adds a BOS token" in out
    assert main(["check", "--static-only", str(folder)]) == 0


def test_the_worker_answers_errors_and_goes_on(folder, tmp_path):
    worker = exact.TokenizerWorker()
    try:
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "tokenizer.json").write_text('{"model": {"type": "NoSuchModel"}}')
        with pytest.raises(exact.TokenizerWorkerError):
            exact.load_network_tokenizer(bad, worker)
        tok = exact.load_network_tokenizer(folder, worker)
        assert tok.apply_rule(["a b"], 0, 0, False)[0][2] is None
        worker._proc.kill()  # a dead worker is restarted, and the tokenizer reloaded, on the next call
        worker._proc.wait()
        assert tok.apply_rule(["a b"], 0, 0, False)[0][2] is None and worker.generation == 2
    finally:
        worker.close()


def test_side_venv_specs_are_validated_and_matched():
    with pytest.raises(ValueError, match="steps"):
        SideVenv("x", "X", "/tmp/x", (), (("transformers", "4.44.0"),))
    spec = sidevenv.TOKENIZER_STACK
    assert spec.matches({"transformers": "4.44.0", "tokenizers": "0.19.1"})
    assert not spec.matches({"transformers": "4.44.0", "tokenizers": "0.20.0"})
    assert not spec.matches(None)
    torch_spec = SideVenv("t", "T", "/tmp/t", (("torch==2.13.0",),), (("torch", "2.13.0*"),))
    assert torch_spec.matches({"torch": "2.13.0+cpu"}) and not torch_spec.matches({"torch": "2.12.0"})


def test_the_tokenizer_venv_is_found_beside_this_venv_or_where_told(monkeypatch, tmp_path):
    monkeypatch.setenv(sidevenv.TOKENIZER_STACK.env_var, str(tmp_path / "elsewhere"))
    assert sidevenv.tokenizer_venv_path() == tmp_path / "elsewhere"
    monkeypatch.delenv(sidevenv.TOKENIZER_STACK.env_var)
    found = sidevenv.tokenizer_venv_path()
    assert sidevenv.venv_python(found).is_file()  # the set-up command built it


def test_samples_are_tokenized_in_chunks_with_the_same_result(folder, corpus, monkeypatch):
    tok = eval_tokenizers.load_tokenizer(folder)
    samples = [Sample(f"s{i}", s.text) for i, s in enumerate(corpus.held_out[:7])]
    whole = tokenize_samples(tok, samples, WIDE)
    monkeypatch.setattr(exact, "CHUNK", 2)
    chunked = tokenize_samples(tok, samples, WIDE)
    assert chunked.items == whole.items
    assert tok([s.text for s in samples])["input_ids"] == [list(t.ids[:-1]) for t in whole.items]


def test_a_change_of_hub_settings_restarts_the_worker_and_reloads(folder, monkeypatch):
    """huggingface_hub reads HF_HOME/HF_ENDPOINT/offline once: the worker must follow this process's."""
    worker = exact.TokenizerWorker()
    try:
        tok = exact.load_network_tokenizer(folder, worker)
        assert worker.generation == 1
        monkeypatch.setenv("HF_HOME", str(folder / "elsewhere"))
        assert tok.apply_rule(["a b"], 0, 0, False)[0][2] is None  # reloaded in a fresh worker
        assert worker.generation == 2
        assert tok.apply_rule(["a b"], 0, 0, False)[0][2] is None and worker.generation == 2
    finally:
        worker.close()
