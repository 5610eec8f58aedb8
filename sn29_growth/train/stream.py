"""Training data tokenized while the model trains: ``--data hf://org/name[/config][@split]`` or a folder of
``.parquet``/``.jsonl``/``.txt`` files.

:class:`StreamedTokens` names such a source. When a run opens it (:meth:`StreamedTokens.open_windows`) it
asks for the tokens the run needs (:func:`run_tokens`: steps × global batch × (seq_len + 1) plus a
margin) in a *growing* prepared folder under ``data_dir``, keyed by the source and the model's tokenizer
fingerprint (the same source and tokenizer always land in the same folder: later runs and resumed runs
reuse it and only add what is missing). A producer thread drives the tokenizer (on the network's stack,
:func:`sn29_growth.eval.tokenizers.load_tokenizer`; its worker is a separate process) and appends to the
folder ahead of the reader, chunk by chunk; training starts as soon as the windows of its first steps are
there (``background=False`` prepares everything first).

The folder (``train.bin``, ``tokenizer.json``, ``progress.json``, and ``manifest.json`` once it holds
what was asked)::

    progress.json   {"format": "sn29-growing-tokens/1", "key": {...}, "dtype", "eos_id", "vocab_size",
                     "tokens": committed ids, "documents", "shard": index of the shard being read,
                     "shard_documents": its texts already tokenized, "exhausted": the source ran out,
                     "commit": the Hub commit read (Hub sources), "sources": [every shard read]}

Each chunk's ids are written and flushed to disk (fsync) before ``progress.json`` is replaced atomically
with the new committed count, so a crash (even ``kill -9``) leaves committed ids that are all on disk
and maybe an uncommitted tail. A producer starting on the folder truncates that tail and continues from
the committed shard and document (the same ids follow: tokenization is deterministic, a Hub source is
read at the commit recorded); a ``progress.json`` that is missing, unreadable or names another source or
tokenizer makes it start the folder again. Readers never read past the committed count. One producer
at a time: it holds an exclusive ``flock`` on ``.lock`` (every rank of a torchrun job opens the source;
the one that gets the lock produces, the others read, and take over if it stops).

The window order (:class:`GrowingWindows`) lets the first steps start early: epoch 0 visits the blocks of
:data:`~sn29_growth.train.data.SHUFFLE_BLOCK` windows in order, the windows inside each block in an order
drawn from ``(seed, 0, block)``; later epochs shuffle the blocks too (as
:class:`~sn29_growth.train.data.MappedWindows` does). The run reads the windows of its first ``tokens``
ids only, so a folder that other runs made longer reads the same. Which windows a position names depends
only on (seed, seq_len, the run's tokens, the ids), never on how far the producer was: reading while the
folder grows reads exactly what preparing everything first reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sn29_growth.atomic import atomic_write_json
from sn29_growth.train.data import SHUFFLE_BLOCK, DataPosition, MappedWindows
from sn29_growth.train.prepare import (
    CHUNK_TEXTS,
    HUB_PREFIX,
    TEXT_SUFFIXES,
    TOKENIZER_SIDE_FILES,
    PrepareError,
    open_source,
    read_texts,
)
from sn29_growth.train.tokens import (
    DTYPES,
    FORMAT,
    MANIFEST,
    TOKENIZER,
    dtype_for,
)

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
LOCK = ".lock"
DATA = "train.bin"
PROGRESS_FORMAT = "sn29-growing-tokens/1"
POLL_S = 0.05


def run_tokens(steps: int, global_batch: int, seq_len: int) -> int:
    """The ids a run of ``steps`` steps of ``global_batch`` windows of ``seq_len`` reads in its first epoch,
    plus a margin of 1 % and one window."""
    need = steps * global_batch * (seq_len + 1)
    return need + need // 100 + seq_len + 1


def is_text_folder(path: Path) -> bool:
    """A folder holding ``.parquet``/``.jsonl``/``.ndjson``/``.txt`` files (and no token corpus)."""
    return path.is_dir() and any(p.is_file() and p.suffix in TEXT_SUFFIXES for p in path.rglob("*"))


# --------------------------------------------------------------------------------------- the writer


def read_progress(folder: Path) -> dict[str, Any] | None:
    try:
        progress = json.loads((folder / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return progress if isinstance(progress, dict) and progress.get("format") == PROGRESS_FORMAT else None


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.lock`` (released on :meth:`release` or when the
    process dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Producer:
    """Appends ``source``'s ids to the growing folder until it holds ``target`` ids (or the source runs
    out, or :meth:`stop` is called). The caller holds the folder's lock."""

    def __init__(
        self,
        folder: Path,
        source: str,
        key: dict[str, Any],
        tokenizer_dir: Path,
        tokenizer,
        target: int,
        *,
        text_column: str = "text",
        chunk_texts: int = CHUNK_TEXTS,
        source_options: dict[str, Any] | None = None,
    ) -> None:
        self.folder, self.source, self.key = folder, source, key
        self.tokenizer_dir, self.tokenizer, self.target = tokenizer_dir, tokenizer, target
        self.text_column, self.chunk_texts = text_column, chunk_texts
        self.source_options = dict(source_options or {})
        self._stop = threading.Event()
        self._read_all = False
        eos = tokenizer.eos_token_id
        if eos is None:
            raise PrepareError(f"{tokenizer_dir}: the tokenizer has no EOS token to separate documents")
        self.eos = int(eos)
        self.vocab = max(len(tokenizer), int(getattr(tokenizer, "max_id", -1)) + 1, self.eos + 1)
        self.dtype = dtype_for(self.vocab)

    def stop(self) -> None:
        self._stop.set()

    def _fresh(self) -> dict[str, Any]:
        return {
            "format": PROGRESS_FORMAT,
            "key": self.key,
            "source": self.source,
            "dtype": self.dtype,
            "eos_id": self.eos,
            "vocab_size": self.vocab,
            "tokens": 0,
            "documents": 0,
            "shard": 0,
            "shard_documents": 0,
            "exhausted": False,
            "sources": [],
        }

    def recover(self) -> dict[str, Any]:
        """The committed state, the data file cut back to it; a folder it does not describe starts over."""
        progress = read_progress(self.folder)
        data = self.folder / DATA
        itemsize = np.dtype(DTYPES[self.dtype]).itemsize
        usable = (
            progress is not None
            and progress.get("key") == self.key
            and progress.get("dtype") == self.dtype
            and progress.get("eos_id") == self.eos
            and data.is_file()
            and data.stat().st_size >= itemsize * int(progress.get("tokens", -1)) >= 0
        )
        if not usable:
            if progress is not None or data.exists():
                log.warning("%s: not a resumable preparation of this source; starting it again", self.folder)
            (self.folder / MANIFEST).unlink(missing_ok=True)
            (self.folder / PROGRESS).unlink(missing_ok=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            data.write_bytes(b"")
            (self.folder / TOKENIZER).write_bytes((self.tokenizer_dir / TOKENIZER).read_bytes())
            for name in TOKENIZER_SIDE_FILES:
                if (self.tokenizer_dir / name).is_file():
                    (self.folder / name).write_bytes((self.tokenizer_dir / name).read_bytes())
            progress = self._fresh()
            atomic_write_json(self.folder / PROGRESS, progress)
            return progress
        assert progress is not None
        with open(data, "r+b") as f:
            f.truncate(itemsize * progress["tokens"])
            os.fsync(f.fileno())
        return progress

    def done(self, progress: dict[str, Any]) -> bool:
        return bool(progress["exhausted"]) or progress["tokens"] >= self.target

    def run(self) -> dict[str, Any]:
        """Produce up to the target; returns the last committed state."""
        progress = self.recover()
        if self.done(progress) or self._stop.is_set():
            self._finish(progress)
            return progress
        log.info(
            "%s: tokenizing into %s (%d ids there, %d wanted)",
            self.source, self.folder, progress["tokens"], self.target,
        )  # fmt: skip
        (self.folder / MANIFEST).unlink(missing_ok=True)  # the folder grows again: not a finished corpus
        code = DTYPES[self.dtype]
        with open(self.folder / DATA, "ab") as f:
            for ids, shard_state in self._chunks(progress):
                if ids:
                    flat = np.concatenate([np.append(np.asarray(d, dtype=np.int64), self.eos) for d in ids])
                    if flat.size and (flat.min() < 0 or flat.max() >= self.vocab):
                        raise PrepareError(f"{self.source}: ids outside [0, {self.vocab})")
                    f.write(flat.astype(code).tobytes())
                    f.flush()
                    os.fsync(f.fileno())
                    progress["tokens"] += int(flat.size)
                    progress["documents"] += len(ids)
                progress.update(shard_state)
                atomic_write_json(self.folder / PROGRESS, progress)  # the commit: after the bytes are on disk
                if self.done(progress) or self._stop.is_set():
                    break
        if self._read_all:
            progress["exhausted"] = True
            atomic_write_json(self.folder / PROGRESS, progress)
        if progress["exhausted"] and progress["tokens"] < self.target:
            log.warning(
                "%s: the source ran out after %d of the %d ids asked for", self.source, progress["tokens"],
                self.target,
            )  # fmt: skip
        self._finish(progress)
        return progress

    def _open_source(self, progress: dict[str, Any]):
        options = dict(self.source_options)
        if self.source.startswith(HUB_PREFIX) and progress.get("commit"):
            options["revision"] = progress["commit"]  # the commit already read: the same shards follow
        return open_source(self.source, **options)

    def _chunks(self, progress: dict[str, Any]) -> Iterator[tuple[list[list[int]], dict[str, Any]]]:
        """(the ids of the next chunk of texts, the shard state after it), from the committed shard and
        document on; an empty chunk closes a shard. Sets ``_read_all`` once every shard is read."""
        src = self._open_source(progress)
        start, skip = int(progress["shard"]), int(progress["shard_documents"])
        sources: list[dict[str, Any]] = progress["sources"]
        for index, shard in enumerate(src.shards()):
            if index < start:
                continue
            skip = skip if index == start else 0
            path = shard.fetch()
            try:
                if len(sources) <= index:
                    sources.append({**shard.info, "name": shard.name, "documents": 0, "tokens": 0})
                entry, done = sources[index], skip
                for texts in read_texts(path, shard.name, self.text_column, self.chunk_texts):
                    if skip >= len(texts):
                        skip -= len(texts)
                        continue
                    texts, skip = texts[skip:], 0
                    ids = self.tokenizer(texts)["input_ids"]
                    done += len(texts)
                    entry["documents"] += len(ids)
                    entry["tokens"] += sum(len(d) + 1 for d in ids)
                    state = {"shard": index, "shard_documents": done, "sources": sources}
                    if "commit" in shard.info:
                        state["commit"] = shard.info["commit"]
                    yield ids, state
                yield [], {"shard": index + 1, "shard_documents": 0, "sources": sources}
            finally:
                shard.release()
        self._read_all = True

    def _finish(self, progress: dict[str, Any]) -> None:
        """A folder holding what was asked is also a token corpus (``manifest.json``): ``--data FOLDER``
        reads it as one."""
        if not self.done(progress) or (self.folder / MANIFEST).is_file():
            return
        from sn29_growth.train.tokens import _sha256

        data = self.folder / DATA
        manifest = {
            "prepared": {
                "source": self.source,
                "source_key": self.key["source_key"],
                "tokenizer_fingerprint": self.key["tokenizer_fingerprint"],
                "text_column": self.key["text_column"],
                "requested_tokens": self.target,
                "exhausted": bool(progress["exhausted"]),
                "tokenizer_engine": getattr(self.tokenizer, "engine", "transformers"),
                "tokenizer_class": getattr(self.tokenizer, "class_name", type(self.tokenizer).__name__),
            },
            "sources": progress["sources"],
            "format": FORMAT,
            "dtype": self.dtype,
            "vocab_size": self.vocab,
            "eos_id": self.eos,
            "splits": {
                "train": {
                    "file": DATA,
                    "tokens": progress["tokens"],
                    "documents": progress["documents"],
                    "sha256": _sha256(data),
                }
            },
        }
        atomic_write_json(self.folder / MANIFEST, manifest)


# --------------------------------------------------------------------------------------- the reader


class GrowingTokens:
    """The reading side of a growing folder for one run: its first ``limit`` ids, waited for as needed.

    ``start_producer`` (called with no argument) starts a producer thread and returns it; it is called
    whenever this process gets the folder's lock while the ids are still short."""

    def __init__(
        self,
        folder: Path,
        limit: int,
        dtype: str,
        make_producer: Callable[[], Producer],
        *,
        background: bool = True,
        poll_s: float = POLL_S,
    ) -> None:
        self.folder, self.limit, self.dtype = folder, limit, dtype
        self._make_producer, self.poll_s = make_producer, poll_s
        self._lock = FolderLock(folder)
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._committed = 0
        self._final = False
        if background:
            self._refresh()
            self._maybe_produce()
        else:
            self.wait(limit)

    # the producer --------------------------------------------------------------------------------

    def _maybe_produce(self) -> None:
        if self._final or (self._thread is not None and self._thread.is_alive()):
            return
        if not self._lock.acquire():
            return  # another process (rank, run) produces
        producer = self._make_producer()
        self._producer = producer

        def work() -> None:
            try:
                producer.run()
            except BaseException as e:  # handed to the reader, raised there
                self._error = e
            finally:
                self._lock.release()

        self._thread = threading.Thread(target=work, name=f"tokenize {self.folder.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the producer (after its current chunk) and release the folder."""
        if self._producer is not None:
            self._producer.stop()
        if self._thread is not None:
            self._thread.join()
        self._lock.release()

    # what is committed ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        progress = read_progress(self.folder)
        if progress is None:
            return
        self._committed = int(progress.get("tokens", 0))
        self._final = bool(progress.get("exhausted")) or self._committed >= self.limit

    def wait(self, tokens: int) -> int:
        """Block until ``min(tokens, limit)`` ids are committed or the source ran out; returns the ids this
        run may read (committed, at most ``limit``)."""
        need = min(tokens, self.limit)
        while True:
            if self._committed >= need or self._final:
                return min(self._committed, self.limit)
            self._refresh()
            if self._committed >= need or self._final:
                continue
            if self._error is not None:
                raise self._error
            self._maybe_produce()
            time.sleep(self.poll_s)

    @property
    def name(self) -> str:
        return f"{self.folder.name}[:{self.limit}]"

    @property
    def final(self) -> int:
        """All the ids of this run (waits for the producer to reach the limit or run out)."""
        return self.wait(self.limit)


class GrowingWindows(MappedWindows):
    """:class:`~sn29_growth.train.data.MappedWindows` over a growing folder: epoch 0 in block order (see
    the module docstring); each read waits for the ids it reads to be committed."""

    def __init__(self, tokens: GrowingTokens, seq_len: int, seed: int, block: int = SHUFFLE_BLOCK) -> None:
        self.source, self.tokens = tokens, tokens
        self.seq_len, self.seed, self.block = seq_len, seed, block
        self.max_count = max(0, (tokens.limit - 1) // seq_len)
        self._count: int | None = None
        self._code = DTYPES[tokens.dtype]
        self._itemsize = np.dtype(self._code).itemsize
        self._path = tokens.folder / DATA
        self._map = None
        self._ids: np.ndarray | None = None
        self._orders: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def count(self) -> int:
        """Windows of the run (known once the producer reached the limit or the source ran out)."""
        if self._count is None:
            self._count = max(0, (self.tokens.final - 1) // self.seq_len)
        return self._count

    def _has_windows(self, n: int) -> bool:
        """Whether the run has at least ``n`` windows (waits only for the ids they need)."""
        if n > self.max_count:
            return False
        return self.tokens.wait(n * self.seq_len + 1) >= n * self.seq_len + 1

    def window_index(self, epoch: int, i: int) -> int:
        if epoch > 0:
            return super().window_index(epoch, i)
        k, offset = divmod(i, self.block)
        if self._has_windows((k + 1) * self.block):
            return k * self.block + int(self._order(0, k, self.block)[offset])
        full = self.count // self.block
        size = self.block if k < full else self.count - full * self.block
        return k * self.block + int(self._order(0, k, size)[offset])

    def _next(self, position: DataPosition, count: int) -> DataPosition:
        if self._has_windows(position.cursor + count):
            return position
        return super()._next(position, count)

    def _read(self, indices) -> torch.Tensor:
        if indices:
            self.tokens.wait((max(indices) + 1) * self.seq_len + 1)
        return super()._read(indices)

    def close(self) -> None:
        self.tokens.close()


# --------------------------------------------------------------------------------------- the source


def _slug(spec: str) -> str:
    body = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else Path(spec).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", body).strip("-")[:80] or "data"


class StreamedTokens:
    """``hf://org/name[/config][@split]`` or a folder of text files, tokenized into ``data_dir`` as a run
    reads it (see the module docstring). ``background``: tokenize while training (default) or everything
    first; ``chunk_texts``: texts per commit; ``block``: windows per shuffle block; ``source_options``: the
    Hub source's (``revision``, ``disk_budget``, ``retry``, ...; shards go to ``data_dir/shards`` unless
    ``cache_dir`` says otherwise)."""

    streamed = True
    tokenizer_fingerprint = None  # the folder is keyed by the model's own tokenizer fingerprint

    def __init__(
        self,
        spec: str,
        data_dir: str | os.PathLike,
        *,
        text_column: str = "text",
        background: bool = True,
        chunk_texts: int = CHUNK_TEXTS,
        block: int = SHUFFLE_BLOCK,
        **source_options: Any,
    ) -> None:
        self.spec = spec if spec.startswith(HUB_PREFIX) else str(Path(spec).resolve())
        self.data_dir = Path(data_dir)
        self.text_column, self.background = text_column, background
        self.chunk_texts, self.block = chunk_texts, block
        self.source_options = {"cache_dir": self.data_dir / "shards", **source_options}
        self._source_key = open_source(self.spec, **self.source_options).key

    @property
    def name(self) -> str:
        return f"stream:{self.spec}"

    def texts(self, epoch: int):
        raise ValueError(f"{self.name}: tokenized into a prepared folder, not read as texts")

    def key(self, tokenizer) -> dict[str, Any]:
        from sn29_growth.eval.tokenize import tokenizer_fingerprint

        return {
            "source_key": self._source_key,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "text_column": self.text_column,
        }

    def folder(self, tokenizer) -> Path:
        """The prepared folder of this source and tokenizer."""
        digest = hashlib.sha256(json.dumps(self.key(tokenizer), sort_keys=True).encode()).hexdigest()[:16]
        return self.data_dir / f"{_slug(self.spec)}-{digest}"

    def open_windows(
        self, tokenizer_dir: str | os.PathLike, tokenizer, seq_len: int, seed: int, tokens: int
    ) -> GrowingWindows:
        """The windows of a run reading the first ``tokens`` ids (prepared now or in the background)."""
        folder = self.folder(tokenizer)
        key = self.key(tokenizer)

        def make() -> Producer:
            return Producer(
                folder,
                self.spec,
                key,
                Path(tokenizer_dir),
                tokenizer,
                tokens,
                text_column=self.text_column,
                chunk_texts=self.chunk_texts,
                source_options=self.source_options,
            )

        dtype = make().dtype
        growing = GrowingTokens(folder, tokens, dtype, make, background=self.background)
        return GrowingWindows(growing, seq_len, seed, self.block)
