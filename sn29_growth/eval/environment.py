"""Failures of the host, not of the model being evaluated.

No CUDA where CUDA was asked for, a CUDA error, the device running out of memory on a model within the
competition's limits, a full disk, or an evaluation worker that could not start: none of these says
anything about the miner's upload. Such a failure raises :class:`EnvironmentFailure` instead of becoming
the model's row, so that the validator abandons the step without blaming anyone (see
:mod:`sn29_growth.validator.runner`) and ``sn29 evaluate`` stops with the cause.

A host *memory* error is not one of them: a hostile tokenizer can exhaust the worker's memory limit on
purpose, so that stays the model's failure.
"""

from __future__ import annotations

import errno

CUDA_MARKERS = (
    "cuda error",
    "cuda driver",
    "cudnn_status",
    "cublas_status",
    "nccl error",
    "no cuda gpus are available",
    "torch not compiled with cuda",
    "found no nvidia driver",
    "cuda-capable device",
    "cuda is not available",
    "invalid device ordinal",
)
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class EnvironmentFailure(RuntimeError):
    """The evaluation failed because of the host (the message names the cause), not the model."""


def environment_cause(error: BaseException) -> str | None:
    """Why ``error`` (or an exception it was raised from) is the host's fault, or None when it is not."""
    import torch

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EnvironmentFailure):
            return str(current)
        if isinstance(current, torch.OutOfMemoryError):
            return f"the device ran out of memory: {_first_line(current)}"
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            return f"disk full: {_first_line(current)}"
        text = str(current).lower()
        if isinstance(current, RuntimeError | AssertionError) and any(m in text for m in CUDA_MARKERS):
            return f"CUDA: {_first_line(current)}"
        current = current.__cause__ or current.__context__
    return None


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot evaluate here (one line), or None when it can."""
    import torch

    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        built = (
            "built without CUDA"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda}, no GPU visible"
        )
        return (
            f"device {device}: CUDA is not available (torch {torch.__version__}, {built}); use --device cpu"
        )
    index = device.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        return f"device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"
