"""The model store, the cache layout helpers and the local-directory Hub (write side, privacy, resume)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sn29_growth.hub import (
    HubClient,
    IntegrityError,
    ModelStore,
    RepoFile,
    RepoNotFound,
    UnsupportedRepo,
    fetch_model,
)
from sn29_growth.hub.cache import PartialFile, disk_usage_bytes, file_digests, verify_file
from sn29_growth.hub.hf_client import HfHubClient
from sn29_growth.hub.local import LocalHub, LocalHubClient, add_commit

REPO = "alice/tiny"
FILES = {"config.json": b"{}", "model.safetensors": b"w" * 1000, "tokenizer.json": b"{}"}


def test_both_clients_satisfy_the_protocol(tmp_path):
    assert isinstance(LocalHubClient(tmp_path), HubClient)
    assert isinstance(HfHubClient("http://127.0.0.1:9", token=False), HubClient)


def test_fetch_model_local_directory_and_hub_ref(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    assert fetch_model(model_dir) == model_dir.resolve()
    assert fetch_model(str(model_dir)) == model_dir.resolve()

    commit = add_commit(tmp_path / "hub", REPO, FILES)
    client = LocalHubClient(tmp_path / "hub")
    path = fetch_model(f"{REPO}@{commit}", cache_dir=tmp_path / "cache", client=client)
    assert path.name == commit and {p.name for p in path.iterdir()} == set(FILES)
    assert fetch_model(REPO, cache_dir=tmp_path / "cache", client=client) == path

    with pytest.raises(FileNotFoundError, match="neither a local directory"):
        fetch_model(str(tmp_path / "nope" / "x"), client=client)


def test_plan_reports_sizes_and_skipped_files(tmp_path):
    commit = add_commit(tmp_path / "hub", REPO, {**FILES, "pytorch_model.bin": b"p" * 50})
    store = ModelStore(LocalHubClient(tmp_path / "hub"), tmp_path / "cache")
    plan = store.plan(REPO)
    assert plan.commit == commit
    assert plan.skipped == ("pytorch_model.bin",)
    assert plan.total_bytes == plan.missing_bytes == sum(len(v) for v in FILES.values())
    store.fetch(REPO)
    assert store.plan(REPO).missing_bytes == 0


def _hf_layout(cache: Path) -> Path:
    """A cache written by huggingface_hub itself: blobs plus relative symlinks from snapshots."""
    folder = cache / "models--alice--tiny"
    blobs = folder / "blobs"
    blobs.mkdir(parents=True)
    for name, data in {"shared": b"{}", "w-old": b"old" * 10, "w-new": b"new" * 10}.items():
        (blobs / name).write_bytes(data)
    for commit, weights in (("1" * 40, "w-old"), ("2" * 40, "w-new")):
        snap = folder / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").symlink_to(Path("../../blobs/shared"))
        (snap / "model.safetensors").symlink_to(Path(f"../../blobs/{weights}"))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("2" * 40)
    (folder / "refs" / "old").write_text("1" * 40)
    return folder


def test_cleanup_of_a_huggingface_hub_cache_keeps_shared_blobs(tmp_path):
    folder = _hf_layout(tmp_path / "cache")
    store = ModelStore(LocalHubClient(tmp_path / "hub"), tmp_path / "cache")
    assert store.cached_snapshot(REPO, "main") == folder / "snapshots" / ("2" * 40)
    assert store.used_bytes() == 2 + 30 + 30 + 2 * 40  # blobs and refs; symlinks are not counted

    assert store.cleanup(keep=[(REPO, "main")]) == [(REPO, "1" * 40)]
    assert sorted(p.name for p in (folder / "blobs").iterdir()) == ["shared", "w-new"]
    assert sorted(p.name for p in (folder / "refs").iterdir()) == ["main"]
    assert (folder / "snapshots" / ("2" * 40) / "model.safetensors").read_bytes() == b"new" * 10


def test_cleanup_drops_partial_downloads_of_unkept_commits(tmp_path):
    cache = tmp_path / "cache"
    stale = cache / ".partial" / "models--alice--tiny" / ("1" * 40)
    kept = cache / ".partial" / "models--alice--tiny" / ("2" * 40)
    for d in (stale, kept):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x")
        d.with_name(d.name + ".lock").touch()
    ModelStore(LocalHubClient(tmp_path / "hub"), cache).cleanup(keep=[(REPO, "2" * 40)])
    assert sorted(p.name for p in kept.parent.iterdir()) == ["2" * 40, "2" * 40 + ".lock"]


def test_concurrent_downloads_of_one_snapshot_fetch_each_file_once(tmp_path):
    commit = add_commit(tmp_path / "hub", REPO, FILES)
    clients = [LocalHubClient(tmp_path / "hub") for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        snaps = list(pool.map(lambda c: c.download(REPO, commit, cache_dir=tmp_path / "cache"), clients))
    assert len(set(snaps)) == 1
    assert {p.name: p.read_bytes() for p in snaps[0].iterdir()} == FILES
    assert sum(c.method == "fetch" for client in clients for c in client.calls) == len(FILES)


def test_disk_usage_counts_hard_links_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").symlink_to(tmp_path / "a")
    assert disk_usage_bytes(tmp_path) == 100


def test_partial_file_resumes_and_bounds_size(tmp_path):
    data = b"0123456789" * 100
    sha, blob = file_digests(_write(tmp_path / "ref", data), len(data))
    meta = RepoFile("model.safetensors", len(data), sha256=sha)
    part = PartialFile(tmp_path / "p", meta)
    part.write(data[:300])
    part.close()
    part = PartialFile(tmp_path / "p", meta)  # another process picks it up
    assert part.written == 300
    part.write(data[300:])
    part.verify()
    with pytest.raises(IntegrityError, match="more than"):
        part.write(b"!")
    part.close()

    wrong = RepoFile("config.json", len(data), blob_id="0" * 40)
    with pytest.raises(IntegrityError, match="git blob"):
        verify_file(tmp_path / "p", wrong)
    verify_file(tmp_path / "p", RepoFile("config.json", len(data), blob_id=blob))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_existing_files_are_rehashed_when_asked(tmp_path):
    commit = add_commit(tmp_path / "hub", REPO, FILES)
    cache = tmp_path / "cache"
    snap = LocalHubClient(tmp_path / "hub").download(REPO, commit, cache_dir=cache)
    (snap / "model.safetensors").write_bytes(b"x" * 1000)  # same size, other bytes
    trusting = LocalHubClient(tmp_path / "hub")
    trusting.download(REPO, commit, cache_dir=cache)
    assert not [c for c in trusting.calls if c.method == "fetch"]
    checking = LocalHubClient(tmp_path / "hub", verify_existing=True)
    checking.download(REPO, commit, cache_dir=cache)
    assert [c.detail[0] for c in checking.calls if c.method == "fetch"] == ["model.safetensors"]
    assert (snap / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def _model_folder(path: Path, shards: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(f'{{"shards": {shards}}}')
    for i in range(shards):
        (path / f"model-{i + 1:05d}-of-{shards:05d}.safetensors").write_bytes(b"w" * (i + 1))
    (path / "README.md").write_text("card")
    (path / "train.py").write_text("print()")
    return path


def test_miner_flow_on_the_local_hub(tmp_path):
    miner = LocalHubClient(tmp_path / "hub")
    validator = LocalHubClient(tmp_path / "hub", hide_private=True)

    miner.create_repo("carol/grown", private=True)
    first = miner.upload_folder("carol/grown", _model_folder(tmp_path / "v1", shards=2))
    assert miner.resolve_revision("carol/grown") == first
    with pytest.raises(RepoNotFound):  # private: other users cannot see it
        validator.repo_files("carol/grown", first)

    second = miner.upload_folder("carol/grown", _model_folder(tmp_path / "v2", shards=1))
    miner.set_visibility("carol/grown", private=False)
    assert validator.resolve_revision("carol/grown") == second
    assert sorted(f.path for f in validator.repo_files("carol/grown", second)) == [
        "README.md",
        "config.json",
        "model-00001-of-00001.safetensors",  # the old two-shard files are gone; train.py never went up
    ]
    assert sorted(f.path for f in validator.repo_files("carol/grown", first))[-2:] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert [(c.method, c.detail[:1]) for c in miner.calls if c.method != "resolve_revision"] == [
        ("create_repo", (True,)),
        (
            "upload_folder",
            (
                (
                    "README.md",
                    "config.json",
                    "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors",
                ),
            ),
        ),
        ("upload_folder", (("README.md", "config.json", "model-00001-of-00001.safetensors"),)),
        ("set_visibility", (False,)),
    ]


def test_upload_without_weights_is_refused(tmp_path):
    client = LocalHubClient(tmp_path / "hub")
    client.create_repo("carol/x")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(UnsupportedRepo):
        client.upload_folder("carol/x", folder)
    with pytest.raises(RepoNotFound):
        client.upload_folder("carol/missing", _model_folder(tmp_path / "v1", shards=1))


def test_local_hub_refs_and_validation(tmp_path):
    hub = LocalHub(tmp_path)
    commit = add_commit(tmp_path, REPO, FILES)
    assert hub.resolve(REPO, "main") == hub.resolve(REPO, commit) == commit
    with pytest.raises(RepoNotFound):
        hub.resolve("alice/none")
    with pytest.raises(ValueError):
        hub.repo_dir("../escape")
