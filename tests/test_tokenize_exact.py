"""The exact tokenization path on small stand-ins of the real tokenizer families (no downloads).

Two tiny BPE tokenizers are trained here on the embedded corpus, each built like a real family whose
pipeline transformers 5 rebuilds differently from the network's transformers 4.44: a cl100k-style one
(Split regex + byte level, declared ``GPT2TokenizerFast``) and a Llama-style one (sentencepiece-like
normalizer, byte fallback, declared ``LlamaTokenizer`` with ``add_bos_token: false``). The package must
give what the files themselves declare, as 4.44 does; transformers 5's reading is shown to differ, so a
regression to it fails here. Then the cache key, and the worker's robustness.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from standin_tokenizers import (
    PUNCTUATED,
    SPECIALS,
    build_split_regex_folder,
    training_texts,
    write_folder,
)
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

from sn29_growth.corpus import Sample, load_corpus
from sn29_growth.eval.tokenize import TokenizeSettings, tokenize_samples
from sn29_growth.eval.tokenizers import TokenizerUnusable, emulated_tokenizer, load_tokenizer
from sn29_growth.network.exact import NetworkTokenizer, TokenizerWorkerError, shared_worker


def probe_texts() -> list[str]:
    return [
        PUNCTUATED,
        "(the) [model] {is} 'S here",
        "Digits 1234567 and 3.14159, 2026-12-07.",
        "line\r\nnext\n\n  spaced   out ",
        *[s.text[:200] for s in load_corpus().held_out[:4]],
    ]


@pytest.fixture(scope="module")
def split_regex_folder(tmp_path_factory) -> Path:
    return build_split_regex_folder(tmp_path_factory.mktemp("split-regex"))


def llama_normalizer():
    return normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    """Llama-style: "▁" normalizer, BPE with byte fallback, a post-processor that prepends ``<s>``, and
    ``add_bos_token: false`` in the config (4.44's LlamaTokenizerFast rebuilds the post-processor from it)."""
    trained = Tokenizer(models.BPE())
    trained.normalizer = llama_normalizer()
    trained.train_from_iterator(training_texts(), trainers.BpeTrainer(vocab_size=400, show_progress=False))
    model = json.loads(trained.to_str())["model"]
    vocab = {t: i for i, t in enumerate([*SPECIALS, *(f"<0x{b:02X}>" for b in range(256))])}
    for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.normalizer = llama_normalizer()
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "legacy": True,
    }
    return write_folder(tmp_path_factory.mktemp("llama"), tok, config)


def samples(texts: list[str]) -> list[Sample]:
    return [Sample(f"t#{i}", text) for i, text in enumerate(texts)]


NO_LIMITS = TokenizeSettings(0, 0)


# ---- 1. a Split-regex tokenizer declared GPT2TokenizerFast keeps its own pre-tokenizer


def test_split_regex_tokenizer_keeps_the_pipeline_its_file_declares(split_regex_folder):
    texts = probe_texts()
    raw = Tokenizer.from_file(str(split_regex_folder / "tokenizer.json"))
    tok = load_tokenizer(split_regex_folder)
    assert isinstance(tok, NetworkTokenizer) and tok.class_name == "GPT2TokenizerFast"
    tokens = tokenize_samples(tok, samples(texts), NO_LIMITS)
    assert tokens.rejection(0) is None
    for text, item in zip(texts, tokens.items, strict=True):
        assert item.ids == (*raw.encode(text).ids, tok.eos_token_id), text

    from transformers import AutoTokenizer

    v5 = AutoTokenizer.from_pretrained(str(split_regex_folder))
    differ = [t for t in texts if v5(t)["input_ids"] != raw.encode(t).ids]
    assert PUNCTUATED in differ  # transformers 5 rebuilds GPT-2's regex: "(hello" is no longer one piece


# ---- 2. a Llama-style tokenizer with add_bos_token false gets no BOS


def test_llama_tokenizer_without_bos_round_trips(llama_folder):
    texts = [*probe_texts(), " leading space", "é 中 👍🏽 unseen bytes"]
    tok = load_tokenizer(llama_folder)
    assert tok.class_name == "LlamaTokenizerFast" and tok.bos_token_id == 1
    tokens = tokenize_samples(tok, samples(texts), NO_LIMITS)
    assert [t.failure for t in tokens.items] == [None] * len(texts)
    assert tokens.rejection(0) is None
    assert all(t.ids[0] != tok.bos_token_id and t.ids[-1] == tok.eos_token_id for t in tokens.items)

    from transformers import AutoTokenizer

    v5 = AutoTokenizer.from_pretrained(str(llama_folder))
    assert all(v5(t)["input_ids"][0] == 1 for t in texts)  # transformers 5 prepends <s> regardless
    emulated = tokenize_samples(emulated_tokenizer(llama_folder), samples(texts), NO_LIMITS)
    assert emulated.rejection(0) is not None


# ---- 3. the cache key and the engine


def test_exact_and_emulated_loads_never_share_a_cache_key(llama_folder):
    some = samples(probe_texts()[:2])
    exact = tokenize_samples(load_tokenizer(llama_folder), some, NO_LIMITS)
    emulated = tokenize_samples(emulated_tokenizer(llama_folder), some, NO_LIMITS)
    assert exact.tokenizer_fingerprint != emulated.tokenizer_fingerprint
    assert exact.engine == "transformers 4.44.0 / tokenizers 0.19.1" and exact.exact
    assert emulated.engine.startswith("emulated on transformers 5") and not emulated.exact


# ---- 4. the worker survives hostile tokenizers, its own death and forks


def worker_pid() -> int:
    proc = shared_worker()._proc
    assert proc is not None
    return proc.pid


def panicking_folder(root: Path) -> Path:
    """A Precompiled normalizer whose char map makes tokenizers 0.19 panic (index out of bounds)."""
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 1, "content": "</s>", "special": True, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AQAAAA=="},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "</s>": 1, "a": 2}, "unk_token": "<unk>"},
    }  # fmt: skip
    root.mkdir()
    (root / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    (root / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>"}), encoding="utf-8"
    )
    return root


def test_hostile_tokenizers_fail_cleanly_and_the_worker_goes_on(tmp_path, llama_folder):
    load_tokenizer(llama_folder)
    pid = worker_pid()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"model": {"type": "NoSuchModel"}}', encoding="utf-8")
    with pytest.raises(TokenizerUnusable, match="does not load on the network's stack"):
        load_tokenizer(broken)
    with pytest.raises((TokenizerUnusable, TokenizerWorkerError), match="PanicException"):
        tok = load_tokenizer(panicking_folder(tmp_path / "panics"))
        tokenize_samples(tok, samples(["a a"]), NO_LIMITS)
    assert worker_pid() == pid
    tokens = tokenize_samples(load_tokenizer(llama_folder), samples(["still served"]), NO_LIMITS)
    assert tokens.rejection(0) is None and worker_pid() == pid


def test_a_killed_worker_is_restarted_and_the_tokenizer_reloaded(llama_folder):
    tok = load_tokenizer(llama_folder)
    some = samples(probe_texts()[:3])
    before = tok.apply_rule([s.text for s in some], 0, 0, False)
    pid = worker_pid()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert tok.apply_rule([s.text for s in some], 0, 0, False) == before
    assert worker_pid() != pid


def _tokenize_in_child(tok: NetworkTokenizer, texts: list[str], answers) -> None:
    try:
        answers.put((tok.apply_rule(texts, 0, 0, False), worker_pid()))
    except BaseException as e:
        answers.put((f"{type(e).__name__}: {e}", None))


def test_a_forked_child_gets_its_own_worker(llama_folder):
    tok = load_tokenizer(llama_folder)
    texts = probe_texts()[:3]
    expected = tok.apply_rule(texts, 0, 0, False)
    pid = worker_pid()
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_tokenize_in_child, args=(tok, texts, answers))
    child.start()
    items, child_worker = answers.get(timeout=60)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert items == expected and child_worker != pid
    assert tok.apply_rule(texts, 0, 0, False) == expected and worker_pid() == pid


# ---- 5. the worker's fast decode is tokenizer.decode, exactly

DECODE_CHECK = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("tok44", sys.argv[1])
tok44 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tok44)
from transformers import AutoTokenizer
request = json.loads(sys.stdin.read())
mismatches = []
for folder in request["folders"]:
    tok = AutoTokenizer.from_pretrained(folder)
    rows = [tok(t)["input_ids"] for t in request["texts"]] + [[], [tok.eos_token_id], list(range(300))]
    for ids in rows:
        if tok44.decode(tok, ids) != tok.decode(ids):
            mismatches.append([folder, ids])
print(json.dumps(mismatches))
"""


def test_worker_decode_equals_tokenizer_decode(split_regex_folder, llama_folder, tmp_path):
    import subprocess

    from sn29_growth.network import sidevenv
    from sn29_growth.network.exact import WORKER_SCRIPT

    venv = sidevenv.ensure(sidevenv.TOKENIZER_STACK, sidevenv.tokenizer_venv_path())
    request = {"folders": [str(split_regex_folder), str(llama_folder)], "texts": probe_texts()}
    done = subprocess.run(
        [str(sidevenv.venv_python(venv)), "-I", "-c", DECODE_CHECK, str(WORKER_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            "TRANSFORMERS_VERBOSITY": "error",
        },
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
