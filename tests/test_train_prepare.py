"""Training data tokenized ahead (``sn29 data``) and read memory-mapped by training.

The prepared ids are the exact path's (the network's tokenizer stack), shown on a stand-in tokenizer whose
pipeline transformers 5 rebuilds differently; a second preparation is a no-op; a damaged shard is named
and leaves nothing. The reader visits every window once per epoch in a seeded order, each rank reads only
its share, resident memory stays flat, and an interrupted run resumes on exactly the same windows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from standin_tokenizers import PUNCTUATED, build_split_regex_folder
from test_train_loop import small_config

from sn29_growth.checkpoint import save_model
from sn29_growth.cli import main
from sn29_growth.corpus import load_corpus
from sn29_growth.eval.tokenizers import load_tokenizer
from sn29_growth.tiny import build_tiny
from sn29_growth.train import CheckpointConfig, train
from sn29_growth.train.data import (
    DataPosition,
    MappedWindows,
    PreparedTokens,
    pack,
    source_from_arg,
    token_stream,
)
from sn29_growth.train.prepare import PrepareError, prepare_tokens
from sn29_growth.train.tokens import write_token_corpus


def corpus_texts() -> list[str]:
    return [s.text for s in load_corpus().train] + [PUNCTUATED] * 20


def write_sources(folder: Path, texts: list[str]) -> Path:
    """The texts split over a parquet, a jsonl and a txt file (read in sorted path order)."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = len(texts) // 3, 2 * len(texts) // 3
    pq.write_table(pa.table({"text": texts[:a], "id": list(range(a))}), folder / "a.parquet")
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[a:b]))
    (folder / "c.txt").write_text("".join(t.replace("\n", " ").strip() + "\n" for t in texts[b:]))
    return folder


def source_texts(texts: list[str]) -> list[str]:
    b = 2 * len(texts) // 3
    return texts[:b] + [t.replace("\n", " ").strip() for t in texts[b:]]


@pytest.fixture(scope="module")
def split_regex(tmp_path_factory) -> Path:
    return build_split_regex_folder(tmp_path_factory.mktemp("split-regex"))


def test_prepared_ids_are_the_exact_paths_and_not_transformers_5s(split_regex, tmp_path):
    texts = corpus_texts()
    src = write_sources(tmp_path / "src", texts)
    result = prepare_tokens(str(src), tmp_path / "tok", split_regex, 10**9, progress=False)
    assert not result.reused
    prepared = PreparedTokens(tmp_path / "tok")
    ids = torch.from_numpy(np.asarray(prepared.corpus.tokens("train"), dtype=np.int32))

    exact = load_tokenizer(split_regex)
    assert exact.exact
    expected = token_stream(exact, source_texts(texts))
    assert torch.equal(ids, expected)  # every text, EOS after each, in the source's order

    from transformers import AutoTokenizer

    v5 = AutoTokenizer.from_pretrained(str(split_regex))
    assert not torch.equal(ids, token_stream(v5, source_texts(texts)))

    manifest = prepared.corpus.manifest
    assert manifest["prepared"]["tokenizer_fingerprint"] == f"x{exact.fingerprint}"
    assert manifest["prepared"]["exhausted"] is True
    assert [Path(s["name"]).name for s in manifest["sources"]] == ["a.parquet", "b.jsonl", "c.txt"]
    assert sum(s["tokens"] for s in manifest["sources"]) == ids.numel() == result.tokens
    assert (tmp_path / "tok" / "tokenizer_config.json").is_file()


def test_stops_at_the_tokens_asked_and_a_second_run_is_a_no_op(split_regex, tmp_path, capsys):
    src = write_sources(tmp_path / "src", corpus_texts())
    out = tmp_path / "tok"
    args = ["data", str(src), str(out), "--tokenizer", str(split_regex), "--tokens", "3k", "--no-progress"]
    assert main([*args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert 3000 <= first["tokens"] < 3000 + 2000 and not first["reused"]
    assert PreparedTokens(out).corpus.manifest["prepared"]["exhausted"] is False
    stamp = (out / "train.bin").stat().st_mtime_ns
    assert main([*args, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] and again["tokens"] == first["tokens"]
    assert (out / "train.bin").stat().st_mtime_ns == stamp

    other = tmp_path / "other-tokenizer"
    save_model(build_tiny("llama-gqa", seed=0), other, tokenizer=_embedded())
    with pytest.raises(PrepareError, match="holds other prepared data"):
        prepare_tokens(str(src), out, other, 3000, progress=False)
    assert (out / "train.bin").stat().st_mtime_ns == stamp


def test_a_truncated_parquet_shard_is_named_and_nothing_is_written(split_regex, tmp_path):
    src = write_sources(tmp_path / "src", corpus_texts())
    whole = (src / "b.jsonl").read_bytes()
    pq.write_table(pa.table({"text": ["x " * 50] * 200}), src / "b0.parquet")
    data = (src / "b0.parquet").read_bytes()
    (src / "b0.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(PrepareError, match=r"b0\.parquet: not a readable parquet file"):
        prepare_tokens(str(src), tmp_path / "tok", split_regex, 10**9, progress=False)
    assert not (tmp_path / "tok").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tok")]
    assert (src / "b.jsonl").read_bytes() == whole


def _embedded():
    from sn29_growth.tokenizer import embedded_tokenizer

    return embedded_tokenizer()


# ------------------------------------------------------------------------------------------ the reader


def numbered_folder(folder: Path, tokens: int, vocab: int = 50_000, doc: int = 2**20) -> Path:
    """A prepared folder of ``tokens`` ids: documents of ``doc - 1`` counting ids (1, 2, ... modulo
    ``vocab``), each followed by EOS 0."""
    tok = folder.parent / "tokenizer.json"
    tok.write_text("{}")

    def documents():
        for start in range(0, tokens, doc):
            n = min(doc, tokens - start) - 1
            yield np.arange(start + 1, start + 1 + n, dtype=np.int64) % (vocab - 1) + 1

    write_token_corpus(folder, tok, {"train": documents()}, eos_id=0, vocab_size=vocab)
    return folder


def test_each_epoch_reads_every_window_once_in_a_seeded_order(tmp_path):
    folder = numbered_folder(tmp_path / "n", 20_000)
    source = PreparedTokens(folder)
    stream = torch.from_numpy(np.asarray(source.corpus.tokens("train"), dtype=np.int64))
    packed = pack(stream, 7)
    reader = MappedWindows(source, 7, seed=3, block=64)  # 2857 windows: 44 full blocks and a short one
    assert reader.count == packed.shape[0] == 2857
    for epoch in (0, 1):
        order = reader.window_indices(DataPosition(epoch, 0), reader.count)
        assert sorted(order) == list(range(reader.count))
        assert order != list(range(reader.count))
    assert reader.window_indices(DataPosition(0, 0), 50) != reader.window_indices(DataPosition(1, 0), 50)
    again = MappedWindows(source, 7, seed=3, block=64)
    assert again.window_indices(DataPosition(1, 100), 40) == reader.window_indices(DataPosition(1, 100), 40)
    assert MappedWindows(source, 7, seed=4, block=64).window_indices(DataPosition(0, 0), 40) != (
        reader.window_indices(DataPosition(0, 0), 40)
    )

    batch, position = reader.take(DataPosition(0, 2850), 12)  # does not fit: the next epoch begins
    assert position == DataPosition(1, 12)
    expected = packed[reader.window_indices(DataPosition(1, 0), 12)]
    assert torch.equal(batch, expected)

    shares = [reader.take_share(DataPosition(0, 24), 12, r, 3) for r in range(3)]
    assert all(p == DataPosition(0, 36) for _, p in shares)
    assert torch.equal(torch.cat([b for b, _ in shares]), reader.take(DataPosition(0, 24), 12)[0])


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_resident_memory_stays_flat_on_a_folder_larger_than_what_is_read(tmp_path):
    tokens = 48 * 2**20  # 192 MB of uint32 ids
    numbered_folder(tmp_path / "big", tokens, vocab=70_000)
    source = PreparedTokens(tmp_path / "big")
    assert source.corpus.dtype == "uint32"
    reader = MappedWindows(source, 256, seed=0)
    position = DataPosition()
    batch, position = reader.take(position, 64)  # warm up: imports, first allocations
    before = rss_bytes()
    read = 0
    for _ in range(300):  # 19,200 windows in random places: 20 MB of ids read over the whole file
        batch, position = reader.take(position, 64)
        read += batch.numel() * 4
    growth = rss_bytes() - before
    assert read > 18 * 2**20
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------- training on it


@pytest.fixture(scope="module")
def base_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared-train")
    base = root / "base"
    save_model(build_tiny("llama-gqa", seed=0), base, tokenizer=_embedded())
    src = root / "texts.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus_texts()))
    prepare_tokens(str(src), root / "data", base, 40_000, progress=False)
    return base, root / "data"


def recording(monkeypatch) -> list[list[int]]:
    seen: list[list[int]] = []
    original = MappedWindows.window_indices

    def window_indices(self, position, count):
        out = original(self, position, count)
        seen.append(out)
        return out

    monkeypatch.setattr(MappedWindows, "window_indices", window_indices)
    return seen


def test_an_interrupted_run_resumes_on_exactly_the_same_windows(base_and_data, tmp_path, monkeypatch):
    base, data = base_and_data
    seen = recording(monkeypatch)
    straight = train(base, tmp_path / "straight", small_config(steps=8), data=source_from_arg(str(data)))
    windows_straight = list(seen)
    seen.clear()
    half = train(
        base, tmp_path / "split", small_config(steps=8, stop_after=4), data=source_from_arg(str(data))
    )
    assert not half.complete and half.steps == 4
    resumed = train(
        base,
        tmp_path / "split",
        small_config(steps=8, checkpoint=CheckpointConfig(save_every=0, resume=True)),
        data=source_from_arg(str(data)),
    )
    assert resumed.resumed_from == 4 and resumed.complete
    assert seen == windows_straight and len(seen) == 8
    a = (tmp_path / "straight" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "split" / "model.safetensors").read_bytes()
    assert straight.tokens == resumed.tokens


def test_a_model_with_another_tokenizer_refuses_the_folder(base_and_data, split_regex, tmp_path):
    base, data = base_and_data
    other = tmp_path / "other"
    save_model(build_tiny("llama-gqa", seed=0), other, tokenizer=_embedded())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (other / name).write_bytes((split_regex / name).read_bytes())
    with pytest.raises(ValueError, match="was prepared with tokenizer"):
        train(other, tmp_path / "out", small_config(steps=2), data=source_from_arg(str(data)))


RANK_SCRIPT = """
import json, sys
from sn29_growth.train.data import DataPosition, MappedWindows, PreparedTokens
from sn29_growth.train.distributed import init_distributed, shutdown
ctx = init_distributed("cpu")
reader = MappedWindows(PreparedTokens(sys.argv[1]), 32, seed=0)
position, mine = DataPosition(), []
for _ in range(int(sys.argv[3])):
    share, after = reader.take_share(position, 8, ctx.rank, ctx.world_size)
    per, start = 8 // ctx.world_size, reader._next(position, 8)
    indices = reader.window_indices(DataPosition(start.epoch, start.cursor + ctx.rank * per), per)
    assert share.shape == (per, 33) and bool((share == reader._read(indices)).all())
    mine.append(indices)
    position = after
with open(f"{sys.argv[2]}/rank{ctx.rank}.json", "w") as f:
    json.dump({"world": ctx.world_size, "windows": mine, "position": position.to_dict()}, f)
shutdown(ctx)
"""


def test_two_gloo_ranks_read_disjoint_shares_that_cover_every_window(base_and_data, tmp_path):
    _, data = base_and_data
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    reader = MappedWindows(PreparedTokens(data), 32, seed=0)
    steps = reader.count // 8 + 3  # past the end of the first epoch
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(data), str(tmp_path), str(steps)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["position"] == ranks[1]["position"] == {"epoch": 1, "cursor": 24}
    one_process = []
    position = DataPosition()
    for _ in range(steps):
        position = reader._next(position, 8)
        one_process.append(reader.window_indices(position, 8))
        position = DataPosition(position.epoch, position.cursor + 8)
    for step, whole in enumerate(one_process):
        a, b = ranks[0]["windows"][step], ranks[1]["windows"][step]
        assert a + b == whole and not set(a) & set(b)
    epoch0 = [w for step in one_process[: reader.count // 8] for w in step]
    # every window once; only the remainder of the epoch that cannot fill a step (count % 8) is left
    assert len(set(epoch0)) == len(epoch0) == reader.count - reader.count % 8
    assert set(epoch0) <= set(range(reader.count))
