"""Fault plans for the fake Hubs: :class:`Faults`, and :class:`FaultyHubClient`, a
:class:`~sn29_growth.hub.local.LocalHubClient` that applies them (``tests/fake_hub_server.py`` applies
them over HTTP).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from sn29_growth.hub.cache import CHUNK_SIZE, PartialFile
from sn29_growth.hub.local import LocalFile, LocalHubClient, RequestKind
from sn29_growth.hub.protocol import DownloadIncomplete, HubUnavailable, RepoNotFound

FaultTarget = Literal["info", "file", "any"]


@dataclass(frozen=True)
class Faults:
    """Faults a fake Hub injects. Counts apply to the first requests of kind ``on`` after the faults are set.

    - ``not_found``: repositories that look missing.
    - ``unavailable``: the first N requests answer 503; then ``timeouts``: the next N stall (``stall_s`` over
      HTTP; an immediate timeout error in :class:`FaultyHubClient`).
    - ``cut_at``: path -> the connection drops when the transfer reaches that byte of the file (a resumed
      request starting at or after it is served in full); ``ranges=False`` ignores Range requests.
    - ``short``: path -> the Hub serves only the first N bytes (a truncated file; metadata says more).
    - ``corrupt``: paths served with their middle byte flipped (same size, wrong hash).
    """

    not_found: frozenset[str] = frozenset()
    unavailable: int = 0
    timeouts: int = 0
    on: FaultTarget = "any"
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


class FaultyHubClient(LocalHubClient):
    """A :class:`~sn29_growth.hub.local.LocalHubClient` whose requests and transfers follow a :class:`Faults`
    plan (``faults=``, replaced by :meth:`set_faults`)."""

    def __init__(self, root: Path, *, faults: Faults = Faults(), **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault plan (counts start again)."""
        self._faults = FaultCounter(faults)

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    def _before_request(self, kind: RequestKind, repo_id: str, what: str) -> None:
        failure = self._faults.next_failure(kind)
        if failure == "unavailable":
            raise HubUnavailable(f"{what}: HTTP 503 (injected)")
        if failure == "timeout":
            raise HubUnavailable(f"{what}: timed out (injected)")
        if repo_id in self.faults.not_found:
            raise RepoNotFound(f"{what}: repository not found")

    def _transfer(self, file: LocalFile, partial: PartialFile) -> Iterator[bytes]:
        faults = self.faults
        if not faults.ranges and partial.written:
            partial.reset()
        start = pos = partial.written
        cut = faults.cut_at.get(file.meta.path)
        for chunk in served_chunks(file.local_path, file.meta.path, faults, start):
            if cut is not None and start < cut <= pos + len(chunk):
                yield chunk[: cut - pos]
                raise DownloadIncomplete(f"{file.meta.path}: connection dropped at byte {cut} (injected)")
            yield chunk
            pos += len(chunk)
