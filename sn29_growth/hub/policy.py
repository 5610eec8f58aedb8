"""Which repository files the project ever downloads or uploads (pure functions).

Only top-level files matching :data:`MODEL_FILE_PATTERNS` are fetched: the config, safetensors weights
and their index, and tokenizer files. Pickle-based or executable files (``*.bin``, ``*.pt``, ``*.pkl``,
``*.py``, ...) are never fetched, whatever a caller asks for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from sn29_growth.checkpoint import CONFIG_FILE, GENERATION_CONFIG_FILE, INDEX_FILE, TOKENIZER_FILES

if TYPE_CHECKING:
    from sn29_growth.hub.protocol import RepoFile

WEIGHTS_SUFFIX = ".safetensors"


MODEL_FILE_PATTERNS: tuple[str, ...] = (
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    "*.safetensors",
    INDEX_FILE,
    *TOKENIZER_FILES,
)
"""Every file the project downloads matches one of these, at the repository root."""

CARD_FILES: tuple[str, ...] = ("README.md",)
UPLOAD_PATTERNS: tuple[str, ...] = (*MODEL_FILE_PATTERNS, *CARD_FILES)
"""What the miner uploads: the model files plus its model card (never part of the model hash)."""

FORBIDDEN_SUFFIXES: tuple[str, ...] = (
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".pickle",
    ".ckpt",
    ".py",
    ".pyc",
    ".so",
    ".npy",
    ".npz",
    ".joblib",
    ".h5",
    ".msgpack",
)
"""Formats that can execute code or that the project never loads; rejected even if a pattern matched."""


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """Case-sensitive shell-style match of ``path`` against any pattern."""
    return any(fnmatchcase(path, p) for p in patterns)


def is_model_file(path: str) -> bool:
    """True if the project may ever download ``path``: top-level, an allowed name, not a forbidden format."""
    if "/" in path or path.startswith("."):
        return False
    if path.lower().endswith(FORBIDDEN_SUFFIXES):
        return False
    return matches_any(path, MODEL_FILE_PATTERNS)


@dataclass(frozen=True)
class Selection:
    """The outcome of filtering a repository listing: what will be fetched and what will not."""

    selected: tuple[RepoFile, ...]
    skipped: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.selected)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.selected)

    def __post_init__(self) -> None:
        paths = [f.path for f in self.selected]
        if len(set(paths)) != len(paths):
            raise ValueError("selected must not list a path twice")


def select_files(files: Iterable[RepoFile], allow_patterns: Sequence[str] = MODEL_FILE_PATTERNS) -> Selection:
    """Keep the files that match ``allow_patterns`` and the model-file policy; ``allow_patterns`` can only narrow.

    A listing that names a path twice cannot say which size and hash the file has: the repository is
    rejected (:class:`~sn29_growth.hub.protocol.UnsupportedRepo`, not retried) rather than guessed at.
    """
    files = sorted(files, key=lambda f: f.path)
    _reject_duplicate_paths(files)
    selected: list[RepoFile] = []
    skipped: list[str] = []
    for f in files:
        if is_model_file(f.path) and matches_any(f.path, allow_patterns):
            selected.append(f)
        else:
            skipped.append(f.path)
    return Selection(selected=tuple(selected), skipped=tuple(skipped))


def _reject_duplicate_paths(files: Sequence[RepoFile]) -> None:
    """Raise UnsupportedRepo naming every path that ``files`` lists more than once."""
    twice = sorted(path for path, n in Counter(f.path for f in files).items() if n > 1)
    if twice:
        from sn29_growth.hub.protocol import UnsupportedRepo

        raise UnsupportedRepo(f"the repository listing names {', '.join(map(repr, twice))} more than once")


def missing_model_files(paths: Iterable[str]) -> list[str]:
    """What a loadable model lacks among ``paths``: ``config.json`` and at least one ``*.safetensors`` file."""
    paths = set(paths)
    missing = []
    if CONFIG_FILE not in paths:
        missing.append(CONFIG_FILE)
    if not any(p.endswith(WEIGHTS_SUFFIX) for p in paths):
        missing.append(f"*{WEIGHTS_SUFFIX}")
    return missing


def select_upload(names: Iterable[str], allow_patterns: Sequence[str] = UPLOAD_PATTERNS) -> list[str]:
    """The file names an upload sends: model files (or README.md) that also match ``allow_patterns``."""
    return sorted(
        n for n in set(names) if (is_model_file(n) or n in CARD_FILES) and matches_any(n, allow_patterns)
    )


def upload_paths(folder: Path, allow_patterns: Sequence[str] = UPLOAD_PATTERNS) -> list[str]:
    """The top-level files of ``folder`` an upload sends; raises UnsupportedRepo if they are not a loadable model."""
    from sn29_growth.hub.protocol import UnsupportedRepo

    if not folder.is_dir():
        raise ValueError(f"folder {folder} is not a directory")
    paths = select_upload(
        (p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()), allow_patterns
    )
    missing = missing_model_files(paths)
    if missing:
        raise UnsupportedRepo(f"{folder} lacks {', '.join(missing)}")
    return paths
