"""The token corpus folder: written atomically and deterministically, read back exactly, damage named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sn29_growth.train.tokens import TokenCorpusError, open_token_corpus, write_token_corpus


@pytest.fixture
def tokenizer_file(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text('{"model": {"type": "BPE"}}')
    return path


def test_round_trip_and_same_bytes(tmp_path, tokenizer_file):
    docs = {"train": [[1, 2, 3], [4, 5]], "held_out": [[6]]}
    a = write_token_corpus(
        tmp_path / "a", tokenizer_file, docs, eos_id=0, vocab_size=10, extra={"sources": ["x"]}
    )
    write_token_corpus(
        tmp_path / "b", tokenizer_file, docs, eos_id=0, vocab_size=10, extra={"sources": ["x"]}
    )
    assert a.tokens("train").tolist() == [1, 2, 3, 0, 4, 5, 0]
    assert a.tokens("held_out").tolist() == [6, 0]
    assert a.splits["train"].documents == 2
    assert a.manifest["sources"] == ["x"]
    for name in ("manifest.json", "train.bin", "held_out.bin", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    open_token_corpus(tmp_path / "a", verify=True)


def test_refuses_ids_outside_vocab_and_leaves_nothing(tmp_path, tokenizer_file):
    with pytest.raises(TokenCorpusError, match="outside"):
        write_token_corpus(tmp_path / "c", tokenizer_file, {"train": [[1, 99]]}, eos_id=0, vocab_size=10)
    assert not (tmp_path / "c").exists()
    assert list(tmp_path.iterdir()) == [tokenizer_file]


def test_damage_is_named(tmp_path, tokenizer_file):
    write_token_corpus(tmp_path / "d", tokenizer_file, {"train": [[1, 2]]}, eos_id=0, vocab_size=10)
    (tmp_path / "d" / "train.bin").write_bytes(np.array([1, 2, 3, 0], dtype="<u2").tobytes())
    with pytest.raises(TokenCorpusError, match="train.bin: 8 bytes"):
        open_token_corpus(tmp_path / "d")
    (tmp_path / "d" / "train.bin").write_bytes(np.array([1, 9, 0], dtype="<u2").tobytes())
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    manifest["splits"]["train"]["tokens"] = 3
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TokenCorpusError, match="sha256"):
        open_token_corpus(tmp_path / "d", verify=True)
    with pytest.raises(TokenCorpusError, match="not a token corpus"):
        open_token_corpus(tmp_path)


def test_a_vocabulary_past_uint16_is_stored_as_uint32(tmp_path, tokenizer_file):
    docs = {"train": [[70_000, 1], [65_536]]}
    corpus = write_token_corpus(tmp_path / "w", tokenizer_file, docs, eos_id=0, vocab_size=128_256)
    assert corpus.dtype == "uint32" and corpus.manifest["dtype"] == "uint32"
    assert list(open_token_corpus(tmp_path / "w", verify=True).tokens("train")) == [70_000, 1, 0, 65_536, 0]
    assert (tmp_path / "w" / "train.bin").stat().st_size == 5 * 4
    with pytest.raises(TokenCorpusError, match="does not fit uint16"):
        write_token_corpus(tmp_path / "x", tokenizer_file, docs, eos_id=0, vocab_size=128_256, dtype="uint16")
