"""Upload → commit → read back → public: the anti-copy order, the hash, and resuming after interruptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sn29_growth.chain.commitment import ModelCommitment, content_hash
from sn29_growth.chain.protocol import ChainUnavailable
from sn29_growth.hub.local import LocalHubClient
from sn29_growth.miner.offline import FileChain
from sn29_growth.miner.publish import (
    PublishError,
    load_publish_state,
    model_hash,
    publish,
)

REPO = "miner/grown-llama"


def hotkey_address(uri: str = "//publisher") -> str:
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(uri).ss58_address


HOTKEY = hotkey_address()


def model_folder(path: Path, weights: bytes = b"\x01\x02" * 4096) -> Path:
    """A folder with what a trained model directory holds: model files, a card, and training leftovers."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer.json").write_text('{"version": "1.0"}')
    (path / "README.md").write_text("# card\n")
    (path / "train_log.jsonl").write_text("{}\n")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "optimizer.pt").write_bytes(b"\x80")
    return path


class Chain(FileChain):
    """The file chain with fault injection and a log of commits (and the Hub visibility seen at each)."""

    def __init__(self, path: Path, hotkey: str, hub: LocalHubClient) -> None:
        super().__init__(path, hotkey)
        self.hub = hub
        self.commits: list[tuple[str, bool]] = []
        self.fail_commit = 0  # raise before committing
        self.lose_answer = 0  # commit, then raise as a dropped connection does
        self.drop_silently = False  # accept the call but never store the value

    def commit(self, value: str) -> None:
        if self.fail_commit:
            self.fail_commit -= 1
            raise ChainUnavailable("commit: connection refused (injected)")
        self.commits.append((value, self.hub.hub.is_private(REPO)))
        if not self.drop_silently:
            super().commit(value)
        if self.lose_answer:
            self.lose_answer -= 1
            raise ChainUnavailable("commit: connection dropped after submission (injected)")


@pytest.fixture
def env(tmp_path):
    hub = LocalHubClient(tmp_path / "hub")
    chain = Chain(tmp_path / "chain.json", HOTKEY, hub)
    folder = model_folder(tmp_path / "trained")
    state = tmp_path / "run" / "publish.json"

    def go(**kw):
        args = dict(repo_id=REPO, competition="c00", hotkey=HOTKEY, hub=hub, chain=chain, state_path=state)
        args.update(kw)
        return publish(folder, **args)

    return hub, chain, folder, state, go


def methods(hub: LocalHubClient) -> list[str]:
    return [c.method for c in hub.calls]


def test_private_upload_then_commit_then_public(env):
    hub, chain, folder, state, go = env
    out = go()
    assert methods(hub)[:2] == ["create_repo", "resolve_revision"]  # private repo first, then the no-op check
    assert methods(hub).count("upload_folder") == 1
    assert methods(hub)[-1] == "set_visibility"
    assert chain.commits == [(out.commitment, True)]  # committed while the repository was still private
    assert not hub.hub.is_private(REPO)
    assert chain.read_commitment(HOTKEY) == out.commitment
    assert load_publish_state(state).phase == "public"

    mc = ModelCommitment.parse(out.commitment)
    assert (mc.repo_id, mc.commit, mc.competition) == (REPO, out.hub_commit, "c00")
    snapshot = hub.hub.repo_dir(REPO) / out.hub_commit
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]  # training leftovers never leave the machine
    assert mc.hash == content_hash(snapshot, HOTKEY)  # what a validator computes from the download
    assert mc.hash == content_hash(folder, HOTKEY)  # ... equals the hash of the local files


def test_rerun_after_success_does_nothing(env):
    hub, chain, _, _, go = env
    first = go()
    block = chain.commitments()[HOTKEY].block
    n_calls = len(hub.calls)
    again = go()
    assert again.commitment == first.commitment
    assert again.skipped == ("uploaded", "committed", "public")
    assert len(hub.calls) == n_calls and len(chain.commits) == 1
    assert chain.commitments()[HOTKEY].block == block  # not re-committed: the block (and age) is kept


def test_interrupted_commit_resumes_without_uploading_again(env):
    hub, chain, _, state, go = env
    chain.fail_commit = 1
    with pytest.raises(ChainUnavailable):
        go()
    assert load_publish_state(state).phase == "uploaded"
    assert hub.hub.is_private(REPO)  # nothing public before the commitment
    out = go()
    assert methods(hub).count("upload_folder") == 1
    assert out.skipped == ("uploaded",)
    assert chain.read_commitment(HOTKEY) == out.commitment and not hub.hub.is_private(REPO)


def test_commit_that_landed_is_not_sent_twice(env):
    _, chain, _, state, go = env
    chain.lose_answer = 1
    with pytest.raises(ChainUnavailable):
        go()
    assert load_publish_state(state).phase == "uploaded"
    block = chain.commitments()[HOTKEY].block
    out = go()
    assert len(chain.commits) == 1  # read back first: the value is already there
    assert chain.commitments()[HOTKEY].block == block
    assert chain.read_commitment(HOTKEY) == out.commitment


def test_lost_state_file_does_not_upload_identical_files_again(env):
    hub, chain, folder, state, go = env
    first = go()
    state.unlink()
    (folder / "README.md").write_text("# a different card\n")  # the card is not part of the model
    again = go()
    assert methods(hub).count("upload_folder") == 1
    assert again.hub_commit == first.hub_commit and again.commitment == first.commitment


def test_changed_weights_start_over(env):
    hub, chain, folder, _, go = env
    first = go()
    (folder / "model.safetensors").write_bytes(b"\x03" * 8192)
    second = go()
    assert methods(hub).count("upload_folder") == 2
    assert second.hub_commit != first.hub_commit
    assert ModelCommitment.parse(second.commitment).hash != ModelCommitment.parse(first.commitment).hash
    assert chain.read_commitment(HOTKEY) == second.commitment


def test_commitment_that_does_not_read_back_keeps_the_repo_private(env):
    hub, chain, _, state, go = env
    chain.drop_silently = True
    with pytest.raises(PublishError, match="stays private"):
        go()
    assert hub.hub.is_private(REPO)
    assert load_publish_state(state).phase == "uploaded"  # the next run commits again
    chain.drop_silently = False
    out = go()
    assert chain.read_commitment(HOTKEY) == out.commitment and not hub.hub.is_private(REPO)


def test_too_long_commitment_is_refused_before_any_upload(env):
    hub, _, _, _, go = env
    with pytest.raises(ValueError, match="128-byte limit"):
        go(repo_id="miner/" + "x" * 90)
    assert hub.calls == []


def test_hash_covers_model_files_only(tmp_path):
    folder = model_folder(tmp_path / "m")
    before = model_hash(folder)
    (folder / "README.md").write_text("changed")
    (folder / "summary.json").write_text(json.dumps({"x": 1}))
    assert model_hash(folder) == before
    (folder / "tokenizer.json").write_text('{"version": "2.0"}')
    assert model_hash(folder) != before


# --- the same flow over the real huggingface_hub client, up to HfApi's upload call -------------------


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    from fake_hub_server import HubHTTPServer
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with HubHTTPServer(tmp_path / "http-hub") as server:
        yield server


def test_publish_through_the_huggingface_hub_client(hub_server, tmp_path):
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    from sn29_growth.hub.hf_client import HfHubClient
    from sn29_growth.hub.policy import upload_paths

    class UploadingApi(HfApi):
        """The real HfApi against the test server; only the upload (not served over HTTP) lands locally."""

        uploads: list[dict] = []

        def upload_folder(self, **kw):
            self.uploads.append(kw)
            folder = Path(kw["folder_path"])
            sha = hub_server.hub.commit(
                kw["repo_id"], folder, upload_paths(folder), message=kw["commit_message"]
            )
            return SimpleNamespace(oid=sha)

    api = UploadingApi(endpoint=hub_server.url, token=False)
    client = HfHubClient(hub_server.url, token=False, api=api)
    chain = FileChain(tmp_path / "chain.json", HOTKEY)
    folder = model_folder(tmp_path / "trained")
    kw = dict(repo_id=REPO, competition="c00", hotkey=HOTKEY, hub=client, chain=chain)

    out = publish(folder, state_path=tmp_path / "state.json", **kw)
    assert len(api.uploads) == 1 and not hub_server.hub.is_private(REPO)
    assert hub_server.requested("POST", "/api/repos/create")
    assert json.loads(hub_server.requested("PUT")[-1].body) == {"visibility": "public"}
    assert ModelCommitment.parse(out.commitment).commit == hub_server.hub.resolve(REPO)

    again = publish(
        folder, state_path=tmp_path / "fresh-state.json", **kw
    )  # state lost: Hub metadata decides
    assert len(api.uploads) == 1 and again.hub_commit == out.hub_commit
