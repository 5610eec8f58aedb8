"""The loss cache: per-sample losses keyed by (model content hash, sample, evaluation-settings fingerprint).

On disk, one JSON file per (model hash, settings fingerprint) maps sample keys (id + text digest, see
:func:`sn29_growth.eval.data.sample_key`) to summed losses (``"inf"`` for +inf). Files are rewritten
atomically after each model, so a crash leaves the old file or the new one, never a torn one.

:func:`model_content_hash` digests the model files a validator downloads (config, safetensors, index,
tokenizer files), several files at once. File digests are memoised by (path, size, mtime) so
re-evaluating a model does not re-read tens of gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json
from sn29_growth.digest import sha256_file, sha256_files
from sn29_growth.hub.policy import is_model_file

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    return sha256_file(path).hex()


def model_content_hash(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """sha256 over ``name\\0sha256(file)\\n`` of the model files of ``path`` in sorted name order.

    The file set is the one the Hub client downloads (:func:`sn29_growth.hub.policy.is_model_file`), so a
    local checkpoint and its downloaded copy hash alike. ``memo_dir`` keeps file digests between runs.
    """
    root = Path(path)
    memo_path = Path(memo_dir) / "file-digests.json" if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            memo = {}
    names = model_file_names(root)
    if not names:
        raise ValueError(f"{root}: no model files to hash")
    keys = {}
    for name in names:
        st = (root / name).stat()
        keys[name] = f"{(root / name).resolve()}|{st.st_size}|{st.st_mtime_ns}"
    missing = [name for name in names if keys[name] not in memo]
    for name, digest in zip(missing, sha256_files([root / n for n in missing]), strict=True):
        memo[keys[name]] = digest.hex()  # the shards are digested concurrently
    changed = bool(missing)
    if changed and memo_path is not None:
        atomic_write_json(memo_path, memo, indent=None)
    return content_hash_of({name: bytes.fromhex(memo[keys[name]]) for name in names})


def model_file_names(path: str | os.PathLike) -> list[str]:
    """The names of the files :func:`model_content_hash` covers, sorted."""
    return sorted(p.name for p in Path(path).iterdir() if p.is_file() and is_model_file(p.name))


def content_hash_of(digests: Mapping[str, bytes]) -> str:
    """:func:`model_content_hash` from the raw SHA-256 digests of the model files, ``{name: digest}``."""
    if not digests:
        raise ValueError("no model files to hash")
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(f"{name}\0{digests[name].hex()}\n".encode())
    return h.hexdigest()


def is_content_hash(value: object) -> bool:
    """Whether ``value`` has the form of a :func:`model_content_hash` (64 lowercase hex digits)."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short digest of the evaluation settings that change a loss (JSON-serialisable mapping)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encode(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode(value: float | str) -> float:
    return float(value)


class LossCache:
    """Per-sample losses on disk (``directory=None``: in memory only)."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._tables: dict[tuple[str, str], dict[str, float | str]] = {}

    def _path(self, model_hash: str, settings_fp: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / "losses" / model_hash[:2] / f"{model_hash}-{settings_fp}.json"

    def _table(self, model_hash: str, settings_fp: str) -> dict[str, float | str]:
        key = (model_hash, settings_fp)
        if key not in self._tables:
            table: dict[str, float | str] = {}
            path = self._path(model_hash, settings_fp)
            if path is not None and path.is_file():
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    table = dict(loaded.get("losses", {}))
                except (OSError, ValueError, AttributeError):
                    log.warning("loss cache: unreadable %s; ignoring it", path)
            self._tables[key] = table
        return self._tables[key]

    def get(self, model_hash: str, settings_fp: str, sample_keys: Iterable[str]) -> dict[str, float]:
        """The cached losses among ``sample_keys``."""
        table = self._table(model_hash, settings_fp)
        return {k: _decode(table[k]) for k in sample_keys if k in table}

    def put(self, model_hash: str, settings_fp: str, losses: Mapping[str, float]) -> None:
        """Add losses and rewrite the file atomically."""
        if not losses:
            return
        table = self._table(model_hash, settings_fp)
        path = self._path(model_hash, settings_fp)
        if path is not None and path.is_file():  # keep what another process added meanwhile
            self._tables.pop((model_hash, settings_fp))
            table.update({k: v for k, v in self._table(model_hash, settings_fp).items() if k not in table})
            self._tables[(model_hash, settings_fp)] = table
        table.update({k: _encode(float(v)) for k, v in losses.items()})
        if path is not None:
            atomic_write_json(
                path, {"model": model_hash, "settings": settings_fp, "losses": table}, indent=None
            )
