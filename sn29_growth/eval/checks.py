"""Model checks: before any weight download (config + file list) and after loading (weights, vocabulary).

Every check returns a reason string (or None) instead of raising, so that a bad model becomes a result
row with a reason and never stops an evaluation.

Before download, from the repository's file list and ``config.json``:

- weights as safetensors only: at least one ``*.safetensors`` file and no pickle-format weights;
- repository bytes ≤ the competition's ``model_size``;
- no ``auto_map`` (remote code is never executed);
- ``architectures`` non-empty and every entry an exact class name in ``model_types``;
- a valid ``norm_divisor`` (and only on a model type whose patched classes exist);
- parameters (counted on the meta device, tied weights once) ≤ ``parameters``.

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

from sn29_growth.loading import ModelLoadError, check_norm_divisor

log = logging.getLogger(__name__)

PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def local_files(path: str | os.PathLike) -> dict[str, int]:
    """``{relative path: size in bytes}`` of every regular file under ``path`` (hidden entries skipped)."""
    root = Path(path)
    out: dict[str, int] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out[rel.as_posix()] = p.stat().st_size
    return out


def check_files(files: Mapping[str, int], competition) -> str | None:
    """Safetensors only, and the repository within ``model_size`` bytes."""
    names = list(files)
    pickles = sorted(n for n in names if n.lower().endswith(PICKLE_WEIGHT_SUFFIXES))
    if pickles:
        return f"pickle-format weights in the repository ({', '.join(pickles[:3])}); only safetensors are allowed"
    if not any(n.endswith(".safetensors") for n in names):
        return "no *.safetensors weights"
    if "config.json" not in names:
        return "no config.json"
    total = sum(files.values())
    if total > competition.model_size:
        return f"repository is {total:,} bytes, above the limit of {competition.model_size:,}"
    return None


def check_config(config: Mapping[str, Any], competition) -> str | None:
    """Remote code, architecture, norm_divisor and the parameter limit, from the raw ``config.json``."""
    if "auto_map" in config:
        return "config has auto_map (remote code is never executed)"
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        return f"config has no architectures list (got {archs!r})"
    wrong = [a for a in archs if a not in competition.model_types]
    if wrong:
        return f"architecture {wrong[0]} is not allowed in {competition.name} ({', '.join(competition.model_types)})"
    try:
        check_norm_divisor(dict(config), "config")
    except ModelLoadError as e:
        return str(e)
    from sn29_growth.params import count_parameters

    try:
        n = count_parameters(dict(config))["parameters"]
    except Exception as e:  # strict config validation raises several classes
        return f"invalid config: {type(e).__name__}: {e}"
    if n > competition.parameters:
        return f"{n:,} parameters, above the limit of {competition.parameters:,}"
    return None


def precheck(config: Mapping[str, Any], files: Mapping[str, int], competition) -> str | None:
    """All checks that need no weights: :func:`check_files` then :func:`check_config`."""
    return check_files(files, competition) or check_config(config, competition)


def count_parameters_safe(config: Mapping[str, Any]) -> int | None:
    """Parameters of ``config`` on the meta device, or None when the config cannot be built."""
    from sn29_growth.params import count_parameters

    try:
        return count_parameters(dict(config))["parameters"]
    except Exception:
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
    ids = list(tokenizer.get_vocab().values())
    return max(ids) if ids else -1
