"""Concurrent file digests: the same values as a one-thread hashlib loop, whatever the scheduling."""

from __future__ import annotations

import base64
import hashlib
import json
import random

import pytest

from sn29_growth.chain.commitment import content_hash, directory_hash, file_digest, salted_hash
from sn29_growth.digest import sha256_file, sha256_files
from sn29_growth.eval.cache import model_content_hash

SIZES = {"empty.safetensors": 0, "one.safetensors": 1, "a.safetensors": 3 << 20, "b.safetensors": 5_000_003}


def _reference(path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


@pytest.fixture
def files(tmp_path):
    rng = random.Random(0)
    out = {}
    for name, size in SIZES.items():
        p = tmp_path / name
        p.write_bytes(rng.randbytes(size))
        out[name] = p
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    out["config.json"] = tmp_path / "config.json"
    return out


@pytest.mark.parametrize("buffer_bytes", [1, 4096, 1 << 20, 16 << 20])
def test_one_file_matches_hashlib_across_buffer_sizes(files, buffer_bytes):
    for name in ("empty.safetensors", "one.safetensors", "b.safetensors"):
        if buffer_bytes == 1 and name == "b.safetensors":
            continue  # a byte at a time over 5 MB only costs time
        assert sha256_file(files[name], buffer_bytes=buffer_bytes) == _reference(files[name])


@pytest.mark.parametrize("workers", [None, 1, 2, 8])
def test_many_files_in_order_whatever_the_workers(files, workers):
    paths = list(files.values())
    assert sha256_files(paths, workers=workers, buffer_bytes=1 << 20) == [_reference(p) for p in paths]


def test_bad_arguments_are_named(files):
    with pytest.raises(ValueError, match="workers"):
        sha256_files(list(files.values()), workers=0)
    with pytest.raises(ValueError, match="buffer_bytes"):
        sha256_file(files["one.safetensors"], buffer_bytes=0)


def test_the_sn29_content_hash_is_unchanged(files, tmp_path):
    """dir_hash = b64(sha256(concat of b64 file digests by name)); hash = b64(sha256(dir_hash + hotkey))."""

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    joined = "".join(b64(_reference(files[n])) for n in sorted(files))
    want_dir = b64(hashlib.sha256(joined.encode()).digest())
    assert directory_hash(files) == want_dir
    assert directory_hash(files, workers=1) == want_dir
    assert file_digest(files["a.safetensors"]) == b64(_reference(files["a.safetensors"]))
    hotkey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    want = b64(hashlib.sha256((want_dir + hotkey).encode()).digest())
    assert salted_hash(directory_hash(files), hotkey) == want
    assert content_hash(tmp_path, hotkey) == want


def test_model_content_hash_is_unchanged(files, tmp_path):
    names = sorted(files)
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}\0{_reference(files[name]).hex()}\n".encode())
    memo = tmp_path / "memo"
    assert model_content_hash(tmp_path, memo) == h.hexdigest()
    assert model_content_hash(tmp_path, memo) == h.hexdigest()  # from the memo
    assert len(json.loads((memo / "file-digests.json").read_text())) == len(names)
