"""The huggingface_hub adapter against a local HTTP Hub: wire details, timeouts, offline cache, write side."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_hub_faults import Faults
from fake_hub_server import HubHTTPServer
from huggingface_hub import HfApi, constants, snapshot_download

from sn29_growth.hub import (
    HubError,
    HubOffline,
    HubUnavailable,
    IntegrityError,
    UnsupportedRepo,
    fetch_model,
)
from sn29_growth.hub.hf_client import HfHubClient, HubTimeouts
from sn29_growth.hub.local import LocalHub, add_commit
from sn29_growth.hub.policy import MODEL_FILE_PATTERNS
from sn29_growth.hub.retry import RetryPolicy

REPO = "alice/tiny"
FILES = {
    "config.json": b'{"hidden_size": 8}',
    "model.safetensors": bytes(range(256)) * 512,
    "tokenizer.json": b"{}",
    "pytorch_model.bin": b"\x80\x04",
}
ALLOWED = {k: v for k, v in FILES.items() if not k.endswith(".bin")}
ONE_TRY = RetryPolicy(attempts=1)


@pytest.fixture
def online(monkeypatch, tmp_path):
    """huggingface_hub online for this test only (tests run with HF_HUB_OFFLINE=1), with a temp HF_HOME."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # never a real token, even to a local server


@pytest.fixture
def server(online, tmp_path):
    with HubHTTPServer(tmp_path / "hub") as srv:
        yield srv


def test_metadata_request_and_pinned_file_urls(server, tmp_path):
    commit = add_commit(server.hub.root, REPO, FILES)
    client = HfHubClient(server.url, token=False, retry=ONE_TRY)
    sizes = {f.path: f.size for f in client.repo_files(REPO, "main")}
    assert sizes == {k: len(v) for k, v in FILES.items()}
    (info,) = server.requested("GET", "/api/models/")
    assert info.path == f"/api/models/{REPO}/revision/main"
    assert info.query == {"blobs": ["true"]}

    client.download(REPO, "main", cache_dir=tmp_path / "cache")
    resolves = [r.path for r in server.requested("GET", "/resolve/")]
    assert sorted(resolves) == sorted(f"/{REPO}/resolve/{commit}/{p}" for p in ALLOWED)
    assert server.requested("HEAD") == []  # sizes come from the metadata; no per-file HEAD
    assert [r.path for r in server.requested("GET", "/_cdn/")] == [f"/_cdn/{REPO}/{commit}/model.safetensors"]


def test_token_is_sent_to_the_hub_but_not_to_the_cdn(server, tmp_path):
    add_commit(server.hub.root, REPO, FILES)
    HfHubClient(server.url, token="hf_test_token", retry=ONE_TRY).download(
        REPO, "main", cache_dir=tmp_path / "c"
    )
    hub_requests = server.requested("GET", "/api/") + server.requested("GET", "/resolve/")
    assert hub_requests and all(
        r.headers.get("authorization") == "Bearer hf_test_token" for r in hub_requests
    )
    cdn_requests = server.requested("GET", "/_cdn/")
    assert cdn_requests and all("authorization" not in r.headers for r in cdn_requests)


def test_read_timeout_is_honoured(server):
    add_commit(server.hub.root, REPO, FILES)
    server.set_faults(Faults(timeouts=1, stall_s=3.0))
    client = HfHubClient(
        server.url, token=False, timeouts=HubTimeouts(connect_s=1.0, read_s=0.25), retry=ONE_TRY
    )
    start = time.monotonic()
    with pytest.raises(HubUnavailable, match="timed out"):
        client.resolve_revision(REPO)
    assert time.monotonic() - start < 1.5


def test_backoff_between_attempts(server):
    add_commit(server.hub.root, REPO, FILES)
    server.set_faults(Faults(unavailable=3))
    waits: list[float] = []
    client = HfHubClient(
        server.url,
        token=False,
        retry=RetryPolicy(attempts=3, backoff_s=0.5, max_backoff_s=0.75),
        sleep=waits.append,
    )
    with pytest.raises(HubUnavailable, match="HTTP 503"):
        client.resolve_revision(REPO)
    assert waits == [0.5, 0.75]
    assert len(server.requested("GET")) == 3


def test_served_commit_must_match(server, tmp_path, monkeypatch):
    commit = add_commit(server.hub.root, REPO, FILES)
    other = add_commit(server.hub.root, REPO, {**FILES, "config.json": b"{}"})
    client = HfHubClient(server.url, token=False, retry=ONE_TRY)
    monkeypatch.setattr(LocalHub, "resolve", lambda self, repo_id, revision="main": other)
    with pytest.raises(IntegrityError, match="answered for commit"):
        client.repo_files(REPO, commit)


def test_the_library_downloads_from_the_test_server(server, tmp_path):
    """The server is faithful enough for huggingface_hub's own snapshot_download (tree, HEAD, 302, X-Linked-*)."""
    commit = add_commit(server.hub.root, REPO, FILES)
    path = snapshot_download(
        REPO, revision=commit, cache_dir=tmp_path / "lib", endpoint=server.url, token=False, max_workers=1
    )
    assert {p.name: p.read_bytes() for p in Path(path).iterdir()} == FILES
    info = HfApi(endpoint=server.url, token=False).model_info(REPO, files_metadata=True)
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["model.safetensors"].size == len(FILES["model.safetensors"])
    assert lfs["config.json"] is None


def _hand_built_cache(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> Path:
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def test_hand_built_cache_serves_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    commit = "c" * 40
    snap = _hand_built_cache(tmp_path / "cache", REPO, commit, ALLOWED)
    client = HfHubClient("http://127.0.0.1:9", token=False)  # nothing listens there; nothing may be asked

    assert client.download(REPO, "main", cache_dir=tmp_path / "cache") == snap
    assert client.download(REPO, commit, cache_dir=tmp_path / "cache") == snap
    assert fetch_model(REPO, cache_dir=tmp_path / "cache", client=client) == snap
    assert fetch_model(f"{REPO}@{commit}", cache_dir=tmp_path / "cache", client=client) == snap
    start = time.monotonic()
    with pytest.raises(HubOffline):
        client.resolve_revision(REPO)
    with pytest.raises(HubOffline):
        client.download("alice/other", "main", cache_dir=tmp_path / "cache")
    with pytest.raises(HubOffline):
        fetch_model("alice/other", cache_dir=tmp_path / "cache", client=client)
    assert time.monotonic() - start < 1.0  # offline errors are not retried


def test_fetch_model_uses_hf_endpoint(server, tmp_path, monkeypatch):
    commit = add_commit(server.hub.root, REPO, FILES)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    path = fetch_model(f"{REPO}@{commit}", cache_dir=tmp_path / "cache")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == ALLOWED


def test_create_repo_and_visibility_requests(server):
    client = HfHubClient(server.url, token="hf_test_token")
    client.create_repo("carol/new", private=True)
    (create,) = server.requested("POST", "/api/repos/create")
    body = json.loads(create.body)
    assert (body["organization"], body["name"], body["visibility"]) == ("carol", "new", "private")
    assert create.headers["authorization"] == "Bearer hf_test_token"
    assert server.hub.is_private("carol/new")

    client.set_visibility("carol/new", private=False)
    (put,) = server.requested("PUT", "/api/models/carol/new/settings")
    assert json.loads(put.body) == {"visibility": "public"}
    assert not server.hub.is_private("carol/new")

    client.create_repo("carol/new", private=True)  # 409: exists -> made private again
    assert len(server.requested("POST", "/api/repos/create")) == 2
    assert json.loads(server.requested("PUT")[-1].body) == {"visibility": "private"}
    assert server.hub.is_private("carol/new")


class RecordingApi:
    """Stands in for HfApi on the write side (the local server does not implement uploads)."""

    def __init__(self, oid: str = "a" * 40) -> None:
        self.oid = oid
        self.calls: list[dict] = []

    def upload_folder(self, **kwargs):
        self.calls.append(kwargs)
        return SimpleNamespace(oid=self.oid, commit_url=f"https://hub/{kwargs['repo_id']}/commit/{self.oid}")


def _model_folder(path: Path) -> Path:
    path.mkdir()
    for name in ("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (path / name).write_bytes(b"x")
    for name in ("model.safetensors.index.json", "tokenizer.json", "README.md", "train.py", "optimizer.pt"):
        (path / name).write_bytes(b"x")
    return path


def test_upload_folder_sends_only_model_files_and_replaces_old_ones(tmp_path):
    api = RecordingApi()
    client = HfHubClient("http://127.0.0.1:9", token=False, api=api)
    folder = _model_folder(tmp_path / "model")
    assert client.upload_folder("carol/new", folder, commit_message="grown") == "a" * 40
    (call,) = api.calls
    assert call["repo_id"] == "carol/new" and Path(call["folder_path"]) == folder
    assert call["commit_message"] == "grown"
    assert sorted(call["allow_patterns"]) == [
        "README.md",
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert call["delete_patterns"] == list(MODEL_FILE_PATTERNS)


def test_upload_folder_refuses_a_folder_without_weights(tmp_path):
    api = RecordingApi()
    client = HfHubClient("http://127.0.0.1:9", token=False, api=api)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UnsupportedRepo, match="safetensors"):
        client.upload_folder("carol/new", folder)
    assert api.calls == []


def test_upload_folder_requires_a_commit_id(tmp_path):
    client = HfHubClient("http://127.0.0.1:9", token=False, api=RecordingApi(oid="not-a-sha"))
    with pytest.raises(HubError, match="no commit id"):
        client.upload_folder("carol/new", _model_folder(tmp_path / "model"))
