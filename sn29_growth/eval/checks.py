"""Model checks: before any weight download (config + file list) and after loading (weights, vocabulary).

Every check returns a reason string (or None) instead of raising, so that a bad model becomes a result
row with a reason and never stops an evaluation.

Before download, from the repository's file list and ``config.json``:

- weights as safetensors only: at least one ``*.safetensors`` file and no pickle-format weights;
- repository bytes ≤ the competition's ``model_size``, and every file a loader may read (config, tokenizer
  files, chat templates) within its own limit (:data:`~sn29_growth.checkpoint.FILE_SIZE_LIMITS`);
- no ``auto_map`` (remote code) and no ``quantization_config`` (other kernels);
- ``architectures`` non-empty, every entry an exact class name in ``model_types``, and exactly the class
  ``model_type`` selects (a GPT-2 config claiming ``LlamaForCausalLM`` is not run as anything);
- a valid ``norm_divisor`` (and only on a model type whose patched classes exist);
- every dimension a bounded integer, and a shape the network's transformers (4.44) can load;
- parameters (counted arithmetically from the tensor table, tied weights once) ≤ ``parameters``.

After load: NaN/inf weights (every sample then scores +inf) and token ids ≥ the embedding rows (rejected).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from sn29_growth.arch import SUPPORTED, bounded_shape
from sn29_growth.checkpoint import CONFIG_FILE, file_size_problem
from sn29_growth.growth.fit import count_params
from sn29_growth.loading import ModelLoadError, check_norm_divisor
from sn29_growth.network.rules import config_findings
from sn29_growth.reasons import quoted

log = logging.getLogger(__name__)

PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def local_files(path: str | os.PathLike) -> dict[str, int]:
    """``{name: size in bytes}`` of the regular files at the top of a model folder (hidden ones skipped).

    A model folder is its top-level files — what transformers loads and what an upload sends; what lies
    in subfolders (``sn29 train``'s ``checkpoints/`` with their optimizer states) is not part of it.
    """
    root = Path(path)
    return {
        p.name: p.stat().st_size for p in sorted(root.iterdir()) if not p.name.startswith(".") and p.is_file()
    }


def check_files(files: Mapping[str, int], competition) -> str | None:
    """Safetensors only, every file within its own size limit, and the repository within ``model_size``."""
    names = list(files)
    pickles = sorted(n for n in names if n.lower().endswith(PICKLE_WEIGHT_SUFFIXES))
    if pickles:
        return f"pickle-format weights in the repository ({', '.join(pickles[:3])}); only safetensors are allowed"
    if not any(n.endswith(".safetensors") for n in names):
        return "no *.safetensors weights"
    if CONFIG_FILE not in names:
        return "no config.json"
    for name, size in files.items():
        problem = file_size_problem(name, size)
        if problem:
            return problem
    total = sum(files.values())
    if total > competition.model_size:
        return f"repository is {total:,} bytes, above the limit of {competition.model_size:,}"
    return None


CODE_KEYS = ("auto_map", "quantization_config")
"""Config keys that change which code runs (remote code, quantized kernels): such a model is never run."""


def check_config(config: Mapping[str, Any], competition) -> str | None:
    """Remote code, model type ⇄ architecture, the network's loadability and the parameter limit.

    Works on the raw ``config.json`` alone and never instantiates anything: every dimension is bounded
    first (:func:`~sn29_growth.arch.bounded_shape`), then parameters are counted arithmetically from the
    architecture's tensor table.
    """
    for key in CODE_KEYS:
        if key in config:
            what = "remote code is never executed" if key == "auto_map" else "it changes the code that runs"
            return f"config has {key} ({what})"
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        return f"config has no architectures list (got {quoted(archs)})"
    wrong = [a for a in archs if a not in competition.model_types]
    if wrong:
        return f"architecture {wrong[0]} is not allowed in {competition.name} ({', '.join(competition.model_types)})"
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        return f"model_type {quoted(model_type)} is not one this validator runs ({', '.join(SUPPORTED)})"
    if archs != [SUPPORTED[model_type]]:
        return (
            f"architectures {quoted(archs)} do not match model_type {quoted(model_type)}, whose class is "
            f"{SUPPORTED[model_type]} (the class that runs is chosen by model_type)"
        )
    try:
        check_norm_divisor(dict(config), "config")
    except ModelLoadError as e:
        return str(e)
    try:
        shape = bounded_shape(dict(config))
    except ValueError as e:
        return f"invalid config: {e}"
    blocking = [f for f in config_findings(dict(config)) if f.blocks_loading]
    if blocking:
        return f"the network's stack cannot load it: {blocking[0].message}"
    n = count_params(shape)
    if n > competition.parameters:
        return f"{n:,} parameters, above the limit of {competition.parameters:,}"
    return None


def precheck(config: Mapping[str, Any], files: Mapping[str, int], competition) -> str | None:
    """All checks that need no weights: :func:`check_files` then :func:`check_config`."""
    return check_files(files, competition) or check_config(config, competition)


def count_parameters_safe(config: Mapping[str, Any]) -> int | None:
    """Parameters of a Llama/Phi3 ``config``, counted arithmetically; None when it is not a valid one."""
    try:
        return count_params(bounded_shape(dict(config)))
    except ValueError:
        return None


def architecture(config: Mapping[str, Any]) -> str | None:
    archs = config.get("architectures")
    return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers holding NaN or inf (checked chunk by chunk, no full copies)."""
    import torch

    bad = []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point() or t.device.type == "meta":
            continue
        flat = t.detach().reshape(-1)
        step = 1 << 24
        if any(not bool(torch.isfinite(flat[i : i + step]).all()) for i in range(0, flat.numel(), step)):
            bad.append(name)
    return bad


def embedding_rows(model: torch.nn.Module) -> int:
    return int(model.get_input_embeddings().weight.shape[0])


def check_vocab(max_token_id: int, model: torch.nn.Module) -> str | None:
    """Reject token ids the model has no embedding row for."""
    rows = embedding_rows(model)
    if max_token_id >= rows:
        return f"token id {max_token_id} is not below the model's {rows} embedding rows"
    return None


def tokenizer_max_id(tokenizer) -> int:
    """The largest id the tokenizer can produce (its vocabulary plus added tokens)."""
    if getattr(tokenizer, "exact", False):
        return tokenizer.max_id
    ids = list(tokenizer.get_vocab().values())
    return max(ids) if ids else -1
