"""Evaluation samples behind one interface: ``source.samples(n, seed) -> tuple[Sample, ...]``.

Three sources:

- :class:`LocalSource` — the embedded corpus's held-out part (the offline default);
- :class:`FileSource` — a user file: ``.txt`` (one text per non-empty line) or ``.jsonl`` (a ``text`` field
  per line);
- :class:`FineWebSource` — FineWeb-edu through the Hub's datasets-server rows API. A page is a random dump
  (config) and a random offset, both drawn from ``seed``; every request has a timeout, 5xx/429/stalls are
  retried a bounded number of times with exponential backoff, and each fetched page is kept in an on-disk
  cache, so the same seed gives the same samples and a cached page is never fetched again.

Sample ids are stable across runs: ``topic#chunk`` (local), ``file:line`` (files), ``config/row_idx``
(FineWeb). :func:`sample_key` adds a digest of the text, so caches never confuse edited samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sn29_growth.atomic import atomic_write_json
from sn29_growth.corpus import Sample, load_corpus

log = logging.getLogger(__name__)

DATASETS_SERVER = "https://datasets-server.huggingface.co"
DATASETS = {"fineweb2": "HuggingFaceFW/fineweb-edu-score-2"}
FINEWEB_ALIASES = ("fineweb", "fineweb2", "fineweb-edu")
MAX_ROWS_PER_REQUEST = 100  # the rows API returns at most 100 rows per call
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DataSourceError(RuntimeError):
    """Samples could not be produced (unreachable service, bad response, unreadable file)."""


class DataSource(Protocol):
    """Anything that yields evaluation samples deterministically from a seed."""

    name: str
    offline: bool

    def samples(self, n: int, seed: int) -> tuple[Sample, ...]: ...


def sample_key(sample: Sample) -> str:
    """The sample's id plus a digest of its text: a cache key that changes when the text does."""
    return f"{sample.id}@{hashlib.sha256(sample.text.encode('utf-8')).hexdigest()[:16]}"


def _choose(pool: tuple[Sample, ...], n: int, seed: int) -> tuple[Sample, ...]:
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if n >= len(pool):
        return pool
    picked = sorted(random.Random(seed).sample(range(len(pool)), n))
    return tuple(pool[i] for i in picked)


# ------------------------------------------------------------------------------------------- local


@dataclass(frozen=True)
class LocalSource:
    """The embedded corpus's held-out samples (in corpus order; a seeded subset when ``n`` is smaller)."""

    name: str = "local (embedded corpus, held-out part)"
    offline: bool = True

    def samples(self, n: int, seed: int) -> tuple[Sample, ...]:
        return _choose(load_corpus().held_out, n, seed)


# -------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileSource:
    """A ``.txt`` file (one text per non-empty line) or ``.jsonl`` file (objects with a ``text`` string)."""

    path: Path
    name: str = ""
    offline: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not self.name:
            object.__setattr__(self, "name", f"file {self.path}")

    def read(self) -> tuple[Sample, ...]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataSourceError(f"{self.path}: cannot read ({e})") from e
        jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson")
        out: list[Sample] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            text = line
            if jsonl:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataSourceError(f"{self.path}:{number}: not JSON ({e.msg})") from e
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise DataSourceError(f"{self.path}:{number}: no string 'text' field")
            out.append(Sample(f"{self.path.name}:{number}", text))
        if not out:
            raise DataSourceError(f"{self.path}: no samples")
        return tuple(out)

    def samples(self, n: int, seed: int) -> tuple[Sample, ...]:
        return _choose(self.read(), n, seed)


# ------------------------------------------------------------------------------------------ fineweb


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and bounded retries for the datasets-server (the one network boundary of this module)."""

    timeout_s: float = 30.0
    retries: int = 4
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries: must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff_s/max_backoff_s: must be >= 0")

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt))


def get_json(
    url: str, policy: HttpPolicy, *, sleep: Callable[[float], None] = time.sleep, token: str | None = None
) -> Any:
    """GET ``url`` as JSON with ``policy``'s timeout; retry 429/5xx/timeouts/connection errors.

    A 4xx other than 429, or a body that is not JSON, fails at once with :class:`DataSourceError`.
    """
    headers = {"Accept": "application/json", "User-Agent": "sn29-growth"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    last = ""
    for attempt in range(policy.retries + 1):
        if attempt:
            delay = policy.delay(attempt - 1)
            log.info("datasets-server: retry %d/%d in %.1f s after %s", attempt, policy.retries, delay, last)
            sleep(delay)
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=policy.timeout_s
            ) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code not in RETRY_STATUSES:
                raise DataSourceError(f"GET {url}: HTTP {e.code}{detail}") from e
            last = f"HTTP {e.code}{detail}"
            continue
        except OSError as e:  # URLError, timeouts, refused/reset connections
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            continue
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataSourceError(f"GET {url}: response is not JSON ({e})") from e
    raise DataSourceError(f"GET {url}: gave up after {policy.retries + 1} attempts (last: {last})")


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read() or b"{}")
    except (OSError, ValueError):
        return ""
    message = payload.get("error") if isinstance(payload, dict) else None
    return f": {message}" if message else ""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def datasets_server_reachable(endpoint: str = DATASETS_SERVER, timeout_s: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or a TCP connection to ``endpoint`` cannot be opened."""
    if hub_offline():
        return False
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Dump:
    """One config (Common Crawl dump) of the dataset's train split."""

    config: str
    num_rows: int


@dataclass
class FineWebSource:
    """FineWeb-edu pages through the datasets-server rows API, cached on disk.

    Samples are drawn page by page: for page ``k`` a dump is chosen uniformly (the ``default`` config
    excluded) and then an offset, both from ``random.Random(f"{seed}:{k}")``; pages are fetched until
    ``n`` samples are collected. Pages live in ``cache_dir`` (one JSON file per request, written
    atomically); the dump list is cached too, so a seed keeps meaning the same samples.
    """

    dataset: str = DATASETS["fineweb2"]
    endpoint: str = DATASETS_SERVER
    cache_dir: Path | None = None
    rows_per_page: int = 50
    policy: HttpPolicy = field(default_factory=HttpPolicy)
    sleep: Callable[[float], None] = time.sleep
    token: str | None = None
    split: str = "train"
    offline: bool = False

    def __post_init__(self) -> None:
        self.dataset = DATASETS.get(self.dataset, self.dataset)
        self.endpoint = self.endpoint.rstrip("/")
        if not 1 <= self.rows_per_page <= MAX_ROWS_PER_REQUEST:
            raise ValueError(
                f"rows_per_page: must be in [1, {MAX_ROWS_PER_REQUEST}], got {self.rows_per_page}"
            )
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        self._dumps: tuple[Dump, ...] | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset} (datasets-server)"

    # -- HTTP + cache

    def _cache_path(self, *parts: str) -> Path | None:
        if self.cache_dir is None:
            return None
        safe = self.dataset.replace("/", "--")
        return self.cache_dir / safe / ("_".join(parts) + ".json")

    def _cached_get(self, path: str, params: dict[str, Any], cache_parts: tuple[str, ...]) -> Any:
        cache = self._cache_path(*cache_parts)
        if cache is not None and cache.is_file():
            try:
                return json.loads(cache.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("datasets-server cache: unreadable %s; fetching again", cache)
        if hub_offline():
            raise DataSourceError(f"{self.dataset}: not cached and HF_HUB_OFFLINE is set")
        url = f"{self.endpoint}/{path}?{urllib.parse.urlencode(params)}"
        payload = get_json(url, self.policy, sleep=self.sleep, token=self.token)
        if not isinstance(payload, dict) or "error" in payload:
            raise DataSourceError(f"GET {url}: unexpected response {str(payload)[:200]}")
        if cache is not None:
            atomic_write_json(cache, payload, indent=None)
        return payload

    def dumps(self) -> tuple[Dump, ...]:
        """The dataset's dumps (configs) in the split, with row counts, from ``/size``."""
        if self._dumps is None:
            payload = self._cached_get("size", {"dataset": self.dataset}, ("size",))
            try:
                splits = payload["size"]["splits"]
                found = {
                    s["config"]: int(s["num_rows"])
                    for s in splits
                    if s.get("split") == self.split and s.get("config") != "default"
                }
            except (KeyError, TypeError, ValueError) as e:
                raise DataSourceError(f"{self.dataset}: malformed /size response ({e})") from e
            dumps = tuple(Dump(c, rows) for c, rows in sorted(found.items()) if rows >= 1)
            if not dumps:
                raise DataSourceError(f"{self.dataset}: /size lists no usable config of split {self.split!r}")
            self._dumps = dumps
        return self._dumps

    def page(self, config: str, offset: int, length: int) -> tuple[Sample, ...]:
        """One page of rows as samples (ids ``config/row_idx``)."""
        params = {
            "dataset": self.dataset,
            "config": config,
            "split": self.split,
            "offset": offset,
            "length": length,
        }
        payload = self._cached_get("rows", params, ("rows", config, self.split, str(offset), str(length)))
        try:
            rows = payload["rows"]
            out = []
            for r in rows:
                text = r["row"]["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
                if r.get("truncated_cells"):
                    log.warning(
                        "%s/%s: row %s truncated by the server; skipped", self.dataset, config, r["row_idx"]
                    )
                    continue
                out.append(Sample(f"{config}/{int(r['row_idx'])}", text))
        except (KeyError, TypeError, ValueError) as e:
            raise DataSourceError(f"{self.dataset}/{config}@{offset}: malformed /rows response ({e})") from e
        return tuple(out)

    def samples(self, n: int, seed: int) -> tuple[Sample, ...]:
        if n < 1:
            raise ValueError(f"n: must be >= 1, got {n}")
        dumps = self.dumps()
        out: dict[str, Sample] = {}
        max_pages = 4 * math.ceil(n / self.rows_per_page) + 4
        for k in range(max_pages):
            if len(out) >= n:
                break
            rng = random.Random(f"{seed}:{k}")
            dump = rng.choice(dumps)
            length = min(self.rows_per_page, dump.num_rows)
            offset = rng.randrange(0, dump.num_rows - length + 1)
            for s in self.page(dump.config, offset, length):
                if len(out) < n:
                    out.setdefault(s.id, s)
        if len(out) < n:
            log.warning(
                "%s: only %d distinct samples after %d pages (asked for %d)", self.name, len(out), k + 1, n
            )
        return tuple(out.values())


# ------------------------------------------------------------------------------------------ factory


def make_source(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    rows_per_page: int = 50,
    endpoint: str | None = None,
    policy: HttpPolicy | None = None,
) -> DataSource:
    """``local`` → :class:`LocalSource`; ``fineweb``/``fineweb2``/``fineweb-edu`` → :class:`FineWebSource`;
    anything else is a path to a ``.txt``/``.jsonl`` file."""
    if spec == "local":
        return LocalSource()
    if spec in FINEWEB_ALIASES:
        return FineWebSource(
            dataset=DATASETS["fineweb2"],
            endpoint=endpoint or os.environ.get("SN29_DATASETS_SERVER", DATASETS_SERVER),
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            rows_per_page=rows_per_page,
            policy=policy or HttpPolicy(),
            token=os.environ.get("HF_TOKEN") or None,
        )
    path = Path(spec)
    if path.is_file():
        return FileSource(path)
    raise ValueError(f"dataset: {spec!r} is not 'local', 'fineweb' or an existing .txt/.jsonl file")


# ------------------------------------------------------------------------------------------ fixed


@dataclass(frozen=True)
class FixedSource:
    """Samples chosen once (by the validator's main process) and handed to every model's evaluation.

    Every model of a step then sees exactly the same texts, however its worker process fares.
    """

    name: str
    items: tuple[Sample, ...]
    offline: bool = True

    def samples(self, n: int, seed: int) -> tuple[Sample, ...]:
        return self.items[:n]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "samples": [{"id": s.id, "text": s.text} for s in self.items]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FixedSource:
        return cls(str(data["name"]), tuple(Sample(str(s["id"]), str(s["text"])) for s in data["samples"]))
