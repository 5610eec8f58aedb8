"""The SN29 model pointer committed on chain, and the salted content hash it carries.

A commitment is the string ``namespace:name:commit:hash:competition``:

- ``namespace/name`` is the Hugging Face repo id,
- ``commit`` the 40-hex revision of that repo,
- ``hash`` the salted content hash of the model files (see :func:`content_hash`),
- ``competition`` the competition id (``c00``, ``c01``, ...).

The whole UTF-8 string is at most :data:`MAX_COMMITMENT_BYTES` bytes.

Content hash::

    file_digest(f) = base64(sha256(bytes of f))
    dir_hash       = base64(sha256(utf8(file_digest(f1) + file_digest(f2) + ...)))   # files sorted by name
    hash           = base64(sha256(utf8(dir_hash + hotkey_ss58)))

The hashed files are exactly those selected by :func:`is_hashed_file` (see :data:`HASHED_FILE_NAMES`):
the files that define the model's behaviour, never README/model cards, recipes or ``.gitattributes``.
Miner and validator must hash the same set, from local files (no re-download).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sn29_growth.digest import DigestMemo, sha256_file, sha256_files

MAX_COMMITMENT_BYTES = 128
"""Upper bound on the UTF-8 length of the whole commitment string."""

SEPARATOR = ":"

HASHED_FILE_NAMES: frozenset[str] = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
    }
)
"""Top-level file names that are part of the content hash (when present), besides ``*.safetensors``."""

HASHED_FILE_PATTERNS: tuple[str, ...] = ("*.safetensors", *sorted(HASHED_FILE_NAMES))
"""The same set as glob patterns, usable as ``allow_patterns`` for a Hub download."""

# Hugging Face repo id part: 1..96 of [A-Za-z0-9_.-], starting and ending with [A-Za-z0-9_].
_REPO_PART_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_COMPETITION_RE = re.compile(r"[a-z0-9_-]+")
_HASH_CHARS = 44  # base64 of 32 bytes


def _check_repo_part(field: str, value: str) -> None:
    if not isinstance(value, str) or not _REPO_PART_RE.fullmatch(value):
        raise ValueError(
            f"{field} {value!r} is not a valid Hugging Face repo id part: 1-96 characters of "
            "A-Z a-z 0-9 '_' '.' '-', starting and ending with a letter, digit or '_'"
        )
    if "--" in value or ".." in value:
        raise ValueError(f"{field} {value!r} must not contain '--' or '..'")
    if field == "name" and value.endswith(".git"):
        raise ValueError(f"name {value!r} must not end with '.git'")


def _check_hash(value: str) -> None:
    if not isinstance(value, str) or len(value) != _HASH_CHARS:
        raise ValueError(f"hash {value!r} must be {_HASH_CHARS} characters of base64 (a sha256 digest)")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"hash {value!r} is not valid base64") from None
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != value:
        raise ValueError(f"hash {value!r} is not the canonical base64 of a 32-byte sha256 digest")


@dataclass(frozen=True)
class ModelCommitment:
    """A validated SN29 commitment: ``namespace:name:commit:hash:competition``."""

    namespace: str
    name: str
    commit: str
    hash: str
    competition: str

    def __post_init__(self) -> None:
        _check_repo_part("namespace", self.namespace)
        _check_repo_part("name", self.name)
        if not isinstance(self.commit, str) or not _COMMIT_RE.fullmatch(self.commit):
            raise ValueError(f"commit {self.commit!r} must be 40 lowercase hex characters (a Hub commit sha)")
        _check_hash(self.hash)
        if not isinstance(self.competition, str) or not _COMPETITION_RE.fullmatch(self.competition):
            raise ValueError(f"competition {self.competition!r} must be a non-empty id of a-z 0-9 '_' '-'")
        size = len(self.format().encode("utf-8"))
        if size > MAX_COMMITMENT_BYTES:
            raise ValueError(
                f"commitment is {size} bytes, more than the {MAX_COMMITMENT_BYTES}-byte limit: shorten the "
                f"namespace, name or competition (together at most "
                f"{MAX_COMMITMENT_BYTES - 40 - _HASH_CHARS - 4} characters)"
            )

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def format(self) -> str:
        return SEPARATOR.join((self.namespace, self.name, self.commit, self.hash, self.competition))

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, value: str) -> ModelCommitment:
        """Parse and validate a commitment string; ValueError names the bad part."""
        if not isinstance(value, str):
            raise ValueError(f"commitment must be a string, got {type(value).__name__}")
        size = len(value.encode("utf-8"))
        if size > MAX_COMMITMENT_BYTES:
            raise ValueError(f"commitment is {size} bytes, more than the {MAX_COMMITMENT_BYTES}-byte limit")
        parts = value.split(SEPARATOR)
        if len(parts) != 5:
            raise ValueError(
                f"commitment {value!r} must have 5 ':'-separated parts "
                f"(namespace:name:commit:hash:competition), found {len(parts)}"
            )
        return cls(*parts)


def is_hashed_file(name: str) -> bool:
    """Whether a top-level file of a model repo is part of the content hash."""
    return "/" not in name and (name in HASHED_FILE_NAMES or name.endswith(".safetensors"))


def hashed_files(directory: str | os.PathLike) -> dict[str, Path]:
    """The files of a model directory that the content hash covers, as ``{name: path}``.

    Only top-level regular files are considered (symlinks are followed, as in a Hub cache snapshot).
    Raises ValueError if the directory has no ``config.json`` or no ``*.safetensors`` file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    files = {
        entry.name: entry
        for entry in sorted(root.iterdir())
        if entry.is_file() and is_hashed_file(entry.name)
    }
    if "config.json" not in files:
        raise ValueError(f"{root} has no config.json: not a model directory")
    if not any(name.endswith(".safetensors") for name in files):
        raise ValueError(f"{root} has no *.safetensors weights")
    return files


def file_digest(path: str | os.PathLike) -> str:
    """base64(sha256(file bytes)), read in chunks so multi-GB shards never sit in memory."""
    return base64.b64encode(sha256_file(path)).decode("ascii")


def directory_hash(
    files: Mapping[str, str | os.PathLike], *, workers: int | None = None, memo: DigestMemo | None = None
) -> str:
    """The unsalted hash over ``{name: path}``: base64(sha256 of the concatenated file digests in name order).

    The files are digested concurrently (``workers`` threads, default one per file up to the CPU count);
    the value is the same as digesting them one after the other. With a ``memo`` only the files new or
    changed since it last saw them are read.
    """
    if not files:
        raise ValueError("no files to hash")
    names = sorted(files)
    paths = [files[name] for name in names]
    digests = memo.digests(paths) if memo is not None else sha256_files(paths, workers=workers)
    return directory_hash_of({name: d for name, d in zip(names, digests, strict=True)})


def directory_hash_of(digests: Mapping[str, bytes]) -> str:
    """:func:`directory_hash` from the raw SHA-256 digests of the files, ``{name: digest}``."""
    if not digests:
        raise ValueError("no files to hash")
    joined = "".join(base64.b64encode(digests[name]).decode("ascii") for name in sorted(digests))
    return base64.b64encode(hashlib.sha256(joined.encode("utf-8")).digest()).decode("ascii")


def salted_hash(dir_hash: str, hotkey: str) -> str:
    """base64(sha256(utf8(dir_hash + hotkey))): the hash a commitment carries."""
    if not hotkey:
        raise ValueError("hotkey must be a non-empty ss58 address")
    return base64.b64encode(hashlib.sha256((dir_hash + hotkey).encode("utf-8")).digest()).decode("ascii")


def content_hash(files: Mapping[str, str | os.PathLike] | str | os.PathLike, hotkey: str) -> str:
    """The salted content hash of a model for ``hotkey``.

    ``files`` is either a model directory (its :func:`hashed_files` are used) or an explicit
    ``{name: path}`` mapping, hashed as given.
    """
    selected = files if isinstance(files, Mapping) else hashed_files(files)
    return salted_hash(directory_hash(selected), hotkey)
