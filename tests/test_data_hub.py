"""``sn29 data hf://org/name[/config][@split]``: a Hub dataset's own parquet shards, through huggingface_hub
against the local Hub server (never the rows API): shard selection, retries of a failing or cut download, a
damaged shard named with nothing written, the disk budget."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_hub_faults import Faults
from fake_hub_server import HubHTTPServer
from huggingface_hub import constants
from standin_tokenizers import build_split_regex_folder

from sn29_growth.cli import main
from sn29_growth.corpus import load_corpus
from sn29_growth.eval.tokenizers import load_tokenizer
from sn29_growth.hub.datasets import DatasetSpec, HubDatasetShards, ShardFile, select_shards
from sn29_growth.hub.local import add_commit
from sn29_growth.hub.protocol import HubError
from sn29_growth.hub.retry import RetryPolicy
from sn29_growth.train.data import PreparedTokens, token_stream
from sn29_growth.train.prepare import PrepareError, prepare_tokens

REPO = "alice/web-edu"
FAST = RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0)


def parquet(texts: list[str]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts, "score": [3.0] * len(texts)}), buf, row_group_size=16)
    return buf.getvalue()


TEXTS = [s.text for s in load_corpus().train]
SHARDS = {
    "data/CC-MAIN-A/train-00000-of-00002.parquet": TEXTS[:40],
    "data/CC-MAIN-A/train-00001-of-00002.parquet": TEXTS[40:80],
    "data/CC-MAIN-B/train-00000-of-00001.parquet": TEXTS[80:120],
}
A0, A1, B0 = SHARDS


@pytest.fixture
def online(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def server(online, tmp_path, monkeypatch):
    with HubHTTPServer(tmp_path / "hub") as srv:
        files = {path: parquet(texts) for path, texts in SHARDS.items()}
        add_commit(srv.hub.root, REPO, {**files, "README.md": b"# web edu\n"})
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return build_split_regex_folder(tmp_path_factory.mktemp("tokenizer"))


def prepare(tmp_path, tokenizer_dir, spec=f"hf://{REPO}/CC-MAIN-A@train", **kw):
    kw.setdefault("retry", FAST)
    return prepare_tokens(
        spec, tmp_path / "tok", tokenizer_dir, 10**9, progress=False, cache_dir=tmp_path / "shards", **kw
    )


def test_specs_and_shard_selection():
    assert DatasetSpec.parse("hf://HuggingFaceFW/fineweb-edu-score-2") == DatasetSpec(
        "HuggingFaceFW/fineweb-edu-score-2", None, "train"
    )
    assert DatasetSpec.parse("hf://o/n/CC-MAIN-2024-10@train").config == "CC-MAIN-2024-10"
    with pytest.raises(ValueError, match="hf://org/name"):
        DatasetSpec.parse("hf://only-a-name")
    files = [ShardFile(p, 1, None) for p in (*SHARDS, "README.md", "x/validation-0.parquet")]
    assert [f.path for f in select_shards(files, "CC-MAIN-A", "train")] == [A0, A1]
    assert [f.path for f in select_shards(files, None, "train")] == [A0, A1, B0]
    assert [f.path for f in select_shards(files, "default", "validation")] == ["x/validation-0.parquet"]
    plain = [ShardFile("data/0000.parquet", 1, None), ShardFile("data/0001.parquet", 1, None)]
    assert len(select_shards(plain, None, "train")) == 2 and not select_shards(plain, None, "test")


def test_a_config_is_read_from_its_own_parquet_shards(server, tmp_path, tokenizer_dir):
    result = prepare(tmp_path, tokenizer_dir)
    ids = PreparedTokens(tmp_path / "tok").corpus.tokens("train")
    expected = token_stream(load_tokenizer(tokenizer_dir), SHARDS[A0] + SHARDS[A1])
    assert list(ids) == expected.tolist() and result.tokens == len(expected)
    manifest = PreparedTokens(tmp_path / "tok").corpus.manifest
    assert [s["path"] for s in manifest["sources"]] == [A0, A1]
    assert all(s["repo"] == REPO and len(s["commit"]) == 40 and s["sha256"] for s in manifest["sources"])
    paths = [r.path for r in server.requests]
    assert not any("rows" in p or "B/train" in p for p in paths)  # never the rows API nor other configs
    assert any(p.startswith(f"/api/datasets/{REPO}") for p in paths)


def test_failing_and_cut_downloads_are_retried(server, tmp_path, tokenizer_dir):
    expected = token_stream(load_tokenizer(tokenizer_dir), SHARDS[A0] + SHARDS[A1]).tolist()
    server.set_faults(Faults(unavailable=2, on="file"))  # two 503s, then served
    assert prepare(tmp_path / "a", tokenizer_dir).tokens == len(expected)

    # the connection drops halfway through a shard until a retry of ours (its backoff clears the fault)
    server.set_faults(Faults(cut_at={A1: len(parquet(SHARDS[A1])) // 2}))
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        server.set_faults(Faults())

    result = prepare(tmp_path / "b", tokenizer_dir, sleep=sleep)
    assert waits and result.tokens == len(expected)
    assert list(PreparedTokens(tmp_path / "b" / "tok").corpus.tokens("train")) == expected
    assert sum(A1 in r.path for r in server.requested("GET", "/_cdn/")) >= 2


def test_a_shard_served_short_is_named_and_nothing_is_written(server, tmp_path, tokenizer_dir):
    server.set_faults(Faults(short={A1: 100}))
    with pytest.raises(HubError, match=A1.replace(".", r"\.")):
        prepare(tmp_path, tokenizer_dir)
    assert not (tmp_path / "tok").exists()
    assert not list((tmp_path / "shards").rglob("train-00001-of-00002.parquet"))


def test_a_truncated_parquet_in_the_repo_is_named_and_nothing_is_written(server, tmp_path, tokenizer_dir):
    whole = parquet(TEXTS[:30])
    add_commit(
        server.hub.root, REPO, {"data/CC-MAIN-C/train-00000-of-00001.parquet": whole[: len(whole) // 2]}
    )
    with pytest.raises(
        PrepareError, match=r"CC-MAIN-C/train-00000-of-00001\.parquet: not a readable parquet"
    ):
        prepare(tmp_path, tokenizer_dir, spec=f"hf://{REPO}/CC-MAIN-C")
    assert not (tmp_path / "tok").exists()


def test_the_disk_budget_keeps_one_shard_and_a_second_run_is_a_no_op(server, tmp_path, tokenizer_dir, capsys):
    largest = max(len(parquet(t)) for t in SHARDS.values())
    args = ["data", f"hf://{REPO}", str(tmp_path / "tok"), "--tokenizer", str(tokenizer_dir), "--tokens", "1B",
            "--cache-dir", str(tmp_path / "shards"), "--disk-budget", str(largest + 10), "--no-progress", "--json"]  # fmt: skip
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    kept = sorted(p.name for p in (tmp_path / "shards").rglob("*.parquet"))
    assert kept == ["train-00000-of-00001.parquet"]  # only the last shard read (CC-MAIN-B) is kept
    assert [s["path"] for s in PreparedTokens(tmp_path / "tok").corpus.manifest["sources"]] == [A0, A1, B0]
    before = len(server.requests)
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] and again["tokens"] == first["tokens"]
    assert len(server.requests) == before  # decided from the manifest: no listing, no download

    small = HubDatasetShards.from_spec(f"hf://{REPO}", cache_dir=tmp_path / "s2", disk_budget=100, retry=FAST)
    with pytest.raises(HubError, match="exceed the disk budget"):
        next(small.shards()).fetch()
