"""A Hub kept in a local directory: offline demos, the miner without network, and tests.

Layout (one folder per commit, a ``refs`` folder for branches)::

    root/{namespace}/{name}/{commit}/{files}     every file of the repository at that commit
    root/{namespace}/{name}/refs/main            -> 40-hex commit
    root/{namespace}/{name}/.meta.json           {"private": true|false}

:class:`LocalHub` reads and writes that layout; :class:`LocalHubClient` serves it through the
:class:`~sn29_growth.hub.protocol.HubClient` protocol with the same retry and verification code as the
real client. Its two protected methods, :meth:`~LocalHubClient._before_request` and
:meth:`~LocalHubClient._transfer`, are where a subclass changes how the simulated Hub answers.
``tests/fake_hub_server.py`` serves the same layout over HTTP for the real huggingface_hub client.
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
from dataclasses import dataclass
from pathlib import Path
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
    RepoFile,
    RepoNotFound,
    RevisionNotFound,
    is_commit_sha,
    validate_repo_id,
    validate_repo_path,
)
from sn29_growth.hub.retry import RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".model",
    ".parquet",
)
LFS_MIN_SIZE = 10 * 1024 * 1024
RequestKind = Literal["info", "file"]

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
    """:class:`~sn29_growth.hub.protocol.HubClient` over a :class:`LocalHub` directory.

    ``hide_private`` makes private repositories invisible to reads, as the Hub does for other users.
    ``calls`` records every call and every file fetch attempt. A subclass may override
    :meth:`_before_request` (called before every simulated request) and :meth:`_transfer` (the bytes a file
    download receives) to change how the simulated Hub answers.
    """

    def __init__(
        self,
        root: Path,
        *,
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

    def _record(self, method: str, repo_id: str, *detail: object) -> None:
        with self._calls_lock:
            self.calls.append(RecordedCall(method, repo_id, tuple(detail)))

    def _before_request(self, kind: RequestKind, repo_id: str, what: str) -> None:
        """Called before every simulated network request: ``kind`` is ``"info"`` (a revision or listing read)
        or ``"file"`` (one file transfer attempt), ``what`` names the request for error messages.

        It may raise what a real request can (``HubUnavailable``, ``RepoNotFound``, ...); the
        caller's retries then apply. The default does nothing.
        """

    def _transfer(self, file: LocalFile, partial: PartialFile) -> Iterator[bytes]:
        """The bytes one transfer of ``file`` sends, from byte ``partial.written`` on (a resumed download).

        The caller writes each chunk into ``partial`` as it arrives. An override may reset ``partial``
        before its first chunk (a server that ignores the resume offset) or raise after some chunk (a
        dropped connection). The default sends the rest of the file.
        """
        with open(file.local_path, "rb") as fh:
            fh.seek(partial.written)
            while chunk := fh.read(CHUNK_SIZE):
                yield chunk

    def _request(self, kind: RequestKind, repo_id: str, what: str) -> None:
        """What every simulated network request goes through: :meth:`_before_request`, then not-found."""
        validate_repo_id(repo_id)
        self._before_request(kind, repo_id, what)
        if not self.hub.exists(repo_id) or (self.hide_private and self.hub.is_private(repo_id)):
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
            for chunk in self._transfer(local[f.path], partial):
                if abort.is_set():
                    raise DownloadAborted(f"{f.path}: stopped, another file failed")
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
