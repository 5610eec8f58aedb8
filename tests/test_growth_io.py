"""Streaming safetensors IO: round trips, size caps, HF names and index, corrupt and missing files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sn29_growth.io import (
    INDEX_NAME,
    CheckpointError,
    PlannedTensor,
    ShardedCheckpoint,
    ShardWriter,
    layout_shards,
    read_header,
    save_shards,
)


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "a": torch.randn(30, 20, generator=g).bfloat16(),
        "b": torch.randn(50, generator=g),
        "c": torch.randn(4, 4, generator=g).half(),
        "d": torch.randn(10, 10, generator=g),
        "e": torch.zeros(0, 3),
    }


def test_writer_caps_shards_and_safetensors_reads_them(tmp_path):
    tensors = _tensors()
    index = save_shards(tensors, tmp_path, max_shard_bytes=500)
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in range(1, 4)]
    assert json.loads((tmp_path / INDEX_NAME).read_text()) == index
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    loaded = {}
    for f in files:
        part = load_file(tmp_path / f)  # the reference reader accepts our files
        nbytes = sum(t.numel() * t.element_size() for t in part.values())
        assert nbytes <= 500 or len(part) == 1  # a tensor above the cap gets a shard of its own
        loaded.update(part)
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t) and loaded[name].dtype == t.dtype
        assert index["weight_map"][name] in files


def test_single_shard_is_model_safetensors(tmp_path):
    assert save_shards(_tensors(), tmp_path, max_shard_bytes=10**9) is None
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_reader_streams_one_shard_at_a_time(tmp_path):
    tensors = _tensors()
    save_shards(tensors, tmp_path, max_shard_bytes=500)
    ckpt = ShardedCheckpoint(tmp_path)
    assert set(ckpt.infos) == set(tensors)
    seen = []
    for shard in ckpt.iter_shards():
        for name in shard.names:
            assert torch.equal(shard.read(name), tensors[name])
            seen.append(name)
    assert sorted(seen) == sorted(tensors)
    assert shard._f is None  # closed after iteration


def test_reader_accepts_reference_writer_files(tmp_path):
    tensors = _tensors()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ckpt = ShardedCheckpoint(tmp_path)
    for shard in ckpt.iter_shards():
        for name in shard.names:
            assert torch.equal(shard.read(name), tensors[name])


def test_layout_and_writer_order_are_enforced(tmp_path):
    planned = [PlannedTensor(n, torch.float32, (100,)) for n in "xyz"]
    assert [len(g) for g in layout_shards(planned, 800)] == [2, 1]
    w = ShardWriter(tmp_path, planned, 800)
    with pytest.raises(ValueError, match="does not match"):
        w.write("y", torch.zeros(100))
    w.write("x", torch.zeros(100))
    with pytest.raises(ValueError, match="not written"):
        w.close()
    w.abort()


def test_corrupt_truncated_and_missing_shards_name_the_file(tmp_path):
    save_shards(_tensors(), tmp_path, max_shard_bytes=500)
    second = tmp_path / "model-00002-of-00003.safetensors"
    data = second.read_bytes()
    second.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors.*truncated"):
        ShardedCheckpoint(tmp_path)
    second.write_bytes(b"\xff" * 8 + data[8:])
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors.*corrupt"):
        ShardedCheckpoint(tmp_path)
    second.write_bytes(data[:8] + b"{not json" + data[17:])
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors.*corrupt"):
        read_header(second)
    second.unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors.*missing"):
        ShardedCheckpoint(tmp_path)


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        ShardedCheckpoint(tmp_path)


def test_background_writer_matches_and_reports_errors(tmp_path):
    tensors = _tensors()
    planned = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    (tmp_path / "a").mkdir()
    w = ShardWriter(tmp_path / "a", planned, 500, background=True)
    for n, t in tensors.items():
        w.write(n, t)
    w.close()
    (tmp_path / "b").mkdir()
    save_shards(tensors, tmp_path / "b", 500)
    for f in (tmp_path / "b").glob("*.safetensors"):
        assert (tmp_path / "a" / f.name).read_bytes() == f.read_bytes()
    w = ShardWriter(tmp_path / "missing-dir", planned, 500, background=True)
    with pytest.raises(FileNotFoundError):
        for n, t in tensors.items():
            w.write(n, t)
        w.close()
    w.abort()
