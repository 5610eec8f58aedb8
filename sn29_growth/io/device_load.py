"""Load a checked safetensors checkpoint straight onto its device, one tensor at a time.

The model is built without weights (parameters on the meta device; buffers such as the rotary
``inv_freq`` computed as usual), then each shard is opened with ``safe_open(..., device=...)`` and its
tensors are cast to the target dtype and put in place of the empty parameters. A model therefore
never exists as a whole on the CPU before it reaches the GPU, and the CPU holds at most one tensor in
flight. Tied weights are tied again at the end, so ``lm_head`` shares the input embedding exactly as
``from_pretrained`` makes it.

The caller has already checked the tensor table against the config (every expected tensor present
by name and shape, nothing else); this module still refuses an unknown or misshapen tensor and any
parameter left without a value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class DirectLoadError(RuntimeError):
    """A checkpoint that does not fill the model it describes; the message names the tensor."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``cuda`` → ``cuda:<current>``: safetensors needs an explicit device index."""
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


def fill_from_shards(
    model: torch.nn.Module, files: list[Path], *, dtype: torch.dtype, device: str | torch.device
) -> None:
    """Read every tensor of ``files`` onto ``device`` (floating tensors cast to ``dtype``) into ``model``."""
    from safetensors import safe_open

    dev = resolve_device(device)
    for path in files:
        with safe_open(os.fspath(path), framework="pt", device=str(dev)) as f:
            for name in f.keys():
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and tensor.dtype != dtype:
                    tensor = tensor.to(dtype)
                _place(model, name, tensor, path)
                del tensor


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
