"""Upload and commit, in the anti-copy order, resumable after any interruption.

Phases, each recorded in a small state file (written atomically) as soon as it completes:

1. ``uploaded``: the repository is created (or set) private and the model folder is committed to it;
   the Hub commit sha is recorded. If the repository's main branch already holds exactly these model
   files (an earlier upload whose answer was lost), no new commit is made.
2. ``committed``: ``namespace:name:commit:hash:competition`` is committed on chain, signed by the
   hotkey — unless the chain already holds exactly that value (committing again would move its block).
3. ``public``: the commitment is read back from the chain and matches; only then is the repository made
   public.

A rerun skips completed phases. The state is keyed by the repository, hotkey, competition and the
unsalted hash of the files: a different model folder starts over. The hash is computed from the local
files that are uploaded (never re-downloaded), over the files the validator hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json
from sn29_growth.chain.commitment import (
    ModelCommitment,
    directory_hash,
    hashed_files,
    salted_hash,
)
from sn29_growth.chain.protocol import ChainClient
from sn29_growth.hub.local import git_blob_id
from sn29_growth.hub.policy import CARD_FILES, is_model_file, upload_paths
from sn29_growth.hub.protocol import HubClient, RepoFile, RepoNotFound, validate_repo_id

log = logging.getLogger(__name__)

STATE_VERSION = 1
_PLACEHOLDER_COMMIT = "0" * 40


class PublishError(RuntimeError):
    """A phase could not complete (for example the commitment read back differs); rerun to resume."""


@dataclass
class PublishState:
    """What has been done for one (repo, hotkey, competition, model files) publication."""

    repo_id: str
    hotkey: str
    competition: str
    dir_hash: str
    version: int = STATE_VERSION
    hub_commit: str | None = None
    commitment: str | None = None
    committed: bool = False
    public: bool = False

    @property
    def phase(self) -> str:
        if self.public:
            return "public"
        if self.committed:
            return "committed"
        return "uploaded" if self.hub_commit else "new"

    def matches(self, other: PublishState) -> bool:
        keys = ("repo_id", "hotkey", "competition", "dir_hash", "version")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def load_publish_state(path: Path) -> PublishState | None:
    """The saved state, or None when the file is missing or unreadable (the flow then starts over)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return PublishState(**{f.name: data[f.name] for f in fields(PublishState) if f.name in data})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        log.warning("%s: unreadable publish state (%s); starting over", path, e)
        return None


def save_publish_state(path: Path, state: PublishState) -> None:
    atomic_write_json(path, asdict(state))


@dataclass(frozen=True)
class Published:
    repo_id: str
    hub_commit: str
    commitment: str
    skipped: tuple[str, ...]  # phases found already done

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": list(self.skipped)}


def upload_files(folder: Path) -> dict[str, Path]:
    """The files an upload sends, by name (model files and the model card)."""
    return {name: folder / name for name in upload_paths(folder)}


def model_hash(folder: Path) -> str:
    """The unsalted hash of the uploaded files that the content hash covers (the validator's file set)."""
    sent = upload_files(folder)
    return directory_hash({n: p for n, p in hashed_files(folder).items() if n in sent})


def commitment_for(
    repo_id: str, hub_commit: str, dir_hash: str, hotkey: str, competition: str
) -> ModelCommitment:
    ns, name = validate_repo_id(repo_id).split("/")
    return ModelCommitment(ns, name, hub_commit, salted_hash(dir_hash, hotkey), competition)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _same_file(remote: RepoFile, local: Path) -> bool:
    if remote.size != local.stat().st_size:
        return False
    if remote.sha256 is not None:
        return remote.sha256 == _sha256(local)
    if remote.blob_id is not None:
        return remote.blob_id == git_blob_id(local.read_bytes())
    return False


def remote_commit_with(hub: HubClient, repo_id: str, files: dict[str, Path]) -> str | None:
    """The main commit of ``repo_id`` if it holds exactly these model files (the card may differ), else None."""
    try:
        sha = hub.resolve_revision(repo_id, "main")
        remote = {f.path: f for f in hub.repo_files(repo_id, sha)}
    except RepoNotFound:
        return None
    model = {n: p for n, p in files.items() if n not in CARD_FILES}
    if {n for n in remote if is_model_file(n)} != set(model):
        return None
    return sha if all(_same_file(remote[n], p) for n, p in model.items()) else None


def _warn_if_live(current: str | None, repo_id: str) -> None:
    try:
        live = ModelCommitment.parse(current) if current else None
    except ValueError:
        live = None
    if live is not None and live.repo_id == repo_id:
        log.warning(
            "%s holds the model this hotkey has committed now; it is private until the new commitment "
            "lands (validators that have not downloaded it yet cannot meanwhile). A new repository name "
            "per submission avoids this.",
            repo_id,
        )


def publish(
    folder: str | os.PathLike,
    *,
    repo_id: str,
    competition: str,
    hotkey: str,
    hub: HubClient,
    chain: ChainClient,
    state_path: str | os.PathLike,
    commit_message: str = "Upload model (sn29-growth miner)",
) -> Published:
    """Upload ``folder`` privately, commit it on chain, read the commitment back, make the repo public."""
    folder, state_path = Path(folder), Path(state_path)
    files = upload_files(folder)
    fresh = PublishState(repo_id, hotkey, competition, model_hash(folder))
    # The commitment's size limit is checked before anything is uploaded.
    commitment_for(repo_id, _PLACEHOLDER_COMMIT, fresh.dir_hash, hotkey, competition)
    saved = load_publish_state(state_path)
    state = saved if saved is not None and saved.matches(fresh) else fresh
    if saved is not None and state is fresh:
        log.info("%s: the model or the target changed since the last publication; starting over", state_path)
    skipped: list[str] = []

    if state.hub_commit is None:
        _warn_if_live(chain.read_commitment(hotkey), repo_id)
        hub.create_repo(repo_id, private=True)
        existing = remote_commit_with(hub, repo_id, files)
        if existing is not None:
            log.info("%s@%s already holds these files; not uploading again", repo_id, existing[:10])
            state.hub_commit = existing
        else:
            state.hub_commit = hub.upload_folder(repo_id, folder, commit_message=commit_message)
            log.info("uploaded %s to %s (private) at %s", folder, repo_id, state.hub_commit)
        state.commitment = commitment_for(
            repo_id, state.hub_commit, state.dir_hash, hotkey, competition
        ).format()
        save_publish_state(state_path, state)
    else:
        skipped.append("uploaded")
    value = state.commitment
    assert value is not None

    if not state.committed:
        if chain.read_commitment(hotkey) == value:
            log.info("the chain already holds %s for %s", value, hotkey)
        else:
            chain.commit(value)
            log.info("committed %s on chain for %s", value, hotkey)
        state.committed = True
        save_publish_state(state_path, state)
    else:
        skipped.append("committed")

    if not state.public:
        current = chain.read_commitment(hotkey)
        if current != value:
            state.committed = False
            save_publish_state(state_path, state)
            raise PublishError(
                f"the chain holds {current!r} for {hotkey}, not the committed {value!r}; the repository "
                f"stays private (rerun to commit again)"
            )
        hub.set_visibility(repo_id, private=False)
        state.public = True
        save_publish_state(state_path, state)
        log.info("%s is public", repo_id)
    else:
        skipped.append("public")
    return Published(repo_id, state.hub_commit, value, tuple(skipped))
