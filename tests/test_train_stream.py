"""Training data tokenized while the model trains (``sn29 train --data hf://…`` or a folder of text files).

A run reads exactly the windows (and ids) it reads when everything is prepared first; the reader never reads
past the committed count; ``sn29 train --data hf://…`` reads the dataset's parquet shards from the local Hub
server, never the rows API, and an interrupted + resumed run reuses the prepared folder (nothing downloaded
again) and reads the windows of a straight run; a preparation killed with SIGKILL resumes from its
committed count, and a torn or foreign folder is started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_hub import (  # noqa: F401  (the fixture)
    A0,
    A1,
    REPO,
    SHARDS,
    online,  # noqa: F401
    server,
)
from test_train_loop import small_config

from sn29_growth.checkpoint import save_model
from sn29_growth.cli import main
from sn29_growth.corpus import load_corpus
from sn29_growth.eval.tokenizers import load_tokenizer
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer
from sn29_growth.train import stream as stream_module
from sn29_growth.train import train
from sn29_growth.train.data import MappedWindows, PreparedTokens, source_from_arg, token_stream
from sn29_growth.train.prepare import read_texts
from sn29_growth.train.stream import DATA, PROGRESS, StreamedTokens, read_progress


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream") / "base"
    save_model(build_tiny("llama-gqa", seed=0), folder, tokenizer=embedded_tokenizer())
    return folder


def texts() -> list[str]:
    return [s.text for s in load_corpus().train]


def text_folder(folder: Path, repeat: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = texts() * repeat
    half = len(rows) // 2
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows[:half]))
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows[half:]))
    return folder


def recording(monkeypatch) -> tuple[list[list[int]], list[torch.Tensor]]:
    """Window indices asked and batches read; each read checks that it stays below the committed count."""
    indices: list[list[int]] = []
    batches: list[torch.Tensor] = []
    original_indices, original_read = MappedWindows.window_indices, MappedWindows._read

    def window_indices(self, position, count):
        out = original_indices(self, position, count)
        indices.append(out)
        return out

    def read(self, wanted):
        if isinstance(self, stream_module.GrowingWindows):
            committed = read_progress(self.tokens.folder)["tokens"]
            assert (max(wanted) + 1) * self.seq_len + 1 <= committed  # never past what is committed
        batch = original_read(self, wanted)
        batches.append(batch)
        return batch

    monkeypatch.setattr(MappedWindows, "window_indices", window_indices)
    monkeypatch.setattr(MappedWindows, "_read", read)
    return indices, batches


def slow_reading(monkeypatch, seconds: float) -> None:
    """Each chunk of texts takes ``seconds`` more to read: the producer stays behind the start of training."""

    def slow(*args, **kwargs):
        for chunk in read_texts(*args, **kwargs):
            time.sleep(seconds)
            yield chunk

    monkeypatch.setattr(stream_module, "read_texts", slow)


def test_tokenizing_while_training_reads_what_preparing_first_reads(base, tmp_path, monkeypatch):
    src = text_folder(tmp_path / "src")
    config = small_config(steps=8)
    options = {"chunk_texts": 4, "block": 8}  # many commits, many blocks
    seen, batches = recording(monkeypatch)
    ahead = train(base, tmp_path / "ahead", config, data=source_from_arg(
        str(src), data_dir=tmp_path / "first", background=False, **options))  # fmt: skip
    first = (list(seen), [b.clone() for b in batches])
    seen.clear(), batches.clear()
    slow_reading(monkeypatch, 0.05)
    data = source_from_arg(str(src), data_dir=tmp_path / "bg", **options)
    streamed = train(base, tmp_path / "streamed", config, data=data)
    assert seen == first[0] and len(seen) == 8
    assert all(torch.equal(a, b) for a, b in zip(batches, first[1], strict=True))
    assert ahead.final_train_loss == streamed.final_train_loss

    # the ids are the exact path's, in the source's order: those `sn29 data` prepares
    folder = data.folder(load_tokenizer(base))
    ids = np.fromfile(folder / DATA, dtype=np.uint16)
    expected = token_stream(load_tokenizer(base), texts()).numpy()
    assert read_progress(folder)["tokens"] == ids.size and np.array_equal(ids, expected[: ids.size])
    assert (next((tmp_path / "first").glob("src-*")) / DATA).read_bytes() == ids.tobytes()


def test_train_hf_reads_parquet_shards_and_a_resumed_run_reuses_the_folder(
    server,  # noqa: F811
    base,
    tmp_path,
    monkeypatch,
    capsys,
):
    from sn29_growth.eval import data as eval_data

    def no_rows(*args, **kwargs):
        raise AssertionError("the rows API was used")

    monkeypatch.setattr(eval_data.FineWebSource, "_cached_get", no_rows)
    seen, batches = recording(monkeypatch)
    spec = f"hf://{REPO}/CC-MAIN-A"
    flags = ["--data", spec, "--steps", "8", "--lr", "3e-3", "--warmup", "2", "--batch-size", "4",
             "--seq-len", "32", "--eval-every", "0", "--save-every", "0", "--no-progress", "--json"]  # fmt: skip
    out = tmp_path / "split"
    assert main(["train", str(base), str(out), *flags, "--stop-after", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    downloads = server.requested("GET", "/_cdn/")
    assert downloads and not [r for r in server.requests if "rows" in r.path]
    requests = len(server.requests)

    assert main(["train", str(base), str(out), *flags, "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["complete"] and resumed["resumed_from"] == 4
    assert server.requested("GET", "/_cdn/") == downloads  # the prepared folder is reused: no download
    assert len(server.requests) == requests  # it held the run's ids already: not even a listing
    split = (list(seen), [b.clone() for b in batches])
    seen.clear(), batches.clear()

    straight = tmp_path / "straight"
    assert main(["train", str(base), str(straight), *flags, "--data-dir", str(out / "data")]) == 0
    capsys.readouterr()
    assert seen == split[0] and len(seen) == 8
    assert all(torch.equal(a, b) for a, b in zip(batches, split[1], strict=True))
    assert (out / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()

    folder = next((out / "data").glob("*CC-MAIN-A-*"))
    manifest = PreparedTokens(folder).corpus.manifest  # a finished folder is a token corpus too
    assert [s["path"] for s in manifest["sources"]][:1] == [A0]
    tokenizer = load_tokenizer(base)
    expected = token_stream(tokenizer, SHARDS[A0] + SHARDS[A1]).numpy()
    ids = np.asarray(PreparedTokens(folder).corpus.tokens("train"))
    assert np.array_equal(ids, expected[: ids.size])


def test_changing_the_steps_on_resume_is_refused(base, tmp_path):
    src = text_folder(tmp_path / "src")
    data = source_from_arg(str(src), data_dir=tmp_path / "data")
    train(base, tmp_path / "out", small_config(steps=8, stop_after=4), data=data)
    from sn29_growth.train import CheckpointConfig

    with pytest.raises(ValueError, match="data_tokens"):
        train(
            base,
            tmp_path / "out",
            small_config(steps=12, checkpoint=CheckpointConfig(resume=True)),
            data=data,
        )


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from sn29_growth.eval.tokenizers import load_tokenizer
from sn29_growth.train import stream
from sn29_growth.train.prepare import read_texts

def slow(*args, **kwargs):
    for chunk in read_texts(*args, **kwargs):
        time.sleep(0.05)
        yield chunk

stream.read_texts = slow
data = stream.StreamedTokens(sys.argv[1], sys.argv[2], chunk_texts=4)
tokenizer = load_tokenizer(sys.argv[3])
data.open_windows(sys.argv[3], tokenizer, 32, 0, 10**9).tokens.final
"""


def straight_ids(src: Path, base: Path, data_dir: Path, tokens: int) -> bytes:
    data = StreamedTokens(str(src), data_dir, chunk_texts=4, background=False)
    windows = data.open_windows(base, load_tokenizer(base), 32, 0, tokens)
    windows.close()
    return (data.folder(load_tokenizer(base)) / DATA).read_bytes()


def test_a_preparation_killed_mid_way_resumes_from_its_committed_count(base, tmp_path):
    src = text_folder(tmp_path / "src")
    script = tmp_path / "prepare.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src), str(tmp_path / "data"), str(base)], env=env
    )
    data = StreamedTokens(str(src), tmp_path / "data", chunk_texts=4)
    folder = data.folder(load_tokenizer(base))
    deadline = time.monotonic() + 120
    while (read_progress(folder) or {}).get("tokens", 0) < 2000:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = read_progress(folder)
    assert killed["tokens"] > 0 and not killed["exhausted"]
    # a tail the producer wrote but did not commit is never read, and is cut off on resume
    with open(folder / DATA, "ab") as f:
        f.write(b"\xff\xff" * 1000)

    target = killed["tokens"] + 3000
    windows = data.open_windows(base, load_tokenizer(base), 32, 0, target)
    assert windows.tokens.final >= target
    windows.close()
    again = read_progress(folder)
    assert again["documents"] > killed["documents"]
    resumed = (folder / DATA).read_bytes()
    assert resumed == straight_ids(src, base, tmp_path / "straight", target)

    # a progress file that cannot be read: the folder is started again, the same ids come out
    (folder / PROGRESS).write_text("{not json")
    windows = data.open_windows(base, load_tokenizer(base), 32, 0, target)
    assert windows.tokens.final >= target
    windows.close()
    assert (folder / DATA).read_bytes() == resumed


def test_the_miner_trains_on_fineweb_edu_parquet_by_default(tmp_path):
    from sn29_growth.miner.cli import build_parser, config_from_args
    from sn29_growth.miner.config import ONLINE_TRAIN_DATA
    from sn29_growth.miner.run import text_source

    args = build_parser().parse_args(["--hf-repo", "me/x", "--model-dir", str(tmp_path), "--device", "cpu"])
    config = config_from_args(args)
    assert config.train_data == ONLINE_TRAIN_DATA == "hf://HuggingFaceFW/fineweb-edu-score-2"
    source = text_source(config)
    assert isinstance(source, StreamedTokens) and source.data_dir == tmp_path / "data"
    offline = config_from_args(build_parser().parse_args(
        ["--hf-repo", "me/x", "--model-dir", str(tmp_path), "--device", "cpu", "--offline"]))  # fmt: skip
    assert offline.train_data == "local"


def test_a_producer_that_fails_raises_in_the_run(base, tmp_path):
    src = text_folder(tmp_path / "src")
    (src / "0.jsonl").write_text("not json\n")  # read first
    data = source_from_arg(str(src), data_dir=tmp_path / "data", chunk_texts=64)
    with pytest.raises(ValueError, match=r"0\.jsonl: line 1 is not JSON"):
        train(base, tmp_path / "out", small_config(steps=4), data=data)
