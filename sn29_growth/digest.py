"""SHA-256 of model files, several files at once.

A checkpoint is a handful of multi-GB shards. ``hashlib`` releases the GIL while it digests a large
buffer, so one thread per file (bounded by the CPU count) hashes the shards concurrently; each thread
reads into one reusable buffer with ``readinto`` (no per-chunk allocation). The digests are exactly
those of a one-thread ``hashlib.sha256`` over each file's bytes: only the scheduling differs.

:class:`DigestMemo` keeps digests between runs (the validator persists it in its state): an unchanged
file (same path, size, mtime_ns and inode) is not read again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

READ_BYTES = 16 << 20
"""Bytes per read: large enough that the digest, not the syscalls, sets the pace."""

MAX_WORKERS = 8
"""At most this many files are read at once (storage rarely scales further)."""


def sha256_file(path: str | os.PathLike, *, buffer_bytes: int = READ_BYTES) -> bytes:
    """The raw SHA-256 digest of one file, read ``buffer_bytes`` at a time into a reused buffer."""
    if buffer_bytes < 1:
        raise ValueError(f"buffer_bytes: must be >= 1, got {buffer_bytes}")
    digest = hashlib.sha256()
    view = memoryview(bytearray(buffer_bytes))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            digest.update(view[:n])
    return digest.digest()


def default_workers(n_files: int) -> int:
    """One thread per file, at most one per CPU and at most :data:`MAX_WORKERS`."""
    return max(1, min(n_files, os.cpu_count() or 1, MAX_WORKERS))


def sha256_files(
    paths: Sequence[str | os.PathLike], *, workers: int | None = None, buffer_bytes: int = READ_BYTES
) -> list[bytes]:
    """The raw SHA-256 digests of ``paths``, in the order given, hashed ``workers`` files at a time.

    The largest files start first so that one big shard does not start last and run alone.
    """
    paths = list(paths)
    n = default_workers(len(paths)) if workers is None else workers
    if n < 1:
        raise ValueError(f"workers: must be >= 1, got {n}")
    if n == 1 or len(paths) <= 1:
        return [sha256_file(p, buffer_bytes=buffer_bytes) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: -os.path.getsize(paths[i]))
    out: list[bytes] = [b""] * len(paths)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sha256") as pool:
        futures = {i: pool.submit(sha256_file, paths[i], buffer_bytes=buffer_bytes) for i in order}
        for i, future in futures.items():
            out[i] = future.result()
    return out


class DigestMemo:
    """File digests kept between runs, reused while a file's (size, mtime_ns, inode) are unchanged.

    ``entries`` (held, not copied: a caller's persisted mapping stays current) maps a file's resolved path to
    ``{"size", "mtime_ns", "inode", "sha256"}`` (hex). :meth:`prune` drops the entries of files that are
    gone or changed, so the mapping stays as large as the files it describes.
    """

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None) -> None:
        self.entries = entries if entries is not None else {}

    def digests(self, paths: Sequence[str | os.PathLike]) -> list[bytes]:
        """The raw SHA-256 digests of ``paths``; only files new or changed since their entry are read."""
        keys, stamps = [], []
        for path in paths:
            resolved = os.path.realpath(path)
            keys.append(resolved)
            stamps.append(_stamp(os.stat(resolved)))
        todo = [i for i, key in enumerate(keys) if not _matches(self.entries.get(key), stamps[i])]
        for i, digest in zip(todo, sha256_files([keys[i] for i in todo]), strict=True):
            self.entries[keys[i]] = {**stamps[i], "sha256": digest.hex()}
        return [bytes.fromhex(self.entries[key]["sha256"]) for key in keys]

    def prune(self) -> int:
        """Drop the entries of files no longer present or changed; how many were dropped."""
        stale = []
        for key, entry in self.entries.items():
            try:
                current = _stamp(os.stat(key))
            except OSError:
                stale.append(key)
                continue
            if not _matches(entry, current):
                stale.append(key)
        for key in stale:
            del self.entries[key]
        return len(stale)


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _matches(entry: dict[str, Any] | None, stamp: dict[str, int]) -> bool:
    return entry is not None and all(entry.get(k) == v for k, v in stamp.items()) and "sha256" in entry
