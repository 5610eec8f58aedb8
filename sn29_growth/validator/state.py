"""Validator state: versioned JSON, written atomically, never lost across restarts or kill -9.

The file holds what a validator must not forget — the models it knows (with their last outcome), the
pools per competition, the EMA of weights, the block of the last weight setting and the discarded
commitments. Losses live in the evaluation's own on-disk cache, keyed by content, sample and settings.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json

log = logging.getLogger(__name__)

STATE_VERSION = 1


class StateError(RuntimeError):
    """A state file that cannot be read as any known version; the message names the file."""


@dataclass
class ModelRecord:
    """What the validator knows about one hotkey's current commitment."""

    hotkey: str
    uid: int
    commitment: str
    competition: str
    block: int
    status: str = "new"  # new | pool | evaluated | rejected | discarded
    reason: str = ""
    content_hash: str = ""
    mean_loss: float | None = None
    win_rate: float = 0.0
    last_eval_step: int = -1
    injected: bool = False
    label: str = ""
    was_pool: bool = False  # a pool member that re-committed: fetched first

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

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {k: asdict(v) for k, v in self.models.items()}
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValidatorState:
        version = data.get("version")
        if version != STATE_VERSION:
            raise StateError(f"state version {version!r} is not supported (expected {STATE_VERSION})")
        models = {k: ModelRecord(**v) for k, v in data.get("models", {}).items()}
        return cls(
            version=STATE_VERSION,
            step=int(data.get("step", 0)),
            models=models,
            pools={k: list(v) for k, v in data.get("pools", {}).items()},
            ema_weights={str(k): float(v) for k, v in data.get("ema_weights", {}).items()},
            last_weights_block=int(data.get("last_weights_block", -1)),
            discarded=dict(data.get("discarded", {})),
            failures={k: int(v) for k, v in data.get("failures", {}).items()},
        )


def save_state(state: ValidatorState, path: str | os.PathLike) -> None:
    """Write ``state`` atomically (temp file, fsync, rename): a crash leaves the old or the new file."""
    atomic_write_json(path, state.to_json())


def load_state(path: str | os.PathLike) -> ValidatorState:
    """Read the state file; a missing file is a fresh state, an unreadable one is an error naming it."""
    p = Path(path)
    if not p.exists():
        return ValidatorState()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"{p}: cannot read validator state ({e})") from e
    if not isinstance(data, dict):
        raise StateError(f"{p}: validator state is not a JSON object")
    try:
        return ValidatorState.from_json(data)
    except (TypeError, ValueError) as e:
        raise StateError(f"{p}: malformed validator state ({e})") from e
