"""The one way this package loads a model: safetensors only, no remote code, norm_divisor honoured.

Every code path (growth verification, evaluation, training, the validator) calls :func:`load_model`.
A checkpoint whose config carries ``norm_divisor`` is only ever run by the patched classes: if the
classes that would run are not ours, or any RMSNorm of the loaded model does not use the divisor,
loading fails instead of computing a silently wrong loss.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from sn29_growth.divisor import validate_norm_divisor

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
PATCHED_MODEL_TYPES = ("llama", "phi3")


class ModelLoadError(RuntimeError):
    """A checkpoint that must not or cannot be loaded; the message names the problem."""


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a checkpoint directory, checked for remote code."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"{path}: no config.json")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ModelLoadError(f"{cfg_path}: not a JSON object")
    if "auto_map" in config:
        raise ModelLoadError(f"{cfg_path}: config has auto_map (remote code), which is never executed")
    return config


def ensure_patched(model_type: str | None) -> None:
    """Import and register our classes for ``model_type`` (llama/phi3); a no-op for other types."""
    if model_type == "llama":
        import transformers_llama

        transformers_llama.register()
    elif model_type == "phi3":
        import transformers_phi3

        transformers_phi3.register()


def patched_classes_active(model_type: str) -> bool:
    if model_type == "llama":
        import transformers_llama

        return transformers_llama.is_registered()
    if model_type == "phi3":
        import transformers_phi3

        return transformers_phi3.is_registered()
    return False


def check_norm_divisor(config: dict[str, Any], where: str = "config") -> float | None:
    """Validate ``norm_divisor`` in a raw config; refuse it for model types we cannot patch."""
    divisor = config.get("norm_divisor")
    try:
        validate_norm_divisor(divisor)
    except ValueError as e:
        raise ModelLoadError(f"{where}: {e}") from e
    if divisor is not None and config.get("model_type") not in PATCHED_MODEL_TYPES:
        raise ModelLoadError(
            f"{where}: norm_divisor is set but model_type {config.get('model_type')!r} has no patched "
            f"classes (supported: {', '.join(PATCHED_MODEL_TYPES)}); refusing to compute a wrong loss"
        )
    return divisor


def safetensors_files(path: str | os.PathLike) -> list[Path]:
    return sorted(Path(path).glob("*.safetensors"))


def load_config(path: str | os.PathLike):
    """The transformers config object of a local checkpoint, through our patched classes."""
    from transformers import AutoConfig

    raw = read_config(path)
    check_norm_divisor(raw, str(path))
    ensure_patched(raw.get("model_type"))
    try:
        return AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except Exception as e:  # strict config validation errors come in several classes
        raise ModelLoadError(f"{path}: invalid config: {e}") from e


def load_model(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = "cpu",
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """Load a causal LM from a local checkpoint directory, safely. Returns it in eval mode.

    ``device_map`` (e.g. ``"auto"``) hands placement to accelerate's big-model inference for models
    larger than one device; otherwise the model is moved to ``device``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a checkpoint directory")
    raw = read_config(path)
    divisor = check_norm_divisor(raw, str(path))
    if not safetensors_files(path):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no *.safetensors weights"
        raise ModelLoadError(f"{path}: {what}; only safetensors are loaded")
    config = load_config(path)
    model_type = raw.get("model_type")
    if divisor is not None and not patched_classes_active(model_type):
        raise ModelLoadError(
            f"{path}: norm_divisor={divisor} but the patched {model_type} classes are not active"
        )
    kwargs: dict[str, Any] = dict(config=config, dtype=dtype, trust_remote_code=False, use_safetensors=True)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as e:
        raise ModelLoadError(f"{path}: cannot load weights: {type(e).__name__}: {e}") from e
    verify_norms(model, divisor, str(path))
    if device_map is None and device is not None:
        model.to(device)
    return model.eval()


def verify_norms(model: torch.nn.Module, divisor: float | None, where: str = "model") -> None:
    """Raise unless every RMSNorm of ``model`` computes what ``norm_divisor=divisor`` demands."""
    from sn29_growth.norm import norm_divisors_in

    found = norm_divisors_in(model)
    if not found:
        if divisor is not None:
            raise ModelLoadError(f"{where}: norm_divisor={divisor} but the model has no recognised RMSNorm")
        return
    want = None if divisor is None else float(divisor)
    wrong = [d for d in found if d != want]
    if wrong:
        raise ModelLoadError(
            f"{where}: {len(wrong)} of {len(found)} RMSNorm modules do not use norm_divisor={divisor} "
            f"(found {wrong[0]}); the loss would be silently wrong"
        )
