"""Validator state: versioned JSON, written atomically, never lost across restarts or kill -9.

The file holds what a validator must not forget — the models it knows (with their last outcome), the
pools per competition, the EMA of weights, the block of the last weight setting and the discarded
commitments. Losses live in the evaluation's own on-disk cache, keyed by content, sample and settings.

Loading checks every field's type (and that weights are finite and >= 0): a file that parses but is
wrong anywhere is a :class:`StateError` naming the file and the field, which the runner answers by moving
the file aside. Saving applies the same checks, so the validator never writes a file it would refuse.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args, get_type_hints

from sn29_growth.atomic import atomic_write_json
from sn29_growth.reasons import bound_reason

log = logging.getLogger(__name__)

STATE_VERSION = 1


class StateError(RuntimeError):
    """A state file that cannot be read as any known version; the message names the file."""


class ModelStatus(StrEnum):
    """Where a model stands. A str, so the state file holds the plain value."""

    NEW = "new"  # committed, not yet evaluated
    POOL = "pool"  # evaluated and kept in its competition's pool
    EVALUATED = "evaluated"  # evaluated, not in the pool: revisited later
    FAILED = "failed"  # its evaluation crashed or timed out: revisited later
    REJECTED = "rejected"  # breaks a rule (reason says which); never evaluated again for this commitment


@dataclass
class ModelRecord:
    """What the validator knows about one hotkey's current commitment."""

    hotkey: str
    uid: int
    commitment: str
    competition: str
    block: int
    status: ModelStatus = ModelStatus.NEW
    reason: str = ""
    content_hash: str = ""
    mean_loss: float | None = None
    win_rate: float = 0.0
    last_eval_step: int = -1
    injected: bool = False
    label: str = ""
    was_pool: bool = False  # a pool member that re-committed: fetched first

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "reason" and isinstance(value, str):  # every reason, however it is set, stays bounded
            value = bound_reason(value)
        super().__setattr__(name, value)

    @property
    def key(self) -> str:
        return self.hotkey


@dataclass
class ValidatorState:
    version: int = STATE_VERSION
    step: int = 0
    models: dict[str, ModelRecord] = field(default_factory=dict)
    pools: dict[str, list[str]] = field(default_factory=dict)
    ema_weights: dict[str, float] = field(default_factory=dict)  # uid (as str, JSON keys) -> weight
    last_weights_block: int = -1
    discarded: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # hotkey -> {commitment, reason, block}
    failures: dict[str, int] = field(default_factory=dict)  # hotkey -> consecutive failures
    # resolved path -> {size, mtime_ns, inode, sha256}: model files' digests (sn29_growth.digest.DigestMemo)
    file_digests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {k: asdict(v) for k, v in self.models.items()}
        return d

    @classmethod
    def from_json(cls, data: Any) -> ValidatorState:
        """Build a state from parsed JSON, checking every type; raises StateError naming the bad field.

        Missing keys take their defaults (older files); unknown keys, wrong types, non-finite or negative
        weights are errors: a state that loads is one every step can use without a type error.
        """
        if not isinstance(data, dict):
            raise _expected("state", "a JSON object", data)
        version = data.get("version")
        if version != STATE_VERSION or isinstance(version, bool):
            raise StateError(f"state version {version!r} is not supported (expected {STATE_VERSION})")
        _no_unknown_keys(data, {f.name for f in fields(cls)}, "state")
        return cls(
            version=STATE_VERSION,
            step=_int(data.get("step", 0), "step", minimum=0),
            models={k: _model_record(k, v) for k, v in _object(data.get("models", {}), "models").items()},
            pools={
                k: _str_list(v, f"pools[{k!r}]") for k, v in _object(data.get("pools", {}), "pools").items()
            },
            ema_weights={
                _uid_key(k): _weight(v, f"ema_weights[{k!r}]")
                for k, v in _object(data.get("ema_weights", {}), "ema_weights").items()
            },
            last_weights_block=_int(data.get("last_weights_block", -1), "last_weights_block", minimum=-1),
            discarded={
                k: _discarded(v, f"discarded[{k!r}]")
                for k, v in _object(data.get("discarded", {}), "discarded").items()
            },
            failures={
                k: _int(v, f"failures[{k!r}]", minimum=0)
                for k, v in _object(data.get("failures", {}), "failures").items()
            },
            file_digests={
                k: _file_digest(v, f"file_digests[{k!r}]")
                for k, v in _object(data.get("file_digests", {}), "file_digests").items()
            },
        )


# ------------------------------------------------------------------------------------------- validation


def _malformed(where: str, problem: str) -> StateError:
    return StateError(f"malformed validator state: {where}: {problem}")


def _expected(where: str, expected: str, value: Any) -> StateError:
    return _malformed(where, f"expected {expected}, got {_kind(value)}")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _expected(where, "an object", value)
    return value


def _no_unknown_keys(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise _malformed(where, f"unknown key(s) {', '.join(map(repr, unknown))}")


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):  # JSON true is not a block number
        raise _expected(where, "an integer", value)
    if minimum is not None and value < minimum:
        raise _expected(where, f"an integer >= {minimum}", value)
    return value


def _float(value: Any, where: str) -> float:
    """A finite number (Python's json reads NaN and Infinity literals; they are not numbers here)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _expected(where, "a finite number", value)
    return float(value)


def _weight(value: Any, where: str) -> float:
    weight = _float(value, where)
    if weight < 0:
        raise _expected(where, "a weight >= 0", value)
    return weight


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _expected(where, "a string", value)
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _expected(where, "a list of strings", value)
    return [_str(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _uid_key(key: str) -> str:
    """An ``ema_weights`` key: a uid written as a decimal string (each step turns it back into an int)."""
    if not key.isascii() or not key.isdecimal():
        raise _malformed("ema_weights", f"key {key!r} is not a uid")
    return key


def _discarded(value: Any, where: str) -> dict[str, Any]:
    entry = _object(value, where)
    _no_unknown_keys(entry, {"commitment", "reason", "block"}, where)
    _str(entry.get("commitment"), f"{where}.commitment")
    if "reason" in entry:
        _str(entry["reason"], f"{where}.reason")
    if "block" in entry:
        _int(entry["block"], f"{where}.block")
    return dict(entry)


def _file_digest(value: Any, where: str) -> dict[str, Any]:
    entry = _object(value, where)
    _no_unknown_keys(entry, {"size", "mtime_ns", "inode", "sha256"}, where)
    out: dict[str, Any] = {
        k: _int(entry.get(k), f"{where}.{k}", minimum=0) for k in ("size", "mtime_ns", "inode")
    }
    digest = _str(entry.get("sha256"), f"{where}.sha256")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise _expected(f"{where}.sha256", "64 lowercase hex digits", digest)
    out["sha256"] = digest
    return out


def _field_checkers() -> dict[str, Callable[[Any, str], Any]]:
    """One checker per :class:`ModelRecord` field, from its annotation (so a new field cannot be missed).

    Built once at import: a field of a type without a checker fails there, not in a running validator.
    """
    checkers: dict[str, Callable[[Any, str], Any]] = {}
    for name, hint in get_type_hints(ModelRecord).items():
        optional = type(None) in get_args(hint)
        base = next((a for a in get_args(hint) if a is not type(None)), hint)
        check = {int: _int, float: _float, str: _str, bool: _bool, ModelStatus: _status}[base]
        checkers[name] = _optional(check) if optional else check
    return checkers


def _status(value: Any, where: str) -> ModelStatus:
    try:
        return ModelStatus(value)
    except ValueError:
        raise _expected(where, f"one of {', '.join(s.value for s in ModelStatus)}", value) from None


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _expected(where, "true or false", value)
    return value


def _optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else check(value, where)


def _model_record(key: str, value: Any) -> ModelRecord:
    where = f"models[{key!r}]"
    record = _object(value, where)
    checkers = _RECORD_CHECKERS
    _no_unknown_keys(record, set(checkers), where)
    required = [f.name for f in fields(ModelRecord) if f.default is MISSING]
    missing = [name for name in required if name not in record]
    if missing:
        raise _malformed(where, f"missing {', '.join(missing)}")
    checked = {name: checkers[name](v, f"{where}.{name}") for name, v in record.items()}
    if checked["hotkey"] != key:
        raise _malformed(where, f"hotkey {checked['hotkey']!r} differs from its key")
    return ModelRecord(**checked)


_RECORD_CHECKERS = _field_checkers()


def save_state(state: ValidatorState, path: str | os.PathLike) -> None:
    """Write ``state`` atomically (temp file, fsync, rename): a crash leaves the old or the new file.

    The state is checked as :func:`load_state` will check it first (raising StateError), so a value the next
    start would refuse, such as a NaN weight, never reaches the disk.
    """
    data = state.to_json()
    ValidatorState.from_json(data)
    atomic_write_json(path, data)


def load_state(path: str | os.PathLike) -> ValidatorState:
    """Read the state file; a missing file is a fresh state, an unreadable one is a StateError naming it."""
    p = Path(path)
    if not p.exists():
        return ValidatorState()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"{p}: cannot read validator state ({e})") from e
    try:
        return ValidatorState.from_json(data)
    except StateError as e:
        raise StateError(f"{p}: {e}") from e
    except (TypeError, ValueError) as e:  # a check this module lacks: still the file's fault
        raise StateError(f"{p}: malformed validator state ({e})") from e
