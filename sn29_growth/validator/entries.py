"""``--models FILE.json``: models evaluated beside (or, offline, instead of) the chain's commitments.

The file is a JSON list of objects: ``{"model": "DIR or org/name[@revision]", "block": 123, "label": "...",
"competition": "c00" (optional)}``. Online they are benchmarks: evaluated and shown, never weighted.
Offline they stand in for the chain's miners (uids 0, 1, … in file order) and the validator prints the
weights it would set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelEntry:
    model: str
    block: int
    label: str
    competition: str | None = None
    injected: bool = True
    uid: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model must be a local directory or org/name[@revision]")
        if not isinstance(self.block, int) or self.block < 0:
            raise ValueError(f"block must be a non-negative integer, got {self.block!r}")
        if not self.label:
            raise ValueError("label must be non-empty")

    @property
    def key(self) -> str:
        return f"{'injected' if self.injected else 'offline'}:{self.label}"


ENTRIES_SHAPE = (
    'e.g. [{"model": "base", "block": 100, "label": "base"}, {"model": "org/name@main", "block": 200, '
    '"label": "grown"}] (docs/formats.md)'
)


def load_entries(path: str | os.PathLike, *, injected: bool) -> list[ModelEntry]:
    """Parse a models file; relative directories are resolved against the file's folder."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--models {p}: cannot read ({e})") from e
    if not isinstance(data, list) or not data:
        raise ValueError(f"--models {p}: expected a non-empty JSON list of model entries; {ENTRIES_SHAPE}")
    out: list[ModelEntry] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "model" not in item:
            raise ValueError(f"--models {p}: entry {i} needs a 'model' field; {ENTRIES_SHAPE}")
        model = _resolved(str(item["model"]), p, i, offline=not injected)
        try:
            out.append(
                ModelEntry(
                    model=model,
                    block=int(item.get("block", i)),
                    label=str(item.get("label") or Path(model).name or model),
                    competition=item.get("competition"),
                    injected=injected,
                    uid=None if injected else i,
                )
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"--models {p}: entry {i}: {e}") from e
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--models {p}: labels must be distinct")
    return out


def _resolved(model: str, path: Path, index: int, *, offline: bool) -> str:
    """The entry's model through the one model-argument resolver: a folder (relative to the file's folder)
    as an absolute path, else a Hub id (refused when the validator runs ``--offline``)."""
    from sn29_growth.modelref import resolve_model_argument

    flag = f"--models {path}: entry {index}:"
    local = Path(model).expanduser()
    local = local if local.is_absolute() else path.parent / local
    ref = resolve_model_argument(local if local.exists() else model, flag, offline=offline or None)
    return str(ref.path.resolve()) if ref.path is not None else model
