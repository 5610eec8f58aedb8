"""A token corpus folder: the token ids of a train and a held-out split, the tokenizer that made them, and
where the text came from. Read without copying (memory map): the study's corpora and the training data
``sn29 data`` prepares (:mod:`sn29_growth.train.prepare`) are such folders.

Layout::

    manifest.json     {"format": "sn29-token-corpus/1", "dtype": "uint16", "vocab_size": V, "eos_id": E,
                       "splits": {"train": {"file": "train.bin", "tokens": n, "documents": d,
                                            "sha256": "..."}, "held_out": {...}},
                       "sources": [...], ...}   (other keys are the builder's, kept as written)
    tokenizer.json    the tokenizer (``tokenizers`` JSON) that produced the ids
    train.bin         little-endian ids (``uint16`` when the vocabulary fits, else ``uint32``); every
                      document is followed by ``eos_id``
    held_out.bin      the same, for documents never seen in training

:func:`write_token_corpus` writes the folder atomically (a temporary folder renamed into place), so a
crash leaves either the old corpus or the new one. :func:`open_token_corpus` checks the manifest, the file
sizes and (on request) the checksums, and every error names the folder and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sn29_growth.atomic import atomic_directory
from sn29_growth.digest import sha256_file

FORMAT = "sn29-token-corpus/1"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SPLITS = ("train", "held_out")
DTYPE = "uint16"
DTYPES = {"uint16": "<u2", "uint32": "<u4"}
MAX_VOCAB = 1 << 32


def dtype_for(vocab_size: int) -> str:
    """The narrowest id type of the format that holds ids below ``vocab_size``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


class TokenCorpusError(ValueError):
    """A token corpus folder that is missing, malformed or does not match its manifest."""


@dataclass(frozen=True)
class Split:
    name: str
    file: str
    tokens: int
    documents: int
    sha256: str


@dataclass(frozen=True)
class TokenCorpus:
    folder: Path
    vocab_size: int
    eos_id: int
    splits: Mapping[str, Split]
    manifest: Mapping[str, Any]
    dtype: str = DTYPE

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / TOKENIZER

    def tokens(self, split: str) -> np.ndarray:
        """The ids of ``split`` as a read-only memory map (of the corpus's ``dtype``)."""
        if split not in self.splits:
            raise TokenCorpusError(f"{self.folder}: no split {split!r} (has {', '.join(self.splits)})")
        s = self.splits[split]
        if s.tokens == 0:
            return np.zeros(0, dtype=DTYPES[self.dtype])
        return np.memmap(self.folder / s.file, dtype=DTYPES[self.dtype], mode="r", shape=(s.tokens,))

    def verify(self) -> None:
        """Check every split's sha256 against the manifest."""
        for s in self.splits.values():
            digest = _sha256(self.folder / s.file)
            if digest != s.sha256:
                raise TokenCorpusError(
                    f"{self.folder / s.file}: sha256 {digest} does not match the manifest's {s.sha256}"
                )


def _sha256(path: Path) -> str:
    return sha256_file(path).hex()


def _write_split(
    path: Path, documents: Iterable[Sequence[int]], eos_id: int, vocab_size: int, dtype: str = DTYPE
) -> tuple[int, int]:
    tokens = docs = 0
    code = DTYPES[dtype]
    with open(path, "wb") as f:
        for doc in documents:
            ids = np.asarray(doc, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise TokenCorpusError(f"{path.name}: document {docs} has ids outside [0, {vocab_size})")
            f.write(np.append(ids, eos_id).astype(code).tobytes())
            tokens += ids.size + 1
            docs += 1
        f.flush()
        os.fsync(f.fileno())
    return tokens, docs


def write_token_corpus(
    folder: str | os.PathLike,
    tokenizer_json: str | os.PathLike,
    splits: Mapping[str, Iterable[Sequence[int]]],
    *,
    eos_id: int,
    vocab_size: int,
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    files: Mapping[str, str] | None = None,
    overwrite: bool = False,
    dtype: str | None = None,
) -> TokenCorpus:
    """Write ``splits`` (name -> documents of ids) with the tokenizer and a manifest into ``folder``.

    ``splits`` are consumed once, document by document (an iterator of any length streams to disk).
    ``extra`` goes into the manifest as is (provenance, licences, settings); a callable is called once the
    splits are written (for what only reading them tells). ``files`` (name -> text) are written beside it
    (e.g. a provenance document). ``dtype``: the id type (default: uint16 when the vocabulary fits, else
    uint32). Deterministic: the same inputs give the same bytes.
    """
    dtype = dtype or dtype_for(vocab_size)
    if dtype not in DTYPES:
        raise TokenCorpusError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not 0 < vocab_size <= MAX_VOCAB or (dtype == "uint16" and vocab_size > 1 << 16):
        raise TokenCorpusError(f"vocab_size {vocab_size} does not fit {dtype} ids")
    if not 0 <= eos_id < vocab_size:
        raise TokenCorpusError(f"eos_id {eos_id} is outside the vocabulary [0, {vocab_size})")
    unknown = set(splits) - set(SPLITS)
    if unknown or not splits:
        raise TokenCorpusError(f"splits must be among {SPLITS}, got {sorted(splits)}")
    clash = {MANIFEST, TOKENIZER, *(f"{n}.bin" for n in SPLITS)} & set(files or {})
    if clash:
        raise TokenCorpusError(f"extra files would overwrite {sorted(clash)}")
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        (tmp / TOKENIZER).write_bytes(Path(tokenizer_json).read_bytes())
        table = {}
        for name in SPLITS:
            if name not in splits:
                continue
            file = f"{name}.bin"
            n, d = _write_split(tmp / file, splits[name], eos_id, vocab_size, dtype)
            table[name] = {"file": file, "tokens": n, "documents": d, "sha256": _sha256(tmp / file)}
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        manifest = {
            **((extra() if callable(extra) else extra) or {}),
            "format": FORMAT,
            "dtype": dtype,
            "vocab_size": vocab_size,
            "eos_id": eos_id,
            "splits": table,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return open_token_corpus(folder)


def _field(manifest: Mapping[str, Any], key: str, kind: type, where: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TokenCorpusError(f"{where}: manifest field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def open_token_corpus(folder: str | os.PathLike, *, verify: bool = False) -> TokenCorpus:
    """Open a token corpus folder, checking its manifest and file sizes (and checksums with ``verify``)."""
    root = Path(folder)
    path = root / MANIFEST
    if not path.is_file():
        raise TokenCorpusError(
            f"{root}: not a token corpus (no {MANIFEST}); build one with scripts/build_study_corpus.py"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenCorpusError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TokenCorpusError(f"{path}: format must be {FORMAT!r}")
    dtype = manifest.get("dtype")
    if dtype not in DTYPES:
        raise TokenCorpusError(f"{path}: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    vocab = _field(manifest, "vocab_size", int, path)
    eos = _field(manifest, "eos_id", int, path)
    if not 0 <= eos < vocab <= MAX_VOCAB or (dtype == "uint16" and vocab > 1 << 16):
        raise TokenCorpusError(f"{path}: eos_id {eos} / vocab_size {vocab} out of range")
    table = _field(manifest, "splits", dict, path)
    splits = {}
    for name, entry in table.items():
        if name not in SPLITS or not isinstance(entry, dict):
            raise TokenCorpusError(f"{path}: unknown or malformed split {name!r}")
        s = Split(
            name=name,
            file=_field(entry, "file", str, path),
            tokens=_field(entry, "tokens", int, path),
            documents=_field(entry, "documents", int, path),
            sha256=_field(entry, "sha256", str, path),
        )
        if Path(s.file).name != s.file:
            raise TokenCorpusError(f"{path}: split file {s.file!r} must be a plain file name")
        data = root / s.file
        size = data.stat().st_size if data.is_file() else None
        if size != np.dtype(DTYPES[dtype]).itemsize * s.tokens:
            raise TokenCorpusError(f"{data}: {size} bytes, the manifest says {s.tokens} {dtype} tokens")
        splits[name] = s
    if not (root / TOKENIZER).is_file():
        raise TokenCorpusError(f"{root}: no {TOKENIZER}")
    corpus = TokenCorpus(
        folder=root, vocab_size=vocab, eos_id=eos, splits=splits, manifest=manifest, dtype=dtype
    )
    if verify:
        corpus.verify()
    return corpus
