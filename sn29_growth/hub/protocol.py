"""What the validator, the miner and the growth engine need from the Hub, independent of any SDK.

:class:`HubClient` is the only Hub surface the rest of the project uses. The huggingface_hub adapter
(:mod:`sn29_growth.hub.hf_client`) and the local-directory implementation (:mod:`sn29_growth.hub.local`)
implement it; both raise only the exceptions defined here, never SDK exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from sn29_growth.hub.policy import MODEL_FILE_PATTERNS, UPLOAD_PATTERNS
from sn29_growth.modelref import validate_repo_id  # noqa: F401  (re-exported)

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HubError(Exception):
    """Base class of the Hub errors the project handles.

    ``retryable`` says whether trying the same call again may succeed (a transient server or network fault).
    """

    retryable: bool = False


class RepoNotFound(HubError):
    """The repository does not exist, or is private/gated and not visible to this client."""


class RevisionNotFound(RepoNotFound):
    """The repository exists but the branch, tag or commit does not."""


class HubUnavailable(HubError):
    """The Hub answered 5xx/408/429, timed out or could not be reached (after all retries when raised to callers)."""

    retryable = True


class HubOffline(HubUnavailable):
    """Offline mode is on (``HF_HUB_OFFLINE``) and the request cannot be served from the local cache."""

    retryable = False


class IntegrityError(HubError):
    """A downloaded file does not match the Hub's metadata (size, sha256, git blob id or commit)."""


class DownloadIncomplete(IntegrityError):
    """The connection dropped before a file was complete; a later attempt resumes it."""

    retryable = True


class DiskBudgetExceeded(HubError):
    """Downloading would exceed the store's byte budget or leave less than the free-disk margin."""


class UnsupportedRepo(HubError):
    """The repository cannot be served as a model: no config.json, no safetensors weights, unsafe paths."""


def is_commit_sha(revision: str) -> bool:
    """True for a full 40-hex git commit id (lower case), the only kind of revision that pins content."""
    return bool(_COMMIT_SHA.match(revision))


def validate_repo_path(path: str) -> str:
    """Return ``path`` if it is a relative POSIX path inside a repository, else raise ValueError."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"path must be a relative POSIX path, got {path!r}")
    if any(part in ("", ".", "..") for part in PurePosixPath(path).parts) or path.endswith("/"):
        raise ValueError(f"path must not contain empty, '.' or '..' components, got {path!r}")
    return path


@dataclass(frozen=True)
class RepoFile:
    """One file of a repository at one commit, as the Hub describes it before any download.

    ``sha256`` is known for LFS-stored files (weights); ``blob_id`` is the git object id, which for
    non-LFS files is the git blob sha1 of the content.
    """

    path: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None

    def __post_init__(self) -> None:
        validate_repo_path(self.path)
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.blob_id is not None and not _COMMIT_SHA.match(self.blob_id):
            raise ValueError(f"blob_id must be 40 lower-case hex digits, got {self.blob_id!r}")


@runtime_checkable
class HubClient(Protocol):
    """A model hub as the project sees it: read pinned snapshots, publish model folders."""

    def resolve_revision(self, repo_id: str, revision: str = "main") -> str:
        """The 40-hex commit that ``revision`` (branch, tag or commit) of ``repo_id`` points to now."""
        ...

    def repo_files(self, repo_id: str, revision: str) -> list[RepoFile]:
        """Every file of ``repo_id`` at ``revision`` with its size (and sha256 where known), before any download."""
        ...

    def download(
        self,
        repo_id: str,
        revision: str,
        *,
        cache_dir: Path,
        allow_patterns: Sequence[str] = MODEL_FILE_PATTERNS,
    ) -> Path:
        """Download the allowed files of ``repo_id`` at ``revision`` into ``cache_dir``; return the snapshot folder.

        The folder is ``cache_dir/models--{namespace}--{name}/snapshots/{commit}`` (the Hugging Face cache layout).
        Files outside :data:`MODEL_FILE_PATTERNS` are never fetched, whatever ``allow_patterns`` says. Every file is
        checked against the Hub's size and hash before it appears in the snapshot.
        """
        ...

    def create_repo(self, repo_id: str, *, private: bool = True) -> None:
        """Create ``repo_id`` if needed; an existing repository is set to ``private`` when ``private`` is True."""
        ...

    def upload_folder(
        self,
        repo_id: str,
        folder: Path,
        *,
        commit_message: str = "Upload model",
        allow_patterns: Sequence[str] = UPLOAD_PATTERNS,
    ) -> str:
        """Commit the allowed files of ``folder`` to the main branch, replacing the repo's model files; return the commit."""
        ...

    def set_visibility(self, repo_id: str, *, private: bool) -> None:
        """Make ``repo_id`` private or public."""
        ...
