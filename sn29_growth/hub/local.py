"""A Hub kept in a local directory: offline demos, the miner without network, and tests.

Layout (one folder per commit, a ``refs`` folder for branches)::

    root/{namespace}/{name}/{commit}/{files}     every file of the repository at that commit
    root/{namespace}/{name}/refs/main            -> 40-hex commit
    root/{namespace}/{name}/.meta.json           {"private": true|false}

:class:`LocalHub` reads and writes that layout; :class:`LocalHubClient` serves it through the
:class:`~sn29_growth.hub.protocol.HubClient` protocol with the same retry and verification code as the
real client, and with injectable faults (:class:`Faults`). ``tests/fake_hub_server.py`` serves the same
layout over HTTP for the real huggingface_hub client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from sn29_growth.atomic import atomic_directory, atomic_write_json, atomic_write_text
from sn29_growth.hub.cache import CHUNK_SIZE, DownloadAborted, PartialFile, file_digests, fill_snapshot
from sn29_growth.hub.policy import (
    MODEL_FILE_PATTERNS,
    UPLOAD_PATTERNS,
    matches_any,
    select_files,
    upload_paths,
)
from sn29_growth.hub.protocol import (
    DownloadIncomplete,
    HubUnavailable,
    RepoFile,
    RepoNotFound,
    RevisionNotFound,
    is_commit_sha,
    validate_repo_id,
    validate_repo_path,
)
from sn29_growth.hub.retry import RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".h5", ".msgpack", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024
RequestKind = Literal["info", "file", "any"]

# --- faults ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Faults a fake Hub injects. Counts apply to the first requests of kind ``on`` after the faults are set.

    - ``not_found``: repositories that look missing.
    - ``unavailable``: the first N requests answer 503; then ``timeouts``: the next N stall (``stall_s`` over
      HTTP; an immediate timeout error in :class:`LocalHubClient`).
    - ``cut_at``: path -> the connection drops when the transfer reaches that byte of the file (a resumed
      request starting at or after it is served in full); ``ranges=False`` ignores Range requests.
    - ``short``: path -> the Hub serves only the first N bytes (a truncated file; metadata says more).
    - ``corrupt``: paths served with their middle byte flipped (same size, wrong hash).
    """

    not_found: frozenset[str] = frozenset()
    unavailable: int = 0
    timeouts: int = 0
    on: RequestKind = "any"
    stall_s: float = 1.0
    cut_at: Mapping[str, int] = field(default_factory=dict)
    ranges: bool = True
    short: Mapping[str, int] = field(default_factory=dict)
    corrupt: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "not_found", frozenset(self.not_found))
        object.__setattr__(self, "corrupt", frozenset(self.corrupt))
        object.__setattr__(self, "cut_at", MappingProxyType(dict(self.cut_at)))
        object.__setattr__(self, "short", MappingProxyType(dict(self.short)))
        if self.unavailable < 0:
            raise ValueError(f"unavailable must be >= 0, got {self.unavailable}")
        if self.timeouts < 0:
            raise ValueError(f"timeouts must be >= 0, got {self.timeouts}")
        if self.on not in ("info", "file", "any"):
            raise ValueError(f"on must be 'info', 'file' or 'any', got {self.on!r}")
        if self.stall_s < 0:
            raise ValueError(f"stall_s must be >= 0, got {self.stall_s}")
        for name in ("cut_at", "short"):
            if any(v < 0 for v in getattr(self, name).values()):
                raise ValueError(f"{name} offsets must be >= 0")


class FaultCounter:
    """Thread-safe countdown of a :class:`Faults` plan's transient failures."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._unavailable = faults.unavailable
        self._timeouts = faults.timeouts
        self._lock = threading.Lock()

    def next_failure(self, kind: RequestKind) -> Literal["unavailable", "timeout"] | None:
        if self.faults.on not in ("any", kind):
            return None
        with self._lock:
            if self._unavailable > 0:
                self._unavailable -= 1
                return "unavailable"
            if self._timeouts > 0:
                self._timeouts -= 1
                return "timeout"
        return None


def served_chunks(path: Path, repo_path: str, faults: Faults, start: int = 0) -> Iterator[bytes]:
    """The bytes a faulty Hub sends for a file from offset ``start``: ``short`` and ``corrupt`` applied."""
    size = path.stat().st_size
    end = min(size, faults.short.get(repo_path, size))
    flip = size // 2 if repo_path in faults.corrupt and size else None
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        while pos < end:
            chunk = fh.read(min(CHUNK_SIZE, end - pos))
            if not chunk:
                return
            if flip is not None and pos <= flip < pos + len(chunk):
                i = flip - pos
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            pos += len(chunk)
            yield chunk


# --- the on-disk Hub ------------------------------------------------------------------------------------

_digest_cache: dict[tuple[str, int, int], tuple[str, str]] = {}
_digest_lock = threading.Lock()


def _digests(path: Path) -> tuple[str, str]:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _digest_lock:
        hit = _digest_cache.get(key)
    if hit is None:
        hit = file_digests(path, st.st_size)
        with _digest_lock:
            _digest_cache[key] = hit
    return hit


def is_lfs_path(path: str, size: int) -> bool:
    """Whether the Hub would store ``path`` with LFS (binary formats, or 10 MiB and more)."""
    return path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class LocalFile:
    """A file of a local repository: its Hub metadata and where its bytes are."""

    meta: RepoFile
    local_path: Path
    lfs: bool
    git_oid: str  # the git object id the Hub reports (the LFS pointer's for LFS files)


class LocalHub:
    """Read and write the local Hub layout under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def repo_dir(self, repo_id: str) -> Path:
        ns, name = validate_repo_id(repo_id).split("/")
        return self.root / ns / name

    def exists(self, repo_id: str) -> bool:
        return self.repo_dir(repo_id).is_dir()

    def is_private(self, repo_id: str) -> bool:
        try:
            return bool(json.loads((self.repo_dir(repo_id) / ".meta.json").read_text())["private"])
        except FileNotFoundError:
            return False

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """The commit of ``revision``; raises RepoNotFound / RevisionNotFound."""
        repo = self.repo_dir(repo_id)
        if not repo.is_dir():
            raise RepoNotFound(f"{repo_id}: repository not found")
        if is_commit_sha(revision):
            if (repo / revision).is_dir():
                return revision
            raise RevisionNotFound(f"{repo_id}@{revision}: revision not found")
        try:
            validate_repo_path(revision)
            sha = (repo / "refs" / revision).read_text().strip()
        except (ValueError, FileNotFoundError, NotADirectoryError):
            raise RevisionNotFound(f"{repo_id}@{revision}: revision not found") from None
        if not is_commit_sha(sha) or not (repo / sha).is_dir():
            raise RevisionNotFound(f"{repo_id}@{revision}: ref points to a missing commit {sha!r}")
        return sha

    def files(self, repo_id: str, commit: str) -> list[LocalFile]:
        """Every file of the repository at ``commit`` with the metadata the Hub would report."""
        base = self.repo_dir(repo_id) / commit
        out = []
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = path.relative_to(base).as_posix()
            size = path.stat().st_size
            sha256, blob = _digests(path)
            if is_lfs_path(rel, size):
                meta = RepoFile(rel, size, sha256=sha256)
                oid = git_blob_id(lfs_pointer(sha256, size))
            else:
                meta, oid = RepoFile(rel, size, blob_id=blob), blob
            out.append(LocalFile(meta=meta, local_path=path, lfs=meta.sha256 is not None, git_oid=oid))
        return out

    def file(self, repo_id: str, commit: str, path: str) -> LocalFile | None:
        validate_repo_path(path)
        return next((f for f in self.files(repo_id, commit) if f.meta.path == path), None)

    def create_repo(self, repo_id: str, *, private: bool) -> bool:
        """Create an empty repository; False if it already existed (its visibility is left alone)."""
        repo = self.repo_dir(repo_id)
        with self._lock:
            if repo.is_dir():
                return False
            repo.mkdir(parents=True)
            atomic_write_json(repo / ".meta.json", {"private": private})
        return True

    def set_private(self, repo_id: str, private: bool) -> None:
        if not self.exists(repo_id):
            raise RepoNotFound(f"{repo_id}: repository not found")
        atomic_write_json(self.repo_dir(repo_id) / ".meta.json", {"private": private})

    def commit(
        self,
        repo_id: str,
        folder: Path,
        paths: Sequence[str],
        *,
        message: str = "Upload model",
        delete_patterns: Sequence[str] = MODEL_FILE_PATTERNS,
    ) -> str:
        """Commit ``paths`` of ``folder`` on top of main; files of main matching ``delete_patterns`` go away."""
        repo = self.repo_dir(repo_id)
        if not repo.is_dir():
            raise RepoNotFound(f"{repo_id}: repository not found")
        with self._lock:
            parent = self._main(repo_id)
            kept = (
                []
                if parent is None
                else [
                    f
                    for f in self.files(repo_id, parent)
                    if f.meta.path not in paths and not matches_any(f.meta.path, delete_patterns)
                ]
            )
            h = hashlib.sha1(f"{parent}\n{message}\n".encode())
            for f in kept:
                h.update(f"{f.meta.path}\0{f.git_oid}\n".encode())
            for p in sorted(paths):
                h.update(f"{p}\0{_digests(Path(folder) / p)[0]}\n".encode())
            sha = h.hexdigest()
            if not (repo / sha).is_dir():
                with atomic_directory(repo / sha) as tmp:
                    for f in kept:
                        _link_or_copy(f.local_path, tmp / f.meta.path)
                    for p in paths:
                        (tmp / p).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(Path(folder) / p, tmp / p)
            atomic_write_text(repo / "refs" / "main", sha)
        return sha

    def _main(self, repo_id: str) -> str | None:
        try:
            return self.resolve(repo_id, "main")
        except RevisionNotFound:
            return None


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def add_commit(root: Path, repo_id: str, files: Mapping[str, bytes], *, private: bool = False) -> str:
    """Create (if needed) ``repo_id`` under ``root`` and commit ``files`` (path -> bytes) as main; return the commit.

    For demos and tests. Unlike :meth:`LocalHub.commit` it accepts any file (pickles, subfolders).
    """
    hub = LocalHub(root)
    hub.create_repo(repo_id, private=private)
    repo = hub.repo_dir(repo_id)
    parent = hub._main(repo_id)
    h = hashlib.sha1(f"{parent}\n".encode())
    for path in sorted(files):
        validate_repo_path(path)
        h.update(f"{path}\0{git_blob_id(files[path])}\n".encode())
    sha = h.hexdigest()
    if not (repo / sha).is_dir():
        with atomic_directory(repo / sha) as tmp:
            for path, data in files.items():
                (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp / path).write_bytes(data)
    atomic_write_text(repo / "refs" / "main", sha)
    return sha


# --- the client -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedCall:
    """One call a :class:`LocalHubClient` received (attempts of retried calls each count)."""

    method: str
    repo_id: str
    detail: tuple = ()


class LocalHubClient:
    """:class:`~sn29_growth.hub.protocol.HubClient` over a :class:`LocalHub` directory, with fault injection.

    ``hide_private`` makes private repositories invisible to reads, as the Hub does for other users.
    ``calls`` records every call and every file fetch attempt.
    """

    def __init__(
        self,
        root: Path,
        *,
        faults: Faults = Faults(),
        retry: RetryPolicy = RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0),
        hide_private: bool = False,
        max_workers: int = 1,
        verify_existing: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hub = LocalHub(root)
        self.retry = retry
        self.hide_private = hide_private
        self.max_workers = max_workers
        self.verify_existing = verify_existing
        self.calls: list[RecordedCall] = []
        self._sleep = sleep
        self._calls_lock = threading.Lock()
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault plan (counts start again)."""
        self._faults = FaultCounter(faults)

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    def _record(self, method: str, repo_id: str, *detail: object) -> None:
        with self._calls_lock:
            self.calls.append(RecordedCall(method, repo_id, tuple(detail)))

    def _request(self, kind: RequestKind, repo_id: str, what: str) -> None:
        """What every simulated network request goes through: not-found, private and transient faults."""
        validate_repo_id(repo_id)
        failure = self._faults.next_failure(kind)
        if failure == "unavailable":
            raise HubUnavailable(f"{what}: HTTP 503 (injected)")
        if failure == "timeout":
            raise HubUnavailable(f"{what}: timed out (injected)")
        if (
            repo_id in self.faults.not_found
            or not self.hub.exists(repo_id)
            or (self.hide_private and self.hub.is_private(repo_id))
        ):
            raise RepoNotFound(f"{what}: repository not found")

    def _read(self, method: str, repo_id: str, revision: str) -> str:
        def once() -> str:
            self._record(method, repo_id, revision)
            self._request("info", repo_id, f"{method} {repo_id}@{revision}")
            return self.hub.resolve(repo_id, revision)

        return call_with_retries(once, self.retry, what=f"{method} {repo_id}@{revision}", sleep=self._sleep)

    def resolve_revision(self, repo_id: str, revision: str = "main") -> str:
        return self._read("resolve_revision", repo_id, revision)

    def repo_files(self, repo_id: str, revision: str) -> list[RepoFile]:
        sha = self._read("repo_files", repo_id, revision)
        return [f.meta for f in self.hub.files(repo_id, sha)]

    def download(
        self,
        repo_id: str,
        revision: str,
        *,
        cache_dir: Path,
        allow_patterns: Sequence[str] = MODEL_FILE_PATTERNS,
    ) -> Path:
        sha = self._read("download", repo_id, revision)
        local = {f.meta.path: f for f in self.hub.files(repo_id, sha)}
        selection = select_files((f.meta for f in local.values()), allow_patterns)

        def fetch(f: RepoFile, partial: PartialFile, abort: threading.Event) -> None:
            self._record("fetch", repo_id, f.path, partial.written)
            self._request("file", repo_id, f"GET {repo_id}@{sha[:10]}:{f.path}")
            faults = self.faults
            if not faults.ranges and partial.written:
                partial.reset()
            start = partial.written
            cut = faults.cut_at.get(f.path)
            for chunk in served_chunks(local[f.path].local_path, f.path, faults, start):
                if abort.is_set():
                    raise DownloadAborted(f"{f.path}: stopped, another file failed")
                if cut is not None and start < cut <= partial.written + len(chunk):
                    partial.write(chunk[: cut - partial.written])
                    raise DownloadIncomplete(f"{f.path}: connection dropped at byte {cut} (injected)")
                partial.write(chunk)

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

    def create_repo(self, repo_id: str, *, private: bool = True) -> None:
        self._record("create_repo", repo_id, private)
        if not self.hub.create_repo(repo_id, private=private) and private:
            self.hub.set_private(repo_id, True)

    def upload_folder(
        self,
        repo_id: str,
        folder: Path,
        *,
        commit_message: str = "Upload model",
        allow_patterns: Sequence[str] = UPLOAD_PATTERNS,
    ) -> str:
        folder = Path(folder)
        paths = upload_paths(folder, allow_patterns)
        self._record("upload_folder", repo_id, tuple(paths), commit_message)
        sha = self.hub.commit(repo_id, folder, paths, message=commit_message)
        logger.info("committed %d file(s) to local %s at %s", len(paths), repo_id, sha)
        return sha

    def set_visibility(self, repo_id: str, *, private: bool) -> None:
        self._record("set_visibility", repo_id, private)
        self.hub.set_private(repo_id, private)
