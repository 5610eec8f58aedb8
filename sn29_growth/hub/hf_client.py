"""The :class:`HubClient` over huggingface_hub: explicit timeouts, bounded retries, verified downloads.

Metadata comes from ``HfApi.model_info(files_metadata=True)`` (one request: every file's size, LFS sha256
and git blob id). Files are then fetched from ``{endpoint}/{repo}/resolve/{commit}/{path}`` through
huggingface_hub's HTTP session (so offline mode, user agent and token handling are the library's), hashed
while they stream, resumed with a Range request after a dropped connection, and written into the
Hugging Face cache layout (:mod:`sn29_growth.hub.cache`).

Why not ``snapshot_download`` for the online path: in huggingface_hub 2.4 it lists the tree with no timeout,
retries a 5xx HEAD for ~23 s per file on its own, reads its GET timeout from a module constant and checks
only sizes. Offline, ``snapshot_download(local_files_only=True)`` is used, so a hand-built cache serves.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    DisabledRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from sn29_growth import __version__
from sn29_growth.hub.cache import DownloadAborted, PartialFile, fill_snapshot
from sn29_growth.hub.policy import (
    MODEL_FILE_PATTERNS,
    UPLOAD_PATTERNS,
    select_files,
    upload_paths,
)
from sn29_growth.hub.protocol import (
    DownloadIncomplete,
    HubError,
    HubOffline,
    HubUnavailable,
    IntegrityError,
    RepoFile,
    RepoNotFound,
    RevisionNotFound,
    UnsupportedRepo,
    is_commit_sha,
    validate_repo_id,
)
from sn29_growth.hub.retry import RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

LIBRARY_NAME = "sn29-growth"
_RETRYABLE_STATUS = frozenset({408, 429})
_LISTING_CACHE_SIZE = 256


@dataclass(frozen=True)
class HubTimeouts:
    """``connect_s`` to open a connection; ``read_s`` of silence allowed while waiting for any byte."""

    connect_s: float = 10.0
    read_s: float = 60.0

    def __post_init__(self) -> None:
        if self.connect_s <= 0:
            raise ValueError(f"connect_s must be > 0, got {self.connect_s}")
        if self.read_s <= 0:
            raise ValueError(f"read_s must be > 0, got {self.read_s}")

    def as_httpx(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.read_s, connect=self.connect_s)


def default_endpoint() -> str:
    """``HF_ENDPOINT`` as set now (read at call time), else huggingface_hub's endpoint."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _map_error(exc: BaseException, what: str, *, mid_body: bool = False) -> HubError | None:
    """The project error for an SDK/transport exception, or None if it is not a Hub fault."""
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return HubOffline(f"{what}: offline mode is enabled (HF_HUB_OFFLINE)")
    if isinstance(exc, RevisionNotFoundError):
        return RevisionNotFound(f"{what}: revision not found")
    if isinstance(exc, (RepositoryNotFoundError, DisabledRepoError)):
        return RepoNotFound(f"{what}: repository not found (or private/gated)")
    if isinstance(exc, RemoteEntryNotFoundError):
        return IntegrityError(f"{what}: listed in the repository metadata but not served")
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        if status is not None and (status >= 500 or status in _RETRYABLE_STATUS):
            return HubUnavailable(f"{what}: HTTP {status}")
        return HubError(f"{what}: HTTP {status}: {exc}")
    if isinstance(exc, httpx2.TransportError):
        kind = "timed out" if isinstance(exc, httpx2.TimeoutException) else f"{type(exc).__name__}: {exc}"
        if mid_body:
            return DownloadIncomplete(f"{what}: transfer interrupted ({kind})")
        return HubUnavailable(f"{what}: {kind}")
    return None


def _range_start(content_range: str | None) -> int | None:
    """Start offset of a ``Content-Range: bytes a-b/n`` header."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    try:
        return int(content_range[6:].split("-", 1)[0])
    except ValueError:
        return None


def _to_repo_file(sibling: Any) -> RepoFile:
    if sibling.size is None:
        raise HubError(f"the Hub gave no size for {sibling.rfilename!r} (files_metadata not honoured)")
    lfs = sibling.lfs
    return RepoFile(
        path=sibling.rfilename,
        size=int(lfs.size if lfs is not None else sibling.size),
        sha256=lfs.sha256 if lfs is not None else None,
        blob_id=sibling.blob_id if lfs is None else None,
    )


class HfHubClient:
    """:class:`~sn29_growth.hub.protocol.HubClient` for the Hugging Face Hub (or any server speaking its API).

    ``endpoint`` defaults to ``HF_ENDPOINT``; ``token`` to huggingface_hub's stored token. ``api`` replaces the
    ``HfApi`` used for metadata and writes (tests pass a recorder). ``sleep`` is the backoff sleep.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        *,
        timeouts: HubTimeouts = HubTimeouts(),
        retry: RetryPolicy = RetryPolicy(),
        max_workers: int = 4,
        verify_existing: bool = False,
        api: HfApi | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        self.timeouts = timeouts
        self.retry = retry
        self.max_workers = max_workers
        self.verify_existing = verify_existing
        self._token = token
        self._sleep = sleep
        self._api = api or HfApi(
            endpoint=self.endpoint, token=token, library_name=LIBRARY_NAME, library_version=__version__
        )
        self._listings: OrderedDict[tuple[str, str], tuple[RepoFile, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # --- read side ---------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], what: str, *, retry: bool = True) -> Any:
        def once() -> Any:
            try:
                return fn()
            except Exception as exc:
                mapped = _map_error(exc, what)
                if mapped is None or mapped is exc:
                    raise
                raise mapped from exc

        if not retry:
            return once()
        return call_with_retries(once, self.retry, what=what, sleep=self._sleep)

    def _model_info(self, repo_id: str, revision: str, *, files_metadata: bool) -> Any:
        validate_repo_id(repo_id)
        return self._call(
            lambda: self._api.model_info(
                repo_id, revision=revision, files_metadata=files_metadata, timeout=self.timeouts.as_httpx()
            ),
            f"model_info {repo_id}@{revision}",
        )

    @staticmethod
    def _commit_of(info: Any, repo_id: str, revision: str) -> str:
        sha = getattr(info, "sha", None)
        if not isinstance(sha, str) or not is_commit_sha(sha):
            raise HubError(f"{repo_id}@{revision}: the Hub returned no commit id (got {sha!r})")
        if is_commit_sha(revision) and sha != revision:
            raise IntegrityError(f"{repo_id}@{revision}: the Hub answered for commit {sha}")
        return sha

    def resolve_revision(self, repo_id: str, revision: str = "main") -> str:
        info = self._model_info(repo_id, revision, files_metadata=False)
        return self._commit_of(info, repo_id, revision)

    def _listing(self, repo_id: str, revision: str) -> tuple[str, tuple[RepoFile, ...]]:
        if is_commit_sha(revision):
            with self._lock:
                cached = self._listings.get((repo_id, revision))
            if cached is not None:
                return revision, cached
        info = self._model_info(repo_id, revision, files_metadata=True)
        sha = self._commit_of(info, repo_id, revision)
        try:
            files = tuple(_to_repo_file(s) for s in info.siblings or ())
        except ValueError as exc:
            raise UnsupportedRepo(f"{repo_id}@{sha}: {exc}") from exc
        with self._lock:  # a commit's listing never changes
            self._listings[(repo_id, sha)] = files
            while len(self._listings) > _LISTING_CACHE_SIZE:
                self._listings.popitem(last=False)
        return sha, files

    def repo_files(self, repo_id: str, revision: str) -> list[RepoFile]:
        return list(self._listing(repo_id, revision)[1])

    def download(
        self,
        repo_id: str,
        revision: str,
        *,
        cache_dir: Path,
        allow_patterns: Sequence[str] = MODEL_FILE_PATTERNS,
    ) -> Path:
        validate_repo_id(repo_id)
        if constants.is_offline_mode():
            return self._cached_snapshot(repo_id, revision, Path(cache_dir), allow_patterns)
        sha, files = self._listing(repo_id, revision)
        selection = select_files(files, allow_patterns)
        if selection.skipped:
            logger.info("%s@%s: not downloading %s", repo_id, sha[:10], ", ".join(selection.skipped))

        def fetch(f: RepoFile, partial: PartialFile, abort: threading.Event) -> None:
            self._fetch_file(repo_id, sha, f, partial, abort)

        return fill_snapshot(
            Path(cache_dir),
            repo_id,
            sha,
            selection.selected,
            fetch,
            retry=self.retry,
            sleep=self._sleep,
            max_workers=self.max_workers,
            ref=None if is_commit_sha(revision) else revision,
            verify_existing=self.verify_existing,
        )

    def _cached_snapshot(
        self, repo_id: str, revision: str, cache_dir: Path, allow_patterns: Sequence[str]
    ) -> Path:
        try:
            path = snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=True,
                allow_patterns=list(allow_patterns),
            )
        except LocalEntryNotFoundError as exc:
            raise HubOffline(f"{repo_id}@{revision}: offline mode and not in the cache {cache_dir}") from exc
        return Path(path)

    def _fetch_file(
        self, repo_id: str, sha: str, f: RepoFile, partial: PartialFile, abort: threading.Event
    ) -> None:
        what = f"GET {repo_id}@{sha[:10]}:{f.path}"
        url = hf_hub_url(repo_id, f.path, revision=sha, endpoint=self.endpoint)
        headers = build_hf_headers(token=self._token, library_name=LIBRARY_NAME, library_version=__version__)
        headers["Accept-Encoding"] = "identity"
        resume_at = partial.written
        if resume_at:
            headers["Range"] = f"bytes={resume_at}-"
        received = False
        try:
            with get_session().stream(
                "GET", url, headers=headers, timeout=self.timeouts.as_httpx(), follow_redirects=True
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                hub_response = response.history[0] if response.history else response
                served = hub_response.headers.get(constants.HUGGINGFACE_HEADER_X_REPO_COMMIT)
                if served is not None and served != sha:
                    raise IntegrityError(f"{what}: served from commit {served}")
                if resume_at and not (
                    response.status_code == 206
                    and _range_start(response.headers.get("Content-Range")) == resume_at
                ):
                    partial.reset()
                for chunk in response.iter_bytes():
                    if abort.is_set():
                        raise DownloadAborted(f"{what}: stopped, another file failed")
                    partial.write(chunk)
                    received = True
        except Exception as exc:
            mapped = _map_error(exc, what, mid_body=received)
            if mapped is None or mapped is exc:
                raise
            raise mapped from exc

    # --- write side --------------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, *, private: bool = True) -> None:
        validate_repo_id(repo_id)

        def create() -> bool:
            try:
                self._api.create_repo(repo_id, private=private, repo_type="model", exist_ok=False)
            except HfHubHTTPError as exc:
                if _status(exc) == 409:
                    return False
                raise
            return True

        if self._call(create, f"create_repo {repo_id}"):
            logger.info("created %s repository %s", "private" if private else "public", repo_id)
        elif private:  # it already existed: make sure nothing is published before the chain commitment
            self.set_visibility(repo_id, private=True)

    def upload_folder(
        self,
        repo_id: str,
        folder: Path,
        *,
        commit_message: str = "Upload model",
        allow_patterns: Sequence[str] = UPLOAD_PATTERNS,
    ) -> str:
        validate_repo_id(repo_id)
        paths = upload_paths(Path(folder), allow_patterns)
        info = self._call(
            lambda: self._api.upload_folder(
                repo_id=repo_id,
                folder_path=Path(folder),
                commit_message=commit_message,
                allow_patterns=[glob.escape(p) for p in paths],
                delete_patterns=list(MODEL_FILE_PATTERNS),
                repo_type="model",
            ),
            f"upload_folder {repo_id}",
            retry=False,
        )
        oid = getattr(info, "oid", None)
        if not isinstance(oid, str) or not is_commit_sha(oid):
            raise HubError(f"upload_folder {repo_id}: the Hub returned no commit id (got {oid!r})")
        logger.info("uploaded %d file(s) to %s at %s", len(paths), repo_id, oid)
        return oid

    def set_visibility(self, repo_id: str, *, private: bool) -> None:
        validate_repo_id(repo_id)
        self._call(
            lambda: self._api.update_repo_settings(repo_id, private=private, repo_type="model"),
            f"set_visibility {repo_id}",
        )
