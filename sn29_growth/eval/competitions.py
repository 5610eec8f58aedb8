"""SN29 dynamic config: ``competitions.json`` and ``hall_of_fame.json``.

Both documents are published in the subnet's config repository and re-read by validators every ~15 minutes.

- Parsing is per entry: a malformed competition (or bounty) is rejected with a logged reason and every other
  entry stays live. Top-level keys starting with ``_`` and top-level values that are not objects (such as the
  ``"comment"`` strings of older files) are ignored.
- ``default`` is merged into every competition; the competition's own values win.
- :class:`CompetitionsSource` / :class:`HallOfFameSource` re-read a file or http(s) URL and keep the last good
  result when a read or parse fails; before any good read they serve the copy packaged with this library.
"""

from __future__ import annotations

import copy
import functools
import http.client
import json
import logging
import math
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 15.0
MAX_DOCUMENT_BYTES = 1 << 20
DEFAULT_KEY = "default"
REQUIRED_KEYS = frozenset({"reward", "model_types", "model_size", "parameters", "dataset"})

# Competition ids travel inside the ``namespace:name:commit:hash:competition`` chain commitment: no ``:``.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# SS58 address: base58 text of 35 bytes (1-byte prefix, 32-byte key, 2-byte checksum).
_SS58_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{47,48}")


# --------------------------------------------------------------------------------------------- checks


def _as_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name}: must be {bound}, got {value}")
    return value


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    return value


def _as_str(name: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------- competition

REFERENCE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "tokenizer": None,  # no competition tokenizer: only a model's own can score it
        "free_tokenizer": False,
        "max_tokenize_fails": 3,  # more than this many failed round trips reject a tokenizer
        "group_samples": 1,  # no grouping
        "pool_size": 7,  # (every published file sets 6)
        "pend_size": 3,
        "advantage_initial": 0.004,
        "advantage_decay": 0.995,  # per epoch of 361 blocks
        "weight_skew_factor": 1.2,
        "rows_per_page": 25,
        "eval_samples": 1500,
        "discard_winrate": 0.02,
    }
)
"""What the reference validator (coldint_validator 1.0.x) uses when competitions.json (``default``
included) omits a key; the one list of them here. Two knobs depend on the tokenizer that scores:

- ``cap_sample_len`` absent: 20480 characters with the competition's tokenizer, no cap with a model's
  own; 0 means no cap;
- ``max_sequence_len`` absent: 4096 tokens with the competition's tokenizer; with a model's own the
  reference cannot score it (it rejects the model); 0 means no limit.

``eval_pages`` is this project's own knob (FineWeb pages per evaluation); the reference does not read it.
"""
REFERENCE_CAP_SAMPLE_LEN = 20480
REFERENCE_MAX_SEQUENCE_LEN = 4096


@dataclass(frozen=True, kw_only=True)
class Competition:
    """One competition after merging ``default``. Field names are the JSON keys.

    Defaults are those the reference validator used when a key was absent (:data:`REFERENCE_DEFAULTS`).
    ``tokenizer`` ``None`` means the model's own tokenizer is used. ``model_size`` is in bytes,
    ``cap_sample_len`` in characters; ``cap_sample_len``/``max_sequence_len`` ``None`` mean the key was
    absent (see :meth:`sample_limits`), 0 means no cap/limit. Unknown keys (``comment`` and any future
    knob) are kept read-only in ``extra``.
    """

    name: str
    reward: float
    model_types: tuple[str, ...]
    model_size: int
    parameters: int
    dataset: str
    tokenizer: str | None = REFERENCE_DEFAULTS["tokenizer"]
    free_tokenizer: bool = REFERENCE_DEFAULTS["free_tokenizer"]
    cap_sample_len: int | None = None
    max_sequence_len: int | None = None
    max_tokenize_fails: int = REFERENCE_DEFAULTS["max_tokenize_fails"]
    group_samples: int = REFERENCE_DEFAULTS["group_samples"]
    pool_size: int = REFERENCE_DEFAULTS["pool_size"]
    pend_size: int = REFERENCE_DEFAULTS["pend_size"]
    advantage_initial: float = REFERENCE_DEFAULTS["advantage_initial"]
    advantage_decay: float = REFERENCE_DEFAULTS["advantage_decay"]
    weight_skew_factor: float = REFERENCE_DEFAULTS["weight_skew_factor"]
    rows_per_page: int = REFERENCE_DEFAULTS["rows_per_page"]
    eval_pages: int = 8
    eval_samples: int = REFERENCE_DEFAULTS["eval_samples"]
    discard_winrate: float = REFERENCE_DEFAULTS["discard_winrate"]
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        name = _as_str("name", self.name)
        if name == DEFAULT_KEY or not _NAME_RE.fullmatch(name):
            raise ValueError(f"name: {name!r} is not a valid competition id (letters, digits, '_.-')")
        reward = _as_float("reward", self.reward)
        if reward < 0:
            raise ValueError(f"reward: must be >= 0, got {reward}")
        put("reward", reward)

        if not isinstance(self.model_types, list | tuple) or not self.model_types:
            raise ValueError(
                f"model_types: expected a non-empty list of class names, got {self.model_types!r}"
            )
        for t in self.model_types:
            if not isinstance(t, str) or not t.isidentifier():
                raise ValueError(f"model_types: {t!r} is not a class name")
        put("model_types", tuple(self.model_types))

        for key in ("cap_sample_len", "max_sequence_len"):  # None: absent (JSON null reads the same)
            if getattr(self, key) is not None:
                put(key, _as_int(key, getattr(self, key), 0))
        for key, minimum, maximum in (
            ("model_size", 1, None),
            ("parameters", 1, None),
            ("max_tokenize_fails", 0, None),
            ("group_samples", 1, None),
            ("pool_size", 1, None),
            ("pend_size", 0, None),
            ("rows_per_page", 1, 100),  # the datasets-server rows API returns at most 100 rows per call
            ("eval_pages", 1, None),
            ("eval_samples", 1, None),
        ):
            put(key, _as_int(key, getattr(self, key), minimum, maximum))

        _as_str("dataset", self.dataset)
        if self.tokenizer is not None:
            _as_str("tokenizer", self.tokenizer)
        if not isinstance(self.free_tokenizer, bool):
            raise ValueError(f"free_tokenizer: expected true/false, got {self.free_tokenizer!r}")

        initial = _as_float("advantage_initial", self.advantage_initial)
        if not 0 <= initial < 1:
            raise ValueError(f"advantage_initial: must be in [0, 1), got {initial}")
        decay = _as_float("advantage_decay", self.advantage_decay)
        if not 0 < decay <= 1:
            raise ValueError(f"advantage_decay: must be in (0, 1], got {decay}")
        skew = _as_float("weight_skew_factor", self.weight_skew_factor)
        if skew <= 0:
            raise ValueError(f"weight_skew_factor: must be > 0, got {skew}")
        discard = _as_float("discard_winrate", self.discard_winrate)
        if not 0 <= discard <= 1:
            raise ValueError(f"discard_winrate: must be in [0, 1], got {discard}")
        for key, value in (
            ("advantage_initial", initial),
            ("advantage_decay", decay),
            ("weight_skew_factor", skew),
            ("discard_winrate", discard),
        ):
            put(key, value)

        if not isinstance(self.extra, Mapping):
            raise ValueError(f"extra: expected a mapping, got {type(self.extra).__name__}")
        put("extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_dict(cls, name: str, entry: Mapping[str, Any]) -> Competition:
        """Build from one merged JSON entry; keys starting with ``_`` are dropped, unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"name", "extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            if not isinstance(key, str) or key.startswith("_"):
                continue
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = copy.deepcopy(value)
        missing = REQUIRED_KEYS - kwargs.keys()
        if missing:
            raise ValueError(f"missing required key(s): {', '.join(sorted(missing))}")
        return cls(name=name, extra=extra, **kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The merged JSON entry (without ``name``), e.g. for logs and persisted state."""
        out: dict[str, Any] = copy.deepcopy(dict(self.extra))
        for f in fields(self):
            if f.name not in ("name", "extra"):
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def sample_limits(self, own_tokenizer: bool) -> tuple[int, int | None]:
        """``(cap_sample_len, max_sequence_len)`` for a sample scored with the competition's tokenizer or a
        model's own (0 = no cap/limit), as the reference applies them; ``max_sequence_len`` None: the
        competition sets none and a model's own tokenizer cannot be scored (the reference rejects it)."""
        if own_tokenizer:
            cap = self.cap_sample_len or 0
            return cap, self.max_sequence_len
        cap = REFERENCE_CAP_SAMPLE_LEN if self.cap_sample_len is None else self.cap_sample_len
        limit = REFERENCE_MAX_SEQUENCE_LEN if self.max_sequence_len is None else self.max_sequence_len
        return cap, limit

    def allows_model_type(self, class_name: str) -> bool:
        """Exact class-name match (the reference matched substrings of ``str(type(model))``)."""
        return class_name in self.model_types


@dataclass(frozen=True)
class Competitions(Mapping[str, Competition]):
    """The live competitions by name, plus the reasons entries of the document were rejected."""

    competitions: Mapping[str, Competition]
    rejected: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        for name, comp in self.competitions.items():
            if not isinstance(comp, Competition) or comp.name != name:
                raise ValueError(f"competitions: entry {name!r} is not a Competition named {name!r}")
        object.__setattr__(self, "competitions", MappingProxyType(dict(sorted(self.competitions.items()))))
        object.__setattr__(self, "rejected", MappingProxyType(dict(sorted(self.rejected.items()))))

    def __getitem__(self, name: str) -> Competition:
        return self.competitions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.competitions)

    def __len__(self) -> int:
        return len(self.competitions)

    def rewards(self) -> dict[str, float]:
        return {name: comp.reward for name, comp in self.competitions.items()}


def _decode(document: Mapping[str, Any] | str | bytes, what: str) -> Mapping[str, Any]:
    if isinstance(document, bytes | str):
        document = json.loads(document)
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(document).__name__}")
    return document


def parse_competitions(document: Mapping[str, Any] | str | bytes, *, origin: str = "") -> Competitions:
    """Validate a ``competitions.json`` document entry by entry.

    Raises ``ValueError`` only when the document as a whole is unusable (not JSON, not an object).
    """
    doc = _decode(document, "competitions document")
    defaults = doc.get(DEFAULT_KEY, {})
    if not isinstance(defaults, Mapping):
        logger.warning("competitions %s: ignoring %r, which is not an object", origin, DEFAULT_KEY)
        defaults = {}
    live: dict[str, Competition] = {}
    rejected: dict[str, str] = {}
    for key, value in doc.items():
        if key == DEFAULT_KEY:
            continue
        if not isinstance(key, str) or key.startswith("_") or not isinstance(value, Mapping):
            logger.debug("competitions %s: ignoring top-level key %r", origin, key)
            continue
        try:
            live[key] = Competition.from_dict(key, {**defaults, **value})
        except (TypeError, ValueError) as exc:
            rejected[key] = str(exc)
            logger.warning("competitions %s: competition %r rejected: %s", origin, key, exc)
    return Competitions(live, rejected, origin)


# ------------------------------------------------------------------------------------------ hall of fame


@dataclass(frozen=True, kw_only=True)
class Bounty:
    """One hall-of-fame entry: pays out ``reward`` (in units of one epoch's miner weight) from ``block`` on."""

    hotkey: str
    block: int
    reward: float
    desc: str = ""
    url: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.hotkey, str) or not _SS58_RE.fullmatch(self.hotkey):
            raise ValueError(f"hotkey: {self.hotkey!r} is not an SS58 address")
        object.__setattr__(self, "block", _as_int("block", self.block, 0))
        reward = _as_float("reward", self.reward)
        if reward < 0:
            raise ValueError(f"reward: must be >= 0, got {reward}")
        object.__setattr__(self, "reward", reward)
        _as_str("desc", self.desc, allow_empty=True)
        _as_str("url", self.url, allow_empty=True)


@dataclass(frozen=True)
class HallOfFame:
    """Valid bounties in document order; ``rejected`` maps ``hotkey`` or ``hotkey[i]`` to a reason."""

    bounties: tuple[Bounty, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounties", tuple(self.bounties))
        object.__setattr__(self, "rejected", MappingProxyType(dict(self.rejected)))

    @property
    def hotkeys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.hotkey for b in self.bounties))

    def for_hotkey(self, hotkey: str) -> tuple[Bounty, ...]:
        return tuple(b for b in self.bounties if b.hotkey == hotkey)


def parse_hall_of_fame(document: Mapping[str, Any] | str | bytes, *, origin: str = "") -> HallOfFame:
    """Validate ``{hotkey: [{block, reward, desc, url}, ...]}`` entry by entry (``_`` keys are ignored)."""
    doc = _decode(document, "hall of fame document")
    bounties: list[Bounty] = []
    rejected: dict[str, str] = {}

    def reject(key: str, reason: str) -> None:
        rejected[key] = reason
        logger.warning("hall of fame %s: entry %s skipped: %s", origin, key, reason)

    for hotkey, entries in doc.items():
        if not isinstance(hotkey, str) or hotkey.startswith("_"):
            continue
        if not isinstance(entries, list):
            reject(hotkey, f"expected a list of bounties, got {type(entries).__name__}")
            continue
        for i, entry in enumerate(entries):
            key = f"{hotkey}[{i}]"
            if not isinstance(entry, Mapping):
                reject(key, f"expected an object, got {type(entry).__name__}")
                continue
            missing = {"block", "reward"} - entry.keys()
            if missing:
                reject(key, f"missing required key(s): {', '.join(sorted(missing))}")
                continue
            try:
                bounties.append(
                    Bounty(
                        hotkey=hotkey,
                        block=entry["block"],
                        reward=entry["reward"],
                        desc=entry.get("desc", ""),
                        url=entry.get("url", ""),
                    )
                )
            except ValueError as exc:
                reject(key, str(exc))
    return HallOfFame(tuple(bounties), rejected, origin)


# ------------------------------------------------------------------------------------------- reading


def read_location(
    location: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> bytes:
    """Read a local file or an http(s) URL.

    For URLs ``timeout`` bounds the connection and every socket read, and the whole download is abandoned
    with ``TimeoutError`` once it has run longer than ``timeout``. Raises ``OSError`` (``URLError``,
    ``HTTPError``, ``TimeoutError``), ``http.client.HTTPException`` or ``ValueError`` (too large, bad scheme).
    """
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout: must be a positive number of seconds, got {timeout!r}")
    text = os.fspath(location)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_url(text, timeout, max_bytes)
    if "://" in text:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {text!r}")
    with open(text, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{text} is larger than {max_bytes} bytes")
    return data


def _fetch_url(url: str, timeout: float, max_bytes: int) -> bytes:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "sn29-growth", "Accept": "application/json"})
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {url} took longer than {timeout} s")
            chunk = response.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"{url} is larger than {max_bytes} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def load_competitions(
    location: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT_S
) -> Competitions:
    """Read and parse ``competitions.json`` from a path or URL (raises on read/parse failure)."""
    return parse_competitions(read_location(location, timeout=timeout), origin=os.fspath(location))


def load_hall_of_fame(location: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT_S) -> HallOfFame:
    """Read and parse ``hall_of_fame.json`` from a path or URL (raises on read/parse failure)."""
    return parse_hall_of_fame(read_location(location, timeout=timeout), origin=os.fspath(location))


@functools.cache
def default_competitions() -> Competitions:
    """The ``competitions.json`` packaged with this library (the latest published one at release time)."""
    data = resources.files("sn29_growth").joinpath("data/competitions.json").read_bytes()
    return parse_competitions(data, origin="package:sn29_growth/data/competitions.json")


@functools.cache
def default_hall_of_fame() -> HallOfFame:
    """The ``hall_of_fame.json`` packaged with this library."""
    data = resources.files("sn29_growth").joinpath("data/hall_of_fame.json").read_bytes()
    return parse_hall_of_fame(data, origin="package:sn29_growth/data/hall_of_fame.json")


# ------------------------------------------------------------------------------------------- sources

T = TypeVar("T")

_READ_ERRORS = (OSError, ValueError, http.client.HTTPException)


class _LastGoodSource(Generic[T]):
    """Re-reads ``location`` on :meth:`get` and keeps serving the last good result when a read fails.

    ``min_interval_s`` rate-limits re-reads (measured from the last attempt, failed or not); ``clock`` is
    injectable for tests. With ``location=None`` the packaged copy is served. ``strict`` (for tools that
    act once, like the miner): an explicit ``location`` that has never been read successfully is an
    error naming it, never a silent fall-back to the packaged copy's limits.
    """

    what = "config"

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        strict: bool = False,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout: must be > 0, got {timeout}")
        if not (math.isfinite(min_interval_s) and min_interval_s >= 0):
            raise ValueError(f"min_interval_s: must be >= 0, got {min_interval_s}")
        self.location = None if location is None else os.fspath(location)
        self.timeout = float(timeout)
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self.strict = strict
        self._last_good: T | None = None
        self._last_attempt: float | None = None
        self.last_error: str | None = None

    @property
    def last_good(self) -> T | None:
        """The last successfully read result (``None`` before the first good read)."""
        return self._last_good

    def get(self, *, force: bool = False) -> T:
        """Re-read if due (or ``force``); return the freshest good result, else the packaged default."""
        now = self._clock()
        due = force or self._last_attempt is None or now - self._last_attempt >= self.min_interval_s
        if self.location is not None and due:
            self._last_attempt = now
            self._refresh()
        if self._last_good is not None:
            return self._last_good
        if self.location is not None and self.strict:
            raise ValueError(
                f"--{self.what.replace(' ', '-')} {self.location}: {self.last_error or 'not read'}"
            )
        if self.location is not None:
            logger.warning("%s: no good read of %s yet; using the packaged default", self.what, self.location)
        return self._default()

    def _refresh(self) -> None:
        assert self.location is not None
        try:
            fresh = self._parse(read_location(self.location, timeout=self.timeout), self.location)
            fresh = self._accept(fresh, self._last_good)
        except _READ_ERRORS as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.strict and self._last_good is None:
                return  # nothing is kept: get() fails with this cause
            kept = "the last good one" if self._last_good is not None else "the packaged default"
            logger.warning(
                "%s: reading %s failed (%s); keeping %s", self.what, self.location, self.last_error, kept
            )
            return
        self._last_good = fresh
        self.last_error = None

    def describe(self) -> str:
        """Where the result :meth:`get` serves comes from, and whether the last read failed."""
        if self._last_good is not None:
            origin = getattr(self._last_good, "origin", self.location)
        else:
            origin = getattr(self._default(), "origin", "the packaged copy")
        if self.last_error and self.location is not None:
            kept = "the last good copy" if self._last_good is not None else "the packaged copy"
            return f"{origin} (reading {self.location} failed: {self.last_error}; using {kept})"
        return str(origin)

    def _parse(self, data: bytes, origin: str) -> T:
        raise NotImplementedError

    def _accept(self, fresh: T, previous: T | None) -> T:
        return fresh

    def _default(self) -> T:
        raise NotImplementedError


class ProvidesCompetitions(Protocol):
    """Where the validator and the miner get the current competitions (:class:`CompetitionsSource`)."""

    def get(self) -> Competitions: ...


class ProvidesHallOfFame(Protocol):
    """Where the validator gets the current hall of fame (:class:`HallOfFameSource`)."""

    def get(self) -> HallOfFame: ...


class CompetitionsSource(_LastGoodSource[Competitions]):
    """Live ``competitions.json`` with last-good fallback.

    A competition rejected in a fresh document keeps its last good definition when there is one (it stays
    listed in ``rejected``); a competition absent from the fresh document is dropped. A document without a
    single valid competition counts as a failed read.
    """

    what = "competitions"

    def _parse(self, data: bytes, origin: str) -> Competitions:
        return parse_competitions(data, origin=origin)

    def _accept(self, fresh: Competitions, previous: Competitions | None) -> Competitions:
        live = dict(fresh.competitions)
        if previous is not None:
            for name in fresh.rejected:
                if name in previous:
                    logger.warning("competitions: keeping the last good definition of %r", name)
                    live[name] = previous[name]
        if not live:
            raise ValueError(f"no valid competition in {fresh.origin} (rejected: {dict(fresh.rejected)})")
        return Competitions(live, fresh.rejected, fresh.origin)

    def _default(self) -> Competitions:
        return default_competitions()


class HallOfFameSource(_LastGoodSource[HallOfFame]):
    """Live ``hall_of_fame.json`` with last-good fallback (bad entries are skipped, not carried over)."""

    what = "hall of fame"

    def _parse(self, data: bytes, origin: str) -> HallOfFame:
        return parse_hall_of_fame(data, origin=origin)

    def _default(self) -> HallOfFame:
        return default_hall_of_fame()
