"""Text sources, packing, the shuffled stream and its resumable position, sharding by rank."""

from __future__ import annotations

import json

import pytest
import torch

from sn29_growth.corpus import Sample
from sn29_growth.train.data import (
    CorpusTexts,
    DataPosition,
    FileTexts,
    PackedStream,
    SampledTexts,
    evenly_spaced,
    pack,
    rank_share,
    source_from_arg,
    token_stream,
    validation_windows,
)


def test_pack_predicts_every_token_once():
    stream = torch.arange(23, dtype=torch.int32)
    windows = pack(stream, 5)
    assert windows.shape == (4, 6)
    assert torch.equal(windows[:, 1:].reshape(-1), torch.arange(1, 21, dtype=torch.int32))
    assert torch.equal(windows[1:, 0], windows[:-1, -1])  # consecutive windows overlap by one token
    assert pack(torch.arange(3), 5).shape == (0, 6)


def test_token_stream_appends_eos(tokenizer):
    stream = token_stream(tokenizer, ["Hello world", "again"])
    ids = tokenizer("Hello world")["input_ids"] + [0] + tokenizer("again")["input_ids"] + [0]
    assert stream.tolist() == ids and stream.dtype == torch.int32


def test_corpus_sources_use_the_split(corpus):
    assert CorpusTexts("train").texts(0) == [s.text for s in corpus.train]
    assert CorpusTexts("held_out").texts(3) == [s.text for s in corpus.held_out]
    with pytest.raises(ValueError, match="split"):
        CorpusTexts("test")


def test_stream_is_deterministic_and_resumable(tokenizer):
    texts = [" ".join(str(i * 1000 + j) for j in range(12)) for i in range(40)]

    class Texts:
        name = "synthetic"

        def texts(self, epoch):
            return texts

    a = PackedStream(Texts(), tokenizer, seq_len=8, seed=3)
    b = PackedStream(Texts(), tokenizer, seq_len=8, seed=3)
    n = a.epoch_windows(0).shape[0]
    pos, seen = DataPosition(), []
    for _ in range(n // 4 + 2):  # runs into the next epoch
        batch, pos = a.take(pos, 4)
        seen.append(batch)
    assert pos.epoch == 1 and pos.cursor == 8
    # a fresh stream restored at a saved position yields the same windows
    again, _ = b.take(DataPosition(1, 4), 4)
    assert torch.equal(again, seen[-1]) and again.dtype == torch.int64
    first_epoch = torch.cat(seen[: n // 4])
    assert first_epoch.shape[0] == n // 4 * 4
    assert len({tuple(w.tolist()) for w in first_epoch}) == first_epoch.shape[0]  # no window twice
    assert not torch.equal(a.epoch_windows(0), a.epoch_windows(1))  # each epoch has its own order
    c = PackedStream(Texts(), tokenizer, seq_len=8, seed=4)
    assert not torch.equal(c.epoch_windows(0), b.epoch_windows(0))
    with pytest.raises(ValueError, match="batch_size"):
        a.take(DataPosition(), n + 1)


def test_rank_shares_rebuild_the_global_batch():
    batch = torch.arange(24).reshape(8, 3)
    shares = [rank_share(batch, r, 4) for r in range(4)]
    assert torch.equal(torch.cat(shares), batch)
    with pytest.raises(ValueError):
        rank_share(batch, 0, 3)


def test_file_sources(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first line\n\nsecond line\n")
    assert FileTexts(txt).texts(0) == ["first line", "second line"]
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two", "id": 2}) + "\n")
    assert FileTexts(jsonl).texts(0) == ["one", "two"]
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"txt": 1}\n')
    with pytest.raises(ValueError, match="c.jsonl:1"):
        FileTexts(bad).texts(0)
    assert isinstance(source_from_arg("local"), CorpusTexts)
    assert source_from_arg(str(txt)).name == f"file:{txt}"
    with pytest.raises(FileNotFoundError):
        source_from_arg(str(tmp_path / "missing.txt"))


def test_sampled_texts_draw_new_rows_each_epoch():
    calls = []

    class FakeRows:
        name = "fake rows"

        def samples(self, n, seed):
            calls.append((n, seed))
            return tuple(Sample(f"row{seed}-{i}", f"text {seed} {i}") for i in range(n))

    source = SampledTexts(FakeRows(), n=3, seed=10)
    assert source.texts(0) == ["text 10 0", "text 10 1", "text 10 2"]
    assert source.texts(2)[0] == "text 12 0"
    assert calls == [(3, 10), (3, 12)]
    assert "fake rows" in source.name
    with pytest.raises(ValueError):
        SampledTexts(object(), n=3)


def test_validation_windows_are_spread_over_the_held_out_part(tokenizer):
    all_windows = validation_windows(tokenizer, CorpusTexts("held_out"), 32, 0)
    some = validation_windows(tokenizer, CorpusTexts("held_out"), 32, 10)
    assert some.shape == (10, 33)
    idx = evenly_spaced(all_windows.shape[0], 10)
    assert torch.equal(some, all_windows[idx]) and idx[-1] > all_windows.shape[0] * 0.8
