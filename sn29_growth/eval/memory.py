"""The memory limit of an evaluation worker: a hostile model costs its own worker, never the host.

The worker process (and the tokenizer worker it starts, which inherits the limit) gets an
``RLIMIT_DATA`` sized from the model's bytes: :data:`BYTES_PER_MODEL_BYTE` times the folder's bytes plus
:data:`MARGIN_BYTES`, never below :data:`MEMORY_FLOOR_BYTES`. An allocation beyond it fails inside the
worker — Python raises ``MemoryError`` — and the model's row is a rejection naming the limit.

Applied on CPU only: CUDA's driver maps large private address ranges of its own, which a data limit
would count against the model. ``$SN29_WORKER_MEMORY_LIMIT`` (bytes; 0: none) overrides the computed
limit on any device. Where the platform has no ``resource`` module nothing is limited.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

MEMORY_ENV = "SN29_WORKER_MEMORY_LIMIT"
MEMORY_FLOOR_BYTES = 8 << 30
"""Enough for torch, the tokenizer stack, bounded tokenizer files and a small model's evaluation."""
BYTES_PER_MODEL_BYTE = 4
"""CPU evaluation runs in fp32: bf16 weights take twice their bytes, and loading holds a second copy."""
MARGIN_BYTES = 4 << 30
"""Activations, the loss engine's buffers and the libraries themselves."""


def worker_memory_limit(model_bytes: int, device: str) -> int | None:
    """The data limit for a worker evaluating a model of ``model_bytes`` on ``device`` (None: none)."""
    if not device.startswith("cpu"):
        return None
    return max(MEMORY_FLOOR_BYTES, BYTES_PER_MODEL_BYTE * model_bytes + MARGIN_BYTES)


def folder_bytes(paths: Iterable[str | os.PathLike]) -> int:
    """Bytes of the regular files at the top of each model folder."""
    total = 0
    for path in paths:
        root = Path(path)
        if root.is_dir():
            total += sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    return total


def request_memory_limit(request: dict) -> int | None:
    """The limit for a worker request: ``$SN29_WORKER_MEMORY_LIMIT`` when set, else from its models."""
    override = os.environ.get(MEMORY_ENV)
    if override:
        return int(override) or None
    paths = [m["path"] for m in request.get("models") or () if isinstance(m, dict) and "path" in m]
    return worker_memory_limit(folder_bytes(paths), str(request.get("device") or "cpu"))


def apply_memory_limit(limit: int | None) -> int | None:
    """Set this process's ``RLIMIT_DATA`` soft limit to ``limit`` bytes (never above the hard limit);
    returns what is now in force, None when nothing is limited."""
    try:
        import resource
    except ImportError:
        return None
    if limit is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    return current_memory_limit()


def current_memory_limit() -> int | None:
    """This process's ``RLIMIT_DATA`` soft limit in bytes, None when unlimited."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def describe_limit() -> str:
    limit = current_memory_limit()
    if limit is None:
        return "no memory limit is set"
    return f"the worker's memory limit of {limit / (1 << 30):.1f} GiB"


def out_of_memory_reason() -> str:
    """The rejection of a model whose evaluation ran out of memory."""
    return f"out of memory ({describe_limit()})"


def is_out_of_memory(error: BaseException) -> bool:
    """A ``MemoryError``, or torch's or a tokenizer worker's report of a failed allocation."""
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "MemoryError" in text
