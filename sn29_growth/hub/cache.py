"""The on-disk model cache: Hugging Face cache layout, verified downloads, resumable partial files.

Layout (the one huggingface_hub and transformers read, so ``from_pretrained("org/name")`` works offline)::

    cache_dir/models--{namespace}--{name}/refs/{branch}             -> 40-hex commit
    cache_dir/models--{namespace}--{name}/snapshots/{commit}/{path}  -> verified file (or a symlink to blobs/)
    cache_dir/.partial/models--{namespace}--{name}/{commit}/{path}   -> file being downloaded

A file only moves into ``snapshots/`` after its size and hash matched the Hub's metadata, so a snapshot
never holds a partial or unverified file; a snapshot missing files is completed by the next download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_text
from sn29_growth.hub.protocol import (
    DownloadIncomplete,
    HubError,
    IntegrityError,
    RepoFile,
    is_commit_sha,
    validate_repo_id,
)
from sn29_growth.hub.retry import RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024
STAGING_DIR = ".partial"


class DownloadAborted(HubError):
    """Another file of the same snapshot failed; this one stopped early (never raised to callers)."""


# --- layout ---------------------------------------------------------------------------------------------


def repo_folder_name(repo_id: str) -> str:
    return "models--" + validate_repo_id(repo_id).replace("/", "--")


def repo_id_from_folder(name: str) -> str | None:
    """Inverse of :func:`repo_folder_name`; None for folders that are not model repositories."""
    parts = name.split("--")
    if len(parts) != 3 or parts[0] != "models":
        return None
    return f"{parts[1]}/{parts[2]}"


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    return Path(cache_dir) / repo_folder_name(repo_id)


def snapshot_path(cache_dir: Path, repo_id: str, commit: str) -> Path:
    if not is_commit_sha(commit):
        raise ValueError(f"commit must be 40 lower-case hex digits, got {commit!r}")
    return repo_folder(cache_dir, repo_id) / "snapshots" / commit


def staging_path(cache_dir: Path, repo_id: str, commit: str) -> Path:
    return Path(cache_dir) / STAGING_DIR / repo_folder_name(repo_id) / commit


def lock_path(cache_dir: Path, repo_id: str, commit: str) -> Path:
    return Path(cache_dir) / STAGING_DIR / repo_folder_name(repo_id) / f"{commit}.lock"


@contextlib.contextmanager
def snapshot_lock(cache_dir: Path, repo_id: str, commit: str) -> Iterator[None]:
    """Exclusive lock (across processes) on downloading one snapshot; the lock file is left in place."""
    path = lock_path(cache_dir, repo_id, commit)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_ref(cache_dir: Path, repo_id: str, ref: str) -> str | None:
    """The commit a cached branch/tag points to, or None if the cache has no such ref."""
    try:
        commit = (repo_folder(cache_dir, repo_id) / "refs" / ref).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return commit if is_commit_sha(commit) else None


def write_ref(cache_dir: Path, repo_id: str, ref: str, commit: str) -> None:
    if not is_commit_sha(commit):
        raise ValueError(f"commit must be 40 lower-case hex digits, got {commit!r}")
    atomic_write_text(repo_folder(cache_dir, repo_id) / "refs" / ref, commit)


def cached_commit(cache_dir: Path, repo_id: str, revision: str) -> str | None:
    """The commit ``revision`` means in the cache: itself if it is a commit, else what refs/ records."""
    return revision if is_commit_sha(revision) else read_ref(cache_dir, repo_id, revision)


def iter_snapshots(cache_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """Every cached snapshot as (repo_id, commit, folder)."""
    root = Path(cache_dir)
    if not root.is_dir():
        return
    for repo_dir in sorted(root.iterdir()):
        repo_id = repo_id_from_folder(repo_dir.name)
        snaps = repo_dir / "snapshots"
        if repo_id is None or not snaps.is_dir():
            continue
        for snap in sorted(snaps.iterdir()):
            if snap.is_dir() and is_commit_sha(snap.name):
                yield repo_id, snap.name, snap


# --- hashing and partial files --------------------------------------------------------------------------


def _git_blob_hasher(size: int) -> Any:
    return hashlib.sha1(b"blob %d\0" % size)


def file_digests(path: Path, size: int) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, read in chunks; ``size`` is the size the git header declares."""
    sha256, git = hashlib.sha256(), _git_blob_hasher(size)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest()


def check_digests(expected: RepoFile, actual_size: int, sha256: str, git_blob: str) -> None:
    """Raise :class:`IntegrityError` unless size and hash agree with the metadata.

    The sha256 is checked when the Hub gives one (LFS files); otherwise the git blob id (the content's git
    sha1 for regular files).
    """
    if actual_size != expected.size:
        raise IntegrityError(f"{expected.path}: size {actual_size} bytes, the Hub says {expected.size}")
    if expected.sha256 is not None:
        if sha256 != expected.sha256:
            raise IntegrityError(f"{expected.path}: sha256 {sha256}, the Hub says {expected.sha256}")
    elif expected.blob_id is not None and git_blob != expected.blob_id:
        raise IntegrityError(f"{expected.path}: git blob id {git_blob}, the Hub says {expected.blob_id}")


def verify_file(path: Path, expected: RepoFile) -> None:
    """Re-hash a file on disk and check it against the metadata."""
    size = path.stat().st_size
    if size != expected.size:
        raise IntegrityError(f"{expected.path}: size {size} bytes, the Hub says {expected.size}")
    check_digests(expected, size, *file_digests(path, expected.size))


class PartialFile:
    """A file being downloaded into the staging area, hashed as it is written.

    Bytes already on disk (from an earlier attempt or process) are re-hashed on open, so a download resumes
    where it stopped. Writing more bytes than the metadata's size fails at once.
    """

    def __init__(self, path: Path, expected: RepoFile) -> None:
        self.path = Path(path)
        self.expected = expected
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > expected.size:
            self.path.unlink()
        self._sha256 = hashlib.sha256()
        self._git = _git_blob_hasher(expected.size)
        self.written = 0
        if self.path.exists():
            with open(self.path, "rb") as fh:
                while chunk := fh.read(CHUNK_SIZE):
                    self._update(chunk)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def _update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._git.update(chunk)
        self.written += len(chunk)

    @property
    def complete(self) -> bool:
        return self.written == self.expected.size

    def write(self, chunk: bytes) -> None:
        if self.written + len(chunk) > self.expected.size:
            raise IntegrityError(
                f"{self.expected.path}: received more than the {self.expected.size} bytes the Hub announced"
            )
        self._fh.write(chunk)
        self._update(chunk)

    def reset(self) -> None:
        """Start over from byte 0 (the server ignored a resume request, or the bytes were bad)."""
        self._fh.seek(0)
        self._fh.truncate()
        self._sha256 = hashlib.sha256()
        self._git = _git_blob_hasher(self.expected.size)
        self.written = 0

    def verify(self) -> None:
        self._fh.flush()
        if self.written < self.expected.size:
            raise IntegrityError(
                f"{self.expected.path}: truncated, {self.written} of {self.expected.size} bytes received"
            )
        check_digests(self.expected, self.written, self._sha256.hexdigest(), self._git.hexdigest())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- filling a snapshot ---------------------------------------------------------------------------------

FetchFn = Callable[[RepoFile, PartialFile, threading.Event], None]
"""Stream one file into a :class:`PartialFile`, resuming at ``partial.written`` or calling ``partial.reset()``.

Must check the event between chunks and raise :class:`DownloadAborted` once it is set, and raise only
:class:`HubError` subclasses (retryable ones for transient faults).
"""


def _present(path: Path, expected: RepoFile, verify_existing: bool) -> bool:
    if not path.is_file() or path.stat().st_size != expected.size:
        return False
    if not verify_existing:
        return True
    try:
        verify_file(path, expected)
    except IntegrityError as exc:
        logger.warning("cached %s does not match the Hub (%s); downloading it again", path, exc)
        path.unlink()
        return False
    return True


def fill_snapshot(
    cache_dir: Path,
    repo_id: str,
    commit: str,
    files: Sequence[RepoFile],
    fetch: FetchFn,
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    max_workers: int = 4,
    ref: str | None = None,
    verify_existing: bool = False,
) -> Path:
    """Make ``snapshots/{commit}`` hold every file of ``files``, downloading and verifying the missing ones.

    Each file is retried per ``retry``; a file that fails for good stops the others and its error is raised.
    Staged bytes of files cut off by the network are kept so that the next call resumes them; bytes that
    failed verification are deleted. ``ref`` (a branch name) is pointed at ``commit`` on success.
    """
    snap = snapshot_path(cache_dir, repo_id, commit)
    missing = [f for f in files if not _present(snap / f.path, f, verify_existing)]
    if missing:
        with snapshot_lock(cache_dir, repo_id, commit):  # another process may be filling it too
            todo = [f for f in missing if not _present(snap / f.path, f, verify_existing=False)]
            if todo:
                _download_into(cache_dir, repo_id, commit, todo, fetch, retry, sleep, max_workers)
    snap.mkdir(parents=True, exist_ok=True)
    if ref is not None and ref != commit:
        write_ref(cache_dir, repo_id, ref, commit)
    return snap


def _download_into(
    cache_dir: Path,
    repo_id: str,
    commit: str,
    todo: Sequence[RepoFile],
    fetch: FetchFn,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    max_workers: int,
) -> None:
    snap = snapshot_path(cache_dir, repo_id, commit)
    stage = staging_path(cache_dir, repo_id, commit)
    abort = threading.Event()

    def one(f: RepoFile) -> None:
        partial = PartialFile(stage / f.path, f)
        try:
            if partial.complete:
                try:
                    partial.verify()
                    return
                except IntegrityError:
                    partial.reset()
            call_with_retries(
                lambda: _fetch_and_verify(fetch, f, partial, abort),
                retry,
                what=f"download {repo_id}@{commit[:10]}:{f.path}",
                sleep=sleep,
            )
        except DownloadAborted:
            raise
        except IntegrityError as exc:
            if not isinstance(exc, DownloadIncomplete):
                partial.discard()
            abort.set()
            raise
        except BaseException:
            abort.set()
            raise
        finally:
            partial.close()

    _run_all(one, todo, max_workers)
    for f in todo:
        target = snap / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / f.path, target)
    shutil.rmtree(stage, ignore_errors=True)
    logger.info("downloaded %d file(s) of %s@%s into %s", len(todo), repo_id, commit[:10], snap)


def _fetch_and_verify(fetch: FetchFn, f: RepoFile, partial: PartialFile, abort: threading.Event) -> None:
    fetch(f, partial, abort)
    partial.verify()


def _run_all(fn: Callable[[RepoFile], None], files: Sequence[RepoFile], max_workers: int) -> None:
    """Run ``fn`` over ``files`` (in threads if more than one); raise the first real error."""
    if max_workers <= 1 or len(files) == 1:
        for f in files:
            fn(f)
        return
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(files)), thread_name_prefix="hub-dl") as pool:
        for fut in [pool.submit(fn, f) for f in files]:
            exc = fut.exception()
            if exc is not None:
                errors.append(exc)
    if errors:
        real = [e for e in errors if not isinstance(e, DownloadAborted)]
        raise (real or errors)[0]


def disk_usage_bytes(root: Path) -> int:
    """Bytes held by regular files under ``root`` (hard links and symlinks counted once / not at all)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
