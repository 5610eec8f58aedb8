"""Training text → packed token windows, with a position that a checkpoint can save and restore.

A source is anything with a ``name`` and ``texts(epoch) -> Sequence[str]`` (:class:`TextSource`):

- :class:`CorpusTexts` — the embedded corpus (its train part for training, held-out for validation);
- :class:`FileTexts` — a ``.txt`` file (one text per non-empty line) or ``.jsonl`` (a ``text`` field);
- :class:`SampledTexts` — adapts any sample source with ``samples(n, seed)`` (for instance the
  FineWeb-edu source of :mod:`sn29_growth.eval.data`): epoch ``e`` draws ``n`` samples with seed
  ``seed + e``, so every epoch brings new rows and a given epoch always the same ones.

Text sources are packed a whole epoch at a time (:class:`PackedStream`). A folder that ``sn29 data``
prepared (:class:`PreparedTokens`: token ids tokenized ahead, see :mod:`sn29_growth.train.prepare`) is read
in place instead (:class:`MappedWindows`): its windows are sliced out of the memory-mapped ids as each step
asks for them, and each process reads only its own share of a step. A Hub dataset (``hf://…``) or a
folder of text files is tokenized into such a folder while the run trains
(:class:`~sn29_growth.train.stream.StreamedTokens`, read by its :class:`~sn29_growth.train.stream.GrowingWindows`).

Packing: the epoch's texts are tokenized with the model's tokenizer (its default special tokens), EOS is
appended to each, and the concatenated stream is cut into windows of ``seq_len + 1`` tokens that
overlap by one (each window predicts ``seq_len`` tokens; every token is predicted once). Windows cross
document boundaries (no attention masking between documents). The windows of an epoch are shuffled
with a generator seeded by ``(seed, epoch)``; an optimizer step takes the next ``global_batch`` of them
and the remainder of an epoch that cannot fill a step is dropped. The position is ``(epoch, cursor)``.
With several processes every rank takes its contiguous share of the same global batch.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sn29_growth.corpus import load_corpus
from sn29_growth.train.tokens import DTYPES, MANIFEST, TokenCorpus, open_token_corpus


class TextSource(Protocol):
    """A deterministic supply of training texts, possibly different per epoch."""

    name: str

    def texts(self, epoch: int) -> Sequence[str]: ...


@dataclass(frozen=True)
class CorpusTexts:
    """The embedded corpus: ``split`` is ``train`` (training) or ``held_out`` (validation)."""

    split: str = "train"

    def __post_init__(self) -> None:
        if self.split not in ("train", "held_out"):
            raise ValueError(f"split: must be 'train' or 'held_out', got {self.split!r}")

    @property
    def name(self) -> str:
        return f"local:{self.split}"

    def texts(self, epoch: int) -> Sequence[str]:
        return [s.text for s in load_corpus().split(self.split)]


@dataclass(frozen=True)
class FileTexts:
    """A user file: ``.jsonl``/``.ndjson`` (objects with a string ``text``) or text (one per line)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    def texts(self, epoch: int) -> Sequence[str]:
        from sn29_growth.eval.data import DataSourceError, FileSource  # the one reader of user text files

        try:
            return [sample.text for sample in FileSource(self.path).read()]
        except DataSourceError as e:
            raise ValueError(str(e)) from e


@dataclass(frozen=True)
class SampledTexts:
    """``n`` texts per epoch from a sample source (``source.samples(n, seed) -> [Sample]``)."""

    source: Any
    n: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not hasattr(self.source, "samples"):
            raise ValueError("source: must have a samples(n, seed) method")
        if self.n < 1:
            raise ValueError(f"n: must be >= 1, got {self.n}")

    @property
    def name(self) -> str:
        return (
            f"sampled:{getattr(self.source, 'name', type(self.source).__name__)}:n={self.n}:seed={self.seed}"
        )

    def texts(self, epoch: int) -> Sequence[str]:
        return [s.text for s in self.source.samples(self.n, self.seed + epoch)]


class PreparedTokens:
    """A folder of token ids prepared ahead (``sn29 data``): its ``train`` split, read memory-mapped.

    ``tokenizer_fingerprint`` is the fingerprint of the tokenizer that made the ids; a run checks that its
    model's tokenizer has the same one."""

    split = "train"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.corpus: TokenCorpus = open_token_corpus(folder)
        if self.split not in self.corpus.splits:
            raise ValueError(f"{folder}: the prepared folder has no {self.split!r} split")
        prepared = self.corpus.manifest.get("prepared")
        self.tokenizer_fingerprint: str | None = (
            prepared.get("tokenizer_fingerprint") if isinstance(prepared, dict) else None
        )

    @property
    def folder(self) -> Path:
        return self.corpus.folder

    @property
    def tokens(self) -> int:
        return self.corpus.splits[self.split].tokens

    @property
    def name(self) -> str:
        digest = self.corpus.splits[self.split].sha256[:12]
        return f"prepared:{self.folder.name}:{self.tokens}:{digest}"

    def texts(self, epoch: int) -> Sequence[str]:
        raise ValueError(f"{self.name}: a prepared folder holds token ids, not texts")

    def token_ids(self, epoch: int) -> torch.Tensor:
        """All ids at once (int32): for small folders only (validation); training reads windows."""
        return torch.from_numpy(np.asarray(self.corpus.tokens(self.split), dtype=np.int32))


def is_prepared_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def source_from_arg(arg: str, data_dir: str | os.PathLike | None = None, **options: Any) -> TextSource:
    """``local`` → the embedded corpus's train part; a folder prepared by ``sn29 data`` → its token ids;
    ``hf://org/name[/config][@split]``, a folder of ``.parquet``/``.jsonl``/``.txt`` files or a ``.parquet``
    file → tokenized into a prepared folder under ``data_dir`` while the run trains
    (:class:`~sn29_growth.train.stream.StreamedTokens`, ``options`` go to it); any other file is a
    ``.txt``/``.jsonl`` file tokenized whole at each epoch."""
    from sn29_growth.train.stream import StreamedTokens, is_text_folder

    if arg == "local":
        return CorpusTexts("train")
    path = Path(arg)
    streamed = arg.startswith("hf://") or (
        not is_prepared_folder(path)
        and (is_text_folder(path) or (path.is_file() and path.suffix == ".parquet"))
    )
    if streamed:
        if data_dir is None:
            raise ValueError(f"--data {arg}: tokenized while training into a data folder, and none was given")
        return StreamedTokens(arg, data_dir, **options)
    if is_prepared_folder(path):
        return PreparedTokens(path)
    if path.is_dir():
        raise FileNotFoundError(
            f"--data {arg}: a folder with neither {MANIFEST} nor .parquet/.jsonl/.txt files; prepare one with "
            f"`sn29 data SOURCE {arg} --tokenizer MODEL_DIR`"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"--data {arg}: neither 'local', hf://…, a prepared folder, a folder of text files nor an existing "
            "file"
        )
    return FileTexts(path)


def token_stream(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """All texts tokenized (default special tokens) with EOS after each, concatenated (int32)."""
    if not texts:
        raise ValueError("texts: empty")
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for row in tokenizer(list(texts))["input_ids"]:
        ids.extend(row)
        if eos is not None:
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


def source_tokens(tokenizer, source: TextSource, epoch: int) -> torch.Tensor:
    """The token stream of ``source``'s epoch: its own ids when it has ``token_ids(epoch)`` (a token
    corpus slice), else its texts tokenized by :func:`token_stream`."""
    if hasattr(source, "token_ids"):
        return source.token_ids(epoch)
    return token_stream(tokenizer, source.texts(epoch))


def pack(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Windows ``[n, seq_len + 1]`` of ``stream`` with stride ``seq_len`` (the tail is dropped)."""
    n = (stream.numel() - 1) // seq_len
    if n < 1:
        return stream.new_empty((0, seq_len + 1))
    return stream.unfold(0, seq_len + 1, seq_len)[:n].clone()


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread over ``range(n)`` (all of them when ``k`` is 0 or ≥ n)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return [i * n // k for i in range(k)]


def validation_windows(tokenizer, source: TextSource, seq_len: int, max_windows: int) -> torch.Tensor:
    windows = pack(source_tokens(tokenizer, source, 0), seq_len)
    return windows[evenly_spaced(windows.shape[0], max_windows)].long()


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    cursor: int = 0  # windows of this epoch already consumed

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPosition:
        return cls(int(d["epoch"]), int(d["cursor"]))


class PackedStream:
    """Shuffled packed windows of ``source``, one epoch cached at a time."""

    def __init__(self, source: TextSource, tokenizer, seq_len: int, seed: int) -> None:
        self.source = source
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.seed = seed
        self._epoch: int | None = None
        self._windows: torch.Tensor | None = None

    def epoch_windows(self, epoch: int) -> torch.Tensor:
        if self._epoch != epoch:
            windows = pack(source_tokens(self.tokenizer, self.source, epoch), self.seq_len)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._windows = windows[torch.randperm(windows.shape[0], generator=gen)]
            self._epoch = epoch
        assert self._windows is not None
        return self._windows

    def take(self, position: DataPosition, count: int) -> tuple[torch.Tensor, DataPosition]:
        """The next ``count`` windows (int64) and the position after them."""
        windows = self.epoch_windows(position.epoch)
        if position.cursor + count > windows.shape[0]:
            position = DataPosition(position.epoch + 1, 0)
            windows = self.epoch_windows(position.epoch)
            if count > windows.shape[0]:
                raise ValueError(
                    f"batch: one step needs {count} windows of {self.seq_len} tokens but epoch "
                    f"{position.epoch} of {self.source.name} has only {windows.shape[0]}; lower "
                    "batch_size/grad_accum/seq_len or add data"
                )
        batch = windows[position.cursor : position.cursor + count].long()
        return batch, DataPosition(position.epoch, position.cursor + count)

    def take_share(
        self, position: DataPosition, count: int, rank: int, world_size: int
    ) -> tuple[torch.Tensor, DataPosition]:
        """This rank's share of the next ``count`` windows and the position after all of them."""
        batch, position = self.take(position, count)
        return rank_share(batch, rank, world_size), position


SHUFFLE_BLOCK = 1024
"""Windows per shuffle block of :class:`MappedWindows`."""


class MappedWindows:
    """Windows of ``seq_len + 1`` ids of a prepared folder, sliced from the memory-mapped file on demand.

    The stream is cut as :func:`pack` cuts it (stride ``seq_len``, the tail dropped). Each epoch visits every
    window once in a shuffled order that needs no table of all windows: the full blocks of
    :data:`SHUFFLE_BLOCK` consecutive windows are visited in an order drawn from ``(seed, epoch)``, the
    windows inside each block in an order drawn from ``(seed, epoch, block)``, and the short last block
    (if any) comes last. The order is a pure function of (seed, epoch, window count), so a position
    ``(epoch, cursor)`` names the same windows in every run. Pages read are released from this process
    after each read (resident memory stays flat however large the folder is).
    """

    def __init__(self, source: PreparedTokens, seq_len: int, seed: int, block: int = SHUFFLE_BLOCK) -> None:
        self.source, self.seq_len, self.seed, self.block = source, seq_len, seed, block
        split = source.corpus.splits[source.split]
        self.count = max(0, (split.tokens - 1) // seq_len)
        self._code = DTYPES[source.corpus.dtype]
        self._itemsize = np.dtype(self._code).itemsize
        self._path = source.folder / split.file
        self._map: mmap.mmap | None = None
        self._ids: np.ndarray | None = None
        self._orders: dict[tuple[int, int], torch.Tensor] = {}

    def _open(self, tokens: int = 0) -> np.ndarray:
        """The ids, mapped again when the file has grown past the map and ``tokens`` are wanted."""
        if self._ids is None or self._ids.size < tokens:
            self._ids = None
            with open(self._path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                self._map.madvise(mmap.MADV_RANDOM)
            self._ids = np.frombuffer(self._map, dtype=self._code)
        return self._ids

    def _generator(self, *key: int) -> torch.Generator:
        seed = self.seed * 1_000_003 + key[0]
        for k in key[1:]:
            seed = seed * 1_000_033 + k + 1
        return torch.Generator().manual_seed(seed % (1 << 63))

    def _order(self, epoch: int, block: int, size: int | None = None) -> torch.Tensor:
        """Block ``-1``: the order of the full blocks; else the order inside block ``block`` (of ``size``
        windows: by default as the window count says)."""
        key = (epoch, block)
        if key not in self._orders:
            if size is None:
                full = self.count // self.block
                if block < 0:
                    size = full
                else:
                    size = self.block if block < full else self.count - full * self.block
            if len(self._orders) > 64:
                self._orders = {k: v for k, v in self._orders.items() if k[1] < 0}
            gen = self._generator(epoch) if block < 0 else self._generator(epoch, block)
            self._orders[key] = torch.randperm(size, generator=gen)
        return self._orders[key]

    def window_index(self, epoch: int, i: int) -> int:
        """The window read at place ``i`` of epoch ``epoch``."""
        full = self.count // self.block
        k, offset = divmod(i, self.block)
        block = int(self._order(epoch, -1)[k]) if k < full else full
        return block * self.block + int(self._order(epoch, block)[offset])

    def window_indices(self, position: DataPosition, count: int) -> list[int]:
        return [self.window_index(position.epoch, position.cursor + i) for i in range(count)]

    def _read(self, indices: Sequence[int]) -> torch.Tensor:
        width = self.seq_len + 1
        ids = self._open((max(indices) + 1) * self.seq_len + 1 if len(indices) else 0)
        out = np.empty((len(indices), width), dtype=np.int64)
        page = mmap.PAGESIZE
        for row, w in enumerate(indices):
            start = w * self.seq_len
            out[row] = ids[start : start + width]
            if hasattr(mmap, "MADV_DONTNEED"):
                first = start * self._itemsize // page * page
                end = (start + width) * self._itemsize
                self._map.madvise(mmap.MADV_DONTNEED, first, end - first)
        return torch.from_numpy(out)

    def _next(self, position: DataPosition, count: int) -> DataPosition:
        if position.cursor + count > self.count:
            position = DataPosition(position.epoch + 1, 0)
            if count > self.count:
                raise ValueError(
                    f"batch: one step needs {count} windows of {self.seq_len} tokens but {self.source.name} "
                    f"has only {self.count}; lower batch_size/grad_accum/seq_len or prepare more tokens"
                )
        return position

    def take(self, position: DataPosition, count: int) -> tuple[torch.Tensor, DataPosition]:
        """The next ``count`` windows (int64) and the position after them."""
        return self.take_share(position, count, 0, 1)

    def take_share(
        self, position: DataPosition, count: int, rank: int, world_size: int
    ) -> tuple[torch.Tensor, DataPosition]:
        """This rank's contiguous share of the next ``count`` windows (only those are read) and the
        position after all of them."""
        per_rank = count // world_size
        if per_rank * world_size != count:
            raise ValueError(f"batch: {count} windows do not split over {world_size} ranks")
        position = self._next(position, count)
        mine = DataPosition(position.epoch, position.cursor + rank * per_rank)
        batch = self._read(self.window_indices(mine, per_rank))
        return batch, DataPosition(position.epoch, position.cursor + count)


def window_stream(source: TextSource, tokenizer, seq_len: int, seed: int) -> PackedStream | MappedWindows:
    """The training windows of ``source``: read in place from a prepared folder, else packed per epoch."""
    if isinstance(source, PreparedTokens):
        return MappedWindows(source, seq_len, seed)
    return PackedStream(source, tokenizer, seq_len, seed)


def rank_share(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (its size must divide evenly)."""
    per_rank = batch.shape[0] // world_size
    if per_rank * world_size != batch.shape[0]:
        raise ValueError(f"batch: {batch.shape[0]} windows do not split over {world_size} ranks")
    return batch[rank * per_rank : (rank + 1) * per_rank]
