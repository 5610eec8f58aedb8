"""Load a checked safetensors checkpoint straight onto its device, one tensor at a time.

The model is built without weights (parameters on the meta device; buffers such as the rotary
``inv_freq`` computed as usual), then each shard is mapped with ``safe_open`` and its tensors are
copied from the file's pages to the device, cast to the target dtype, by a few threads, and put in
place of the empty parameters. A model therefore never exists as a whole in CPU memory before it
reaches the GPU: the CPU holds only the few tensors in flight. On the CPU a tensor already in the
target dtype stays a view of the mapping (copy-on-write: updating it never touches the file). Tied
weights are tied again at the end, so ``lm_head`` shares the input embedding as ``from_pretrained``
makes it.

The caller has already checked the tensor table against the config (every expected tensor present
by name and shape, nothing else); this module still refuses an unknown or misshapen tensor and any
parameter left without a value.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

LOAD_WORKERS = min(4, os.cpu_count() or 1)
"""Threads that copy tensors to the device (reading file pages is the slow part, and it parallelises)."""


class DirectLoadError(RuntimeError):
    """A checkpoint that does not fill the model it describes; the message names the tensor."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``cuda`` → ``cuda:<current>``: one explicit device for every copy."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def empty_model(config, *, dtype: torch.dtype, attn_implementation: str | None = None) -> torch.nn.Module:
    """The causal LM of ``config`` with every parameter on the meta device (no memory, no init cost)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(dtype=dtype, trust_remote_code=False)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config, **kwargs)


def _place(model: torch.nn.Module, name: str, tensor: torch.Tensor, where: Path) -> None:
    prefix, _, leaf = name.rpartition(".")
    try:
        module = model.get_submodule(prefix) if prefix else model
    except AttributeError:
        raise DirectLoadError(f"{where}: tensor {name!r} names no module of the model") from None
    old = module._parameters.get(leaf)
    if old is None:
        raise DirectLoadError(f"{where}: tensor {name!r} is not a parameter of the model")
    if tuple(old.shape) != tuple(tensor.shape):
        raise DirectLoadError(
            f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(old.shape)}"
        )
    module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=old.requires_grad)


def _materialize(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The tensor on ``device``, floating point cast to ``dtype`` (one copy: file pages → device)."""
    target = dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=device, dtype=target)


def fill_from_shards(
    model: torch.nn.Module,
    files: list[Path],
    *,
    dtype: torch.dtype,
    device: str | torch.device,
    workers: int = LOAD_WORKERS,
) -> None:
    """Read every tensor of ``files`` onto ``device`` (floating tensors cast to ``dtype``) into ``model``.

    ``safe_open`` maps a shard and hands out views of its pages; ``workers`` threads copy (and cast)
    them to the device concurrently, at most ``2 * workers`` tensors in flight, while this thread puts
    each finished tensor in its place, in file order.
    """
    from safetensors import safe_open

    dev = resolve_device(device)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="load") as pool:
        for path in files:
            with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
                pending: deque[tuple[str, Future]] = deque()
                for name in f.keys():
                    pending.append((name, pool.submit(_materialize, f.get_tensor(name), dev, dtype)))
                    while len(pending) > 2 * max(1, workers):
                        done, future = pending.popleft()
                        _place(model, done, future.result(), path)
                while pending:
                    done, future = pending.popleft()
                    _place(model, done, future.result(), path)


def finish(model: torch.nn.Module, device: str | torch.device, where: str) -> torch.nn.Module:
    """Tie shared weights, move the buffers to ``device``, and refuse any parameter still empty."""
    model.tie_weights()
    empty = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if empty:
        raise DirectLoadError(
            f"{where}: {len(empty)} parameters have no tensor in the checkpoint (first: {empty[0]})"
        )
    dev = resolve_device(device)
    for module in model.modules():
        for key, buf in module._buffers.items():
            if buf is not None and buf.device != dev:
                module._buffers[key] = buf.to(dev)
    return model.eval()


def load_direct(
    path: str | os.PathLike,
    config,
    files: list[Path],
    *,
    dtype: torch.dtype,
    device: str | torch.device,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """The model of ``config`` with the weights of ``files`` (safetensors shards), built on ``device``."""
    model = empty_model(config, dtype=dtype, attn_implementation=attn_implementation)
    fill_from_shards(model, files, dtype=dtype, device=device)
    return finish(model, device, os.fspath(path))
