"""Training text → packed token windows, with a position that a checkpoint can save and restore.

A source is anything with a ``name`` and ``texts(epoch) -> Sequence[str]`` (:class:`TextSource`):

- :class:`CorpusTexts` — the embedded corpus (its train part for training, held-out for validation);
- :class:`FileTexts` — a ``.txt`` file (one text per non-empty line) or ``.jsonl`` (a ``text`` field);
- :class:`SampledTexts` — adapts any sample source with ``samples(n, seed)`` (for instance the
  FineWeb-edu source of :mod:`sn29_growth.eval.data`): epoch ``e`` draws ``n`` samples with seed
  ``seed + e``, so every epoch brings new rows and a given epoch always the same ones.

Packing: the epoch's texts are tokenized with the model's tokenizer (its default special tokens), EOS is
appended to each, and the concatenated stream is cut into windows of ``seq_len + 1`` tokens that
overlap by one (each window predicts ``seq_len`` tokens; every token is predicted once). Windows cross
document boundaries (no attention masking between documents). The windows of an epoch are shuffled
with a generator seeded by ``(seed, epoch)``; an optimizer step takes the next ``global_batch`` of them
and the remainder of an epoch that cannot fill a step is dropped. The position is ``(epoch, cursor)``.
With several processes every rank builds the same global batch and takes its contiguous share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sn29_growth.corpus import load_corpus


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


def source_from_arg(arg: str) -> TextSource:
    """``local`` → the embedded corpus's train part; anything else is a path to a text/jsonl file."""
    if arg == "local":
        return CorpusTexts("train")
    path = Path(arg)
    if not path.is_file():
        raise FileNotFoundError(f"--data {arg}: neither 'local' nor an existing file")
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


def rank_share(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (its size must divide evenly)."""
    per_rank = batch.shape[0] // world_size
    if per_rank * world_size != batch.shape[0]:
        raise ValueError(f"batch: {batch.shape[0]} windows do not split over {world_size} ranks")
    return batch[rank * per_rank : (rank + 1) * per_rank]
