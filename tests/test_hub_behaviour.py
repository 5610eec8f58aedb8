"""Behaviour of both HubClient implementations, run against each: the huggingface_hub adapter talking to a
local HTTP Hub (``http``) and the local-directory fake (``local``). Same repositories, same faults, same
expectations."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from fake_hub_faults import Faults, FaultyHubClient
from fake_hub_server import HubHTTPServer

from sn29_growth.hub import (
    DiskBudget,
    DiskBudgetExceeded,
    DownloadIncomplete,
    HubClient,
    HubUnavailable,
    IntegrityError,
    ModelStore,
    RepoNotFound,
    RevisionNotFound,
    UnsupportedRepo,
)
from sn29_growth.hub.cache import STAGING_DIR, snapshot_path
from sn29_growth.hub.hf_client import HfHubClient, HubTimeouts
from sn29_growth.hub.local import LocalHub, add_commit
from sn29_growth.hub.retry import RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.01)
REPO = "alice/tiny"
WEIGHTS = random.Random(0).randbytes(256 * 1024)
MODEL_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 8}',
    "generation_config.json": b'{"max_length": 16}',
    "model.safetensors": WEIGHTS,
    "tokenizer.json": b'{"version": "1.0"}',
}
UNSAFE_FILES = {
    "pytorch_model.bin": b"\x80\x04pickle",
    "modeling_evil.py": b"import os",
    "extra.pkl": b"\x80\x04",
    "original/consolidated.safetensors": b"nested",
    "README.md": b"# card",
}


class Backend:
    """One HubClient implementation over a LocalHub folder, with faults and a log of file fetches."""

    def __init__(self, kind: str, root: Path, server: HubHTTPServer | None) -> None:
        self.kind, self.root, self.server = kind, root, server
        self._local: FaultyHubClient | None = None

    def client(self, faults: Faults = Faults(), retry: RetryPolicy = FAST) -> HubClient:
        if self.server is not None:
            self.server.set_faults(faults)
            return HfHubClient(
                self.server.url,
                token=False,
                timeouts=HubTimeouts(connect_s=2.0, read_s=0.3),
                retry=retry,
                max_workers=2,
            )
        self._local = FaultyHubClient(self.root, faults=faults, retry=retry, max_workers=2)
        return self._local

    def fetched(self) -> list[str]:
        """Repository paths of every file download attempt, in order."""
        if self.server is not None:
            return [
                r.path.split("/resolve/", 1)[1].split("/", 1)[1]
                for r in self.server.requested("GET", "/resolve/")
            ]
        assert self._local is not None
        return [c.detail[0] for c in self._local.calls if c.method == "fetch"]

    def metadata_requests(self) -> int:
        if self.server is not None:
            return len(self.server.requested("GET", "/api/models/"))
        assert self._local is not None
        return sum(c.method != "fetch" for c in self._local.calls)


@pytest.fixture(params=["http", "local"])
def backend(request, tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    if request.param == "local":
        yield Backend("local", root, None)
        return
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # never a real token, even to a local server
    with HubHTTPServer(root) as server:
        yield Backend("http", root, server)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_contents(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_sizes_and_hashes_are_known_before_any_download(backend):
    commit = add_commit(backend.root, REPO, {**MODEL_FILES, **UNSAFE_FILES})
    client = backend.client()
    files = {f.path: f for f in client.repo_files(REPO, "main")}
    assert set(files) == set(MODEL_FILES) | set(UNSAFE_FILES)
    assert {p: f.size for p, f in files.items()} == {
        p: len(d) for p, d in {**MODEL_FILES, **UNSAFE_FILES}.items()
    }
    assert files["model.safetensors"].sha256 == sha256(WEIGHTS)  # LFS file: sha256 from the Hub
    assert files["config.json"].sha256 is None and files["config.json"].blob_id is not None
    assert client.resolve_revision(REPO) == commit
    assert backend.fetched() == []


def test_download_is_pinned_to_the_commit(backend, tmp_path):
    old = add_commit(backend.root, REPO, MODEL_FILES)
    new = add_commit(backend.root, REPO, {**MODEL_FILES, "config.json": b'{"hidden_size": 16}'})
    assert old != new
    client = backend.client()
    cache = tmp_path / "cache"

    old_snap = client.download(REPO, old, cache_dir=cache)
    assert old_snap == snapshot_path(cache, REPO, old)
    assert snapshot_contents(old_snap) == MODEL_FILES

    new_snap = client.download(REPO, "main", cache_dir=cache)
    assert new_snap.name == new
    assert (new_snap / "config.json").read_bytes() == b'{"hidden_size": 16}'
    assert (cache / "models--alice--tiny" / "refs" / "main").read_text() == new
    if backend.kind == "http":  # every file URL names the commit, never the branch
        assert all(
            f"/resolve/{old}/" in r.path or f"/resolve/{new}/" in r.path
            for r in backend.server.requested("GET", "/resolve/")
        )


def test_second_download_fetches_nothing(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client()
    client.download(REPO, commit, cache_dir=tmp_path / "cache")
    n = len(backend.fetched())
    assert n == len(MODEL_FILES)
    client.download(REPO, commit, cache_dir=tmp_path / "cache")
    assert len(backend.fetched()) == n


def test_disallowed_files_are_never_fetched(backend, tmp_path):
    commit = add_commit(backend.root, REPO, {**MODEL_FILES, **UNSAFE_FILES})
    client = backend.client()
    snap = client.download(REPO, commit, cache_dir=tmp_path / "cache", allow_patterns=["*", "*/*"])
    assert snapshot_contents(snap) == MODEL_FILES
    assert sorted(backend.fetched()) == sorted(MODEL_FILES)


def test_allow_patterns_narrow_the_selection(backend, tmp_path):
    commit = add_commit(backend.root, REPO, {**MODEL_FILES, **UNSAFE_FILES})
    client = backend.client()
    snap = client.download(REPO, commit, cache_dir=tmp_path / "cache", allow_patterns=["config.json"])
    assert snapshot_contents(snap) == {"config.json": MODEL_FILES["config.json"]}


def test_pickle_only_repo_is_rejected_before_download(backend, tmp_path):
    add_commit(
        backend.root, REPO, {"config.json": b"{}", "pytorch_model.bin": b"\x80\x04", "README.md": b"x"}
    )
    store = ModelStore(backend.client(), tmp_path / "cache")
    with pytest.raises(UnsupportedRepo, match=r"safetensors.*pytorch_model\.bin"):
        store.fetch(REPO)
    assert backend.fetched() == []
    assert not (tmp_path / "cache").exists()


def test_missing_repo_and_revision(backend, tmp_path):
    add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client()
    with pytest.raises(RepoNotFound):
        client.repo_files("alice/nothing", "main")
    with pytest.raises(RevisionNotFound):
        client.resolve_revision(REPO, "0" * 40)
    with pytest.raises(RepoNotFound):
        ModelStore(client, tmp_path / "cache").fetch("alice/nothing")
    assert backend.metadata_requests() == 3  # not-found errors are not retried


@pytest.mark.parametrize("on", ["info", "file"])
def test_5xx_is_retried_then_succeeds(backend, tmp_path, on):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(unavailable=2, on=on), retry=FAST)
    snap = client.download(REPO, commit, cache_dir=tmp_path / "cache")
    assert snapshot_contents(snap) == MODEL_FILES


@pytest.mark.parametrize("on", ["info", "file"])
def test_persistent_5xx_raises_hub_unavailable_after_bounded_retries(backend, tmp_path, on):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(unavailable=100, on=on), retry=RetryPolicy(attempts=3, backoff_s=0.01))
    with pytest.raises(HubUnavailable):
        client.download(REPO, commit, cache_dir=tmp_path / "cache")
    if on == "info":
        assert backend.metadata_requests() == 3
        assert backend.fetched() == []
    else:
        assert 3 <= len(backend.fetched()) <= 3 * len(MODEL_FILES)
    assert not snapshot_path(tmp_path / "cache", REPO, commit).exists()


def test_timeouts_are_retried_and_bounded(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(timeouts=1, stall_s=1.0), retry=FAST)
    assert client.resolve_revision(REPO) == commit
    client = backend.client(Faults(timeouts=3, stall_s=1.0), retry=FAST)
    with pytest.raises(HubUnavailable, match="timed out"):
        client.repo_files(REPO, commit)


def test_truncated_file_raises_integrity_error_and_leaves_nothing(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(short={"model.safetensors": 1000}))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="truncated"):
        client.download(REPO, commit, cache_dir=cache)
    assert not (snapshot_path(cache, REPO, commit) / "model.safetensors").exists()
    assert not list((cache / STAGING_DIR).rglob("model.safetensors"))
    assert backend.fetched().count("model.safetensors") == 1  # a bad file is not retried


@pytest.mark.parametrize("path", ["model.safetensors", "config.json"])
def test_hash_mismatch_is_detected(backend, tmp_path, path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(corrupt=frozenset({path})))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="sha256" if path.endswith(".safetensors") else "git blob"):
        client.download(REPO, commit, cache_dir=cache)
    assert not (snapshot_path(cache, REPO, commit) / path).exists()
    # once the Hub serves the right bytes the same call succeeds
    snap = backend.client().download(REPO, commit, cache_dir=cache)
    assert snapshot_contents(snap) == MODEL_FILES


def test_dropped_connection_is_resumed(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(cut_at={"model.safetensors": 100_000}))
    snap = client.download(REPO, commit, cache_dir=tmp_path / "cache")
    assert (snap / "model.safetensors").read_bytes() == WEIGHTS
    assert backend.fetched().count("model.safetensors") == 2
    if backend.kind == "http":
        assert [r.headers.get("range") for r in backend.server.requested("GET", "/_cdn/")] == [
            None,
            "bytes=100000-",
        ]


def test_connection_dropping_every_time_raises_download_incomplete(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    client = backend.client(Faults(cut_at={"model.safetensors": 100_000}, ranges=False))
    with pytest.raises(DownloadIncomplete):
        client.download(REPO, commit, cache_dir=tmp_path / "cache")
    assert backend.fetched().count("model.safetensors") == FAST.attempts
    assert isinstance(DownloadIncomplete("x"), IntegrityError)


def test_disk_budget_exceeded_before_downloading(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    total = sum(len(d) for d in MODEL_FILES.values())
    client = backend.client()
    too_small = ModelStore(client, tmp_path / "cache", DiskBudget(max_bytes=total - 1, margin_bytes=0))
    with pytest.raises(DiskBudgetExceeded, match="budget"):
        too_small.fetch(REPO, commit)
    no_margin = ModelStore(
        client, tmp_path / "cache", DiskBudget(margin_bytes=10**6), free_bytes=lambda _p: total + 10**6 - 1
    )
    with pytest.raises(DiskBudgetExceeded, match="margin"):
        no_margin.fetch(REPO, commit)
    assert backend.fetched() == []
    fits = ModelStore(client, tmp_path / "cache", DiskBudget(max_bytes=total, margin_bytes=0))
    assert snapshot_contents(fits.fetch(REPO, commit)) == MODEL_FILES
    assert fits.used_bytes() == total


def test_cleanup_removes_only_unreferenced_snapshots(backend, tmp_path):
    old = add_commit(backend.root, REPO, MODEL_FILES)
    new = add_commit(backend.root, REPO, {**MODEL_FILES, "config.json": b"{}"})
    other = add_commit(backend.root, "bob/other", MODEL_FILES)
    store = ModelStore(backend.client(), tmp_path / "cache")
    paths = [store.fetch(REPO, old), store.fetch(REPO, "main"), store.fetch("bob/other", other)]
    assert all(p.is_dir() for p in paths)

    removed = store.cleanup(keep={(REPO, "main"), ("bob/other", other)})
    assert removed == [(REPO, old)]
    assert not paths[0].exists() and paths[1].is_dir() and paths[2].is_dir()
    assert store.cached_snapshot(REPO, "main") == paths[1]

    assert sorted(store.cleanup(keep=set())) == sorted([(REPO, new), ("bob/other", other)])
    assert not any((tmp_path / "cache").glob("models--*"))


def test_store_serves_the_cache_when_the_hub_is_down(backend, tmp_path):
    commit = add_commit(backend.root, REPO, MODEL_FILES)
    store = ModelStore(backend.client(), tmp_path / "cache")
    snap = store.fetch(REPO)
    store.client = backend.client(Faults(unavailable=100))
    assert store.fetch(REPO) == snap
    assert store.fetch(REPO, commit) == snap
    with pytest.raises(HubUnavailable):
        store.fetch("bob/never-cached")


def test_private_then_public(backend):
    client = backend.client()
    client.create_repo("carol/new", private=True)
    hub = LocalHub(backend.root)
    assert hub.exists("carol/new") and hub.is_private("carol/new")
    client.set_visibility("carol/new", private=False)
    assert not hub.is_private("carol/new")
    client.create_repo("carol/new", private=True)  # existing repo: made private again, not an error
    assert hub.is_private("carol/new")


def test_paths_with_special_characters(backend, tmp_path):
    files = {**MODEL_FILES, "model-00001-of-00002 [x].safetensors": b"abc", "model #2.safetensors": b"def"}
    commit = add_commit(backend.root, REPO, files)
    snap = backend.client().download(REPO, commit, cache_dir=tmp_path / "cache")
    assert snapshot_contents(snap) == files
    assert os.path.basename(snap) == commit
