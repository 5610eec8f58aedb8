"""Streaming safetensors IO: a lazy reader with one shard open, and a size-capped writer.

The format: 8 bytes little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}``
(offsets relative to the end of the header, contiguous, covering the data), then the raw bytes.

Reading parses every header up front (a few KB per shard: all errors surface before any work) and
reads one tensor at a time with ``readinto``: no mmap, so memory holds only the tensors in hand.
Writing knows every output tensor's name, dtype and shape before the first byte (growth plans them),
so each shard's header is written first and tensors are streamed into it one at a time.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from sn29_growth.checkpoint import CheckpointFileError, JsonLimits, parse_json_bounded, read_json_object

log = logging.getLogger(__name__)

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024
HEADER_LIMITS = JsonLimits(max_bytes=MAX_HEADER_BYTES, max_depth=8, max_values=20_000_000)
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}


class CheckpointError(ValueError):
    """A missing, corrupt or inconsistent checkpoint file; the message names the file."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int
    file: Path

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors (in file order) and metadata of one safetensors file, validated against its size."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing safetensors shard")
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: corrupt safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path}: corrupt safetensors header (length {n} for a {size}-byte file)")
        try:
            header = parse_json_bounded(f.read(n), HEADER_LIMITS, "header")
        except CheckpointFileError as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    infos: list[TensorInfo] = []
    for name, entry in header.items():
        try:
            dtype, shape, (a, b) = (
                entry["dtype"],
                tuple(int(s) for s in entry["shape"]),
                entry["data_offsets"],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r}") from e
        if dtype not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        info = TensorInfo(name, dtype, shape, base + int(a), base + int(b), path)
        if not 0 <= a <= b or info.nbytes != info.numel * DTYPES[dtype].itemsize:
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r} (bad offsets)")
        if info.end > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file ({name!r} ends at byte {info.end}, file has {size})"
            )
        infos.append(info)
    infos.sort(key=lambda i: i.start)
    return {i.name: i for i in infos}, dict(metadata)


def _read_into(f: BinaryIO, info: TensorInfo) -> torch.Tensor:
    out = torch.empty(info.shape, dtype=info.torch_dtype)
    if info.nbytes:
        f.seek(info.start)
        view = memoryview(out.reshape(-1).view(torch.uint8).numpy())
        got = f.readinto(view)
        if got != info.nbytes:
            raise CheckpointError(f"{info.file}: truncated while reading {info.name!r}")
    return out


class SafetensorsShard:
    """One open shard: ``names`` in file order, ``read(name)`` one tensor at a time."""

    def __init__(self, path: str | os.PathLike, infos: dict[str, TensorInfo] | None = None) -> None:
        self.path = Path(path)
        self.infos = infos if infos is not None else read_header(self.path)[0]
        self._f: BinaryIO | None = self.path.open("rb")

    @property
    def names(self) -> list[str]:
        return list(self.infos)

    def read(self, name: str) -> torch.Tensor:
        if self._f is None:
            raise CheckpointError(f"{self.path}: shard is closed")
        try:
            info = self.infos[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor {name!r}") from None
        return _read_into(self._f, info)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> SafetensorsShard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShardedCheckpoint:
    """The safetensors weights of a checkpoint directory (index-described or a lone file), read lazily."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        index = self.directory / INDEX_NAME
        if index.is_file():
            try:
                weight_map = read_json_object(index)["weight_map"]
                files = sorted(set(weight_map.values()))
            except (CheckpointFileError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{index}: corrupt index ({e})") from e
            if not all(isinstance(f, str) and f.endswith(".safetensors") and "/" not in f for f in files):
                raise CheckpointError(f"{index}: corrupt index (shard names must be top-level *.safetensors)")
            for name in files:
                if not (self.directory / name).is_file():
                    raise CheckpointError(f"{self.directory / name}: missing shard (named in {INDEX_NAME})")
        else:
            weight_map = None
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{self.directory}: no *.safetensors weights")
        self.files = [self.directory / f for f in files]
        self.shards: dict[Path, dict[str, TensorInfo]] = {}
        self.infos: dict[str, TensorInfo] = {}
        for path in self.files:
            infos, _ = read_header(path)
            self.shards[path] = infos
            for name, info in infos.items():
                if name in self.infos:
                    raise CheckpointError(f"{path}: tensor {name!r} also in {self.infos[name].file.name}")
                self.infos[name] = info
        if weight_map is not None:
            for name, file in weight_map.items():
                info = self.infos.get(name)
                if info is None or info.file.name != file:
                    raise CheckpointError(
                        f"{self.directory / file}: index names {name!r} but the shard lacks it"
                    )

    @property
    def total_bytes(self) -> int:
        return sum(i.nbytes for i in self.infos.values())

    def iter_shards(self) -> Iterator[SafetensorsShard]:
        """Each shard in turn, opened when reached and closed before the next one opens."""
        for path in self.files:
            with SafetensorsShard(path, self.shards[path]) as shard:
                yield shard


# --- writing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


def layout_shards(tensors: Sequence[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Consecutive groups of at most ``max_shard_bytes`` (a larger tensor gets a shard of its own)."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_NAME]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def _header_bytes(group: Sequence[PlannedTensor], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for t in group:
        header[t.name] = {
            "dtype": CODES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


class ShardWriter:
    """Write planned tensors, in order, into size-capped shards named like Hugging Face's, plus the index.

    With ``background=True`` a writer thread does the file IO while the caller computes the next tensor
    (at most one tensor waits in the queue, so memory stays bounded).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        tensors: Sequence[PlannedTensor],
        max_shard_bytes: int,
        metadata: dict[str, str] | None = None,
        *,
        background: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.groups = layout_shards(list(tensors), max_shard_bytes)
        self.files = shard_names(len(self.groups))
        self.metadata = {"format": "pt", **(metadata or {})}
        self._queue = [(gi, t) for gi, g in enumerate(self.groups) for t in g]
        self._pos = 0
        self._group = -1
        self._f: BinaryIO | None = None
        self._jobs: queue.Queue | None = queue.Queue(maxsize=1) if background else None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if self._jobs is not None:
            self._thread = threading.Thread(target=self._work, name="shard-writer", daemon=True)
            self._thread.start()

    def _open(self, gi: int) -> None:
        self._close_file()
        self._group = gi
        self._f = (self.directory / self.files[gi]).open("wb")
        self._f.write(_header_bytes(self.groups[gi], self.metadata))

    def _close_file(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def _write(self, gi: int, planned: PlannedTensor, tensor: torch.Tensor) -> None:
        if gi != self._group:
            self._open(gi)
        assert self._f is not None
        if planned.nbytes:
            self._f.write(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))

    def _work(self) -> None:
        assert self._jobs is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is None:
                try:
                    self._write(*job)
                except BaseException as e:  # reported by the next write() or close()
                    self._error = e

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._pos >= len(self._queue):
            raise ValueError(f"unexpected tensor {name!r}: every planned tensor is written")
        gi, planned = self._queue[self._pos]
        if name != planned.name or tensor.dtype != planned.dtype or tuple(tensor.shape) != planned.shape:
            raise ValueError(
                f"tensor {name!r} {tuple(tensor.shape)} {tensor.dtype} does not match the plan's next tensor "
                f"{planned.name!r} {planned.shape} {planned.dtype}"
            )
        self._pos += 1
        if self._jobs is None:
            self._write(gi, planned, tensor)
        else:
            self._raise_pending()
            self._jobs.put((gi, planned, tensor))

    def _join(self) -> None:
        if self._thread is not None and self._jobs is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> dict[str, object] | None:
        """Finish the last shard; write and return the index (None for a single ``model.safetensors``)."""
        self._join()
        self._raise_pending()
        if self._pos != len(self._queue):
            missing = [t.name for _, t in self._queue[self._pos : self._pos + 3]]
            raise ValueError(f"{len(self._queue) - self._pos} planned tensors not written (next: {missing})")
        self._close_file()
        if len(self.files) == 1:
            if not self._queue:
                (self.directory / self.files[0]).write_bytes(_header_bytes([], self.metadata))
            return None
        index = {
            "metadata": {"total_size": sum(t.nbytes for _, t in self._queue)},
            "weight_map": {t.name: self.files[gi] for gi, t in self._queue},
        }
        from sn29_growth.atomic import atomic_write_json

        atomic_write_json(self.directory / INDEX_NAME, index)
        return index

    def abort(self) -> None:
        """Stop writing (after a failure elsewhere); the partial files are the caller's to remove."""
        self._join()
        if self._f is not None:
            self._f.close()
            self._f = None


def save_shards(
    tensors: dict[str, torch.Tensor], directory: str | os.PathLike, max_shard_bytes: int
) -> dict[str, object] | None:
    """Write an in-memory state dict as size-capped shards (+ index) into an existing directory."""
    planned = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    writer = ShardWriter(directory, planned, max_shard_bytes)
    for n, t in tensors.items():
        writer.write(n, t)
    return writer.close()
