"""Vocabulary growth on tokenizers shaped like real ones: ids with gaps, specials above the merges
vocabulary, sentencepiece-style normalizers with byte fallback, embeddings padded past the tokenizer.

The fast tests build small structural stand-ins with the ``tokenizers`` library (a cl100k-like
byte-level BPE whose special tokens sit above the merges vocabulary with gaps around them; a Llama-2-like
BPE with Prepend/Replace normalizer and byte fallback, declared ``LlamaTokenizer`` with
``add_bos_token: false``). The ``-m slow`` tests grow tiny models carrying the real cl100k, Llama-2 and
Llama-3 tokenizer files with ``sn29 grow`` and check them on the network's stack (transformers 4.44 /
tokenizers 0.19 in the side venv of :mod:`sn29_growth.network.parity`).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from sn29_growth.checkpoint import load_tokenizer, save_model
from sn29_growth.growth.execute import grow_checkpoint
from sn29_growth.growth.spec import GrowthSpec, GrowthStep
from sn29_growth.network.config import NetworkFormatError
from sn29_growth.network.tokenizer import (
    extend_tokenizer_files,
    missing_ids,
    special_added_token,
    tokenizer_json_size,
    with_placeholders,
)
from sn29_growth.tiny import build_tiny

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,   runs of   spaces\tand\ttabs\t\t and trailing   ",
    "Windows line\r\nendings\r\n\r\nand a lone\rcarriage return",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\n\nclass A:\n\tpass\n",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 😀👍🏽🇩🇪 and ZWJ 👩\u200d👩\u200d👧\u200d👦 and \u0301combining e\u0301",
    "numbers 1234567890 3.14159 -42 1e-5 0xFF",
    "<|endoftext|> <s> </s> <unk> <|begin_of_text|><|end_of_text|> <|fim_prefix|>x<|fim_suffix|>",
    "text<|endoftext|>more</s>and<s>",
    "<|extra_|> <|extra_x|> extra_ <|extra",
    "rare chars: \u2581 \x7f \ufeff \U0001f9ec ǅ ﬁ Ⅻ ①",
    "don't won't it's I'm we've they're , . ? ! ' s",
    "",
    " ",
    "\n\n\n",
)


def _training_lines() -> list[str]:
    import pydoc_data.topics

    text = "\n".join(v for _, v in sorted(pydoc_data.topics.topics.items()))[:60_000]
    return [line for line in text.splitlines() if line.strip()]


def cl100k_like(directory: Path) -> tuple[Path, int]:
    """A byte-level BPE of ``n`` merges-vocabulary ids, then, like cl100k, special tokens (in the vocab and
    in ``added_tokens``) at n+1..n+4 and n+20: gaps at n and n+5..n+19. Returns the folder and n."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _training_lines(),
        trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    data = json.loads(tok.to_str())
    n = len(data["model"]["vocab"])
    specials = {
        n + 1: "<|endoftext|>",
        n + 2: "<|fim_prefix|>",
        n + 3: "<|fim_middle|>",
        n + 4: "<|fim_suffix|>",
        n + 20: "<|endofprompt|>",
    }
    data["model"]["vocab"].update({c: i for i, c in specials.items()})
    data["added_tokens"] = [special_added_token(i, c) for i, c in specials.items()]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    config = {
        "tokenizer_class": "GPT2TokenizerFast",
        "add_prefix_space": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory, n


def llama2_like(directory: Path) -> Path:
    """A sentencepiece-style BPE: Prepend("▁") + Replace(" ", "▁") normalizer, no pre-tokenizer, byte
    fallback (<0x00>..<0xFF> at ids 3..258 in the vocab only), <unk>/<s>/</s> added at 0..2, declared
    LlamaTokenizer with ``add_bos_token: false`` and the three in ``added_tokens_decoder``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    tok.train_from_iterator(
        [line[:200] for line in _training_lines()],
        trainers.BpeTrainer(vocab_size=700, special_tokens=specials),
    )
    data = json.loads(tok.to_str())
    data["added_tokens"] = [special_added_token(i, c) for i, c in enumerate(specials[:3])]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "legacy": True,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {k: v for k, v in special_added_token(i, c).items() if k != "id"}
            for i, c in enumerate(specials[:3])
        },
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def tiny_model(directory: Path, tokenizer_dir: Path, rows: int, eos: int) -> Path:
    """A tiny Llama with ``rows`` embedding rows and the tokenizer files of ``tokenizer_dir``."""
    model = build_tiny(
        "llama-gqa",
        seed=0,
        init_std=0.2,
        vocab_size=rows,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    save_model(model, directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / name, directory / name)
    return directory


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def assert_extension_keeps_ids(before: Path, after: Path, new_vocab: int) -> None:
    """``after`` has exactly the ids 0..new_vocab-1; every text encodes and every old id decodes as in
    ``before`` (raw ``tokenizers`` and transformers); each new token is a special token that only its own
    string produces."""
    raw_b = Tokenizer.from_file(str(before / "tokenizer.json"))
    raw_a = Tokenizer.from_file(str(after / "tokenizer.json"))
    tok_b, tok_a = load_tokenizer(before), load_tokenizer(after)
    ids = set(tok_a.get_vocab().values())
    assert ids == set(range(new_vocab)) and len(tok_a) == new_vocab
    for text in TEXTS:
        assert raw_a.encode(text).ids == raw_b.encode(text).ids, text
        assert tok_a(text)["input_ids"] == tok_b(text)["input_ids"], text
    old = raw_b.get_vocab(with_added_tokens=True)
    for i in sorted(old.values()):
        assert raw_a.decode([i], skip_special_tokens=False) == raw_b.decode([i], skip_special_tokens=False)
        assert tok_a.decode([i]) == tok_b.decode([i])
    added = {t["id"]: t for t in _json(after / "tokenizer.json")["added_tokens"]}
    for i in sorted(ids - set(old.values())):
        token = added[i]
        assert token["special"] and not token["normalized"] and token["content"] not in old
        assert raw_a.encode(f"a {token['content']} b").ids.count(i) == 1
        assert tok_a.convert_ids_to_tokens(i) == token["content"]


# ------------------------------------------------------------------------------------------ the rule


def test_len_counts_tokens_not_the_id_range(tmp_path):
    folder, n = cl100k_like(tmp_path / "tok")
    data = _json(folder / "tokenizer.json")
    assert tokenizer_json_size(data) == n + 21
    assert len(load_tokenizer(folder)) == n + 5  # 16 ids (n, n+5..n+19) have no token
    assert missing_ids(data, n + 24) == [n, *range(n + 5, n + 20), n + 21, n + 22, n + 23]


def test_gaps_and_new_rows_get_placeholders(tmp_path):
    folder, n = cl100k_like(tmp_path / "tok")
    dst = tmp_path / "dst"
    dst.mkdir()
    added = extend_tokenizer_files(folder, dst, n + 21, n + 40)
    assert added == 1 + 15 + 19
    assert_extension_keeps_ids(folder, dst, n + 40)
    vocab = _json(dst / "tokenizer.json")["model"]["vocab"]
    assert vocab[f"<|extra_{n}|>"] == n  # gaps are given explicit ids in the model's vocabulary


def test_padded_embedding_rows_get_placeholders_when_growing(tmp_path):
    folder, n = cl100k_like(tmp_path / "tok")
    dst = tmp_path / "grow"
    dst.mkdir()
    assert extend_tokenizer_files(folder, dst, n + 32, n + 48) == 1 + 15 + 27
    assert_extension_keeps_ids(folder, dst, n + 48)
    same = tmp_path / "same"
    same.mkdir()
    assert extend_tokenizer_files(folder, same, n + 32, n + 32) == 0  # no growth: copied byte for byte
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (same / name).read_bytes() == (folder / name).read_bytes()


def test_a_tokenizer_past_the_grown_rows_is_refused(tmp_path):
    folder, n = cl100k_like(tmp_path / "tok")
    dst = tmp_path / "dst"
    dst.mkdir()
    with pytest.raises(NetworkFormatError, match=f"ids up to {n + 20}.*at least {n + 21}"):
        extend_tokenizer_files(folder, dst, n + 10, n + 15)


def test_placeholders_avoid_existing_names(tmp_path):
    folder, n = cl100k_like(tmp_path / "tok")
    data = _json(folder / "tokenizer.json")
    taken = f"<|extra_{n + 21}|>"
    data["model"]["vocab"][taken] = n
    data["added_tokens"].insert(0, special_added_token(n, taken))
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    dst = tmp_path / "dst"
    dst.mkdir()
    extend_tokenizer_files(folder, dst, n + 21, n + 22)
    added = {t["id"]: t["content"] for t in _json(dst / "tokenizer.json")["added_tokens"]}
    assert added[n] == taken and added[n + 21] == f"<|extra_{n + 21}_1|>"
    assert_extension_keeps_ids(folder, dst, n + 22)


def test_positional_vocabularies_cannot_fill_gaps():
    data = {
        "model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["a", -1.0], ["b", -2.0]]},
        "added_tokens": [special_added_token(5, "<eos>")],
    }
    new = [special_added_token(i, f"<|extra_{i}|>") for i in missing_ids(data, 8)]
    with pytest.raises(NetworkFormatError, match="numbers tokens by position"):
        with_placeholders(data, new)
    appended = with_placeholders(data, new[-2:])
    assert [t["id"] for t in appended["added_tokens"]] == [5, 6, 7]


def test_sentencepiece_style_tokenizer_keeps_its_ids(tmp_path):
    folder = llama2_like(tmp_path / "tok")
    size = tokenizer_json_size(_json(folder / "tokenizer.json"))
    dst = tmp_path / "dst"
    dst.mkdir()
    assert extend_tokenizer_files(folder, dst, size, size + 64) == 64
    assert_extension_keeps_ids(folder, dst, size + 64)
    data = _json(dst / "tokenizer.json")
    assert f"<|extra_{size}|>" not in data["model"]["vocab"]  # appended: the model is untouched
    config = _json(dst / "tokenizer_config.json")
    assert config["added_tokens_decoder"][str(size + 63)]["special"] is True
    assert config["add_bos_token"] is False and config["tokenizer_class"] == "LlamaTokenizer"


@pytest.mark.parametrize("kind", ["cl100k", "llama2"])
def test_grow_keeps_the_function_on_the_old_vocabulary(tmp_path, kind):
    if kind == "cl100k":
        tok, n = cl100k_like(tmp_path / "tok")
        rows, eos = n + 21, n + 1
    else:
        tok = llama2_like(tmp_path / "tok")
        rows, eos = tokenizer_json_size(_json(tok / "tokenizer.json")), 2
    src = tiny_model(tmp_path / "src", tok, rows, eos)
    report = grow_checkpoint(
        src, tmp_path / "grown", GrowthSpec((GrowthStep(vocab_size=rows + 32),), seed=0), verify=True
    )
    assert report.tokenizer_added == rows + 32 - tokenizer_json_size(_json(tok / "tokenizer.json")) + len(
        missing_ids(_json(tok / "tokenizer.json"), rows)
    )
    assert_extension_keeps_ids(src, tmp_path / "grown", rows + 32)
    fp32 = report.verification.checks[0]
    assert fp32.dtype == "float32" and fp32.max_abs_logit_diff <= 1e-5
    assert 0 <= fp32.loss_delta <= math.log1p(32 / rows) + 1e-6


# -------------------------------------------------------------------- real tokenizers on transformers 4.44


REAL_CASES = {
    # name: (tokenizer_config.json changes, embedding rows, eos id, grown rows, texts that round-trip)
    "cl100k": ({"tokenizer_class": "GPT2TokenizerFast"}, 100_277, 100_257, 100_533, True),
    "cl100k-padded": ({"tokenizer_class": "GPT2TokenizerFast"}, 100_352, 100_257, 100_608, True),
    # as shipped: adds <s>, so no text passes the SN29 round trip (ids are still compared)
    "llama2": ({}, 32_000, 2, 32_256, False),
    "llama2-no-bos": ({"add_bos_token": False}, 32_000, 2, 32_256, True),
    "llama3": ({}, 128_256, 128_001, 128_512, True),
}


def _texts() -> list[str]:
    import pydoc_data.topics

    prose = [v[:3000] for _, v in sorted(pydoc_data.topics.topics.items())[:8]]
    return [*TEXTS, *prose]


@pytest.fixture(scope="module")
def network_python():
    from sn29_growth.network.parity import NetworkVenvError, ensure_network_venv, venv_python

    try:
        return venv_python(ensure_network_venv())
    except NetworkVenvError as e:
        pytest.skip(f"the network's stack (transformers 4.44) is unavailable: {e}")


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_real_tokenizer_vocab_growth_on_the_network_stack(tmp_path, case, network_python, capsys):
    from real_tokenizers import variant

    from sn29_growth.cli import main as sn29
    from sn29_growth.network.parity import run_legacy

    changes, rows, eos, grown_rows, scored = REAL_CASES[case]
    tok = variant(case.split("-")[0], tmp_path / "tok", **changes)
    src = tiny_model(tmp_path / "src", tok, rows, eos)
    dst = tmp_path / "grown"
    assert sn29(["grow", str(src), str(dst), "--vocab-size", str(grown_rows), "--verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    fp32 = report["verification"]["checks"][0]
    assert fp32["dtype"] == "float32" and fp32["max_abs_logit_diff"] <= 1e-5

    texts = _texts()
    request, response = tmp_path / "request.json", tmp_path / "response.json"
    request.write_text(json.dumps({"pairs": [[str(src), str(dst)]], "texts": texts}), encoding="utf-8")
    script = Path(__file__).with_name("tokenizers44.py")
    done = subprocess.run(
        [str(network_python), "-I", str(script), str(request), str(response)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pair = json.loads(response.read_text(encoding="utf-8"))["pairs"][0]
    assert pair["error"] is None, pair["error"]
    assert pair["contiguous"] and pair["id_range"][1] == grown_rows and pair["len"][1] == grown_rows
    assert pair["ids_differ"] == [] and pair["decode_differ"] == [] and pair["old_id_decode_differ"] == []
    assert pair["new_tokens"] == pair["new_specials"] == grown_rows - pair["len"][0]
    assert pair["new_token_problems"] == []

    # the SN29 rule on 4.44: same ids, losses differ only by the new rows' share of the softmax
    legacy = run_legacy([src, dst], texts[:12])
    before, after = legacy["models"]
    assert before["load_error"] is None and after["load_error"] is None
    bound = math.log1p((grown_rows - rows) / rows)
    finite = sum(a["loss"] is not None for a in before["samples"])
    assert finite >= 8 if scored else finite == 0
    for a, b in zip(before["samples"], after["samples"], strict=True):
        assert a["ids"] == b["ids"] and a["round_trip_ok"] == b["round_trip_ok"]
        if a["loss"] is None:
            assert b["loss"] is None
            continue
        positions = len(a["ids"])  # EOS appended, so len(ids) predictions at most
        assert -1e-5 * abs(a["loss"]) <= b["loss"] - a["loss"] <= positions * bound + 1e-5 * abs(a["loss"])
