"""The one way this package loads a model: safetensors only, no remote code, norm_divisor honoured.

Every code path (growth verification, evaluation, training, the validator) calls :func:`load_model`.
A checkpoint whose config carries ``norm_divisor`` is only ever run by the patched classes: if the
classes that would run are not ours, or any RMSNorm of the loaded model does not use the divisor,
loading fails instead of computing a silently wrong loss.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from sn29_growth.divisor import validate_norm_divisor
from sn29_growth.reasons import quoted

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
PATCHED_MODEL_TYPES = ("llama", "phi3")


class ModelLoadError(RuntimeError):
    """A checkpoint that must not or cannot be loaded; the message names the problem."""


def _read_config(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`sn29_growth.checkpoint.read_model_config`, its problems raised as :class:`ModelLoadError`."""
    from sn29_growth.checkpoint import CheckpointFileError, read_model_config

    try:
        return read_model_config(path)
    except CheckpointFileError as e:
        raise ModelLoadError(str(e)) from None


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
            f"{where}: norm_divisor is set but model_type {quoted(config.get('model_type'))} has no patched "
            f"classes (supported: {', '.join(PATCHED_MODEL_TYPES)}); refusing to compute a wrong loss"
        )
    return divisor


def safetensors_files(path: str | os.PathLike) -> list[Path]:
    return sorted(Path(path).glob("*.safetensors"))


def config_for_loading(raw: dict[str, Any], where: str, *, network: bool = False) -> dict[str, Any]:
    """The config dict transformers 5 is given: as the network reads ``raw`` (``network``), else its meaning.

    Evaluation passes ``network=True``: keys transformers 4.44 ignores are ignored here too and Phi3's
    sliding window is given as the network's flash attention applies it
    (:func:`~sn29_growth.network.config.as_network_reads`), so a model scores what live validators score;
    such a config object is for scoring only, never for saving. Our own tools read a source's
    transformers-5 keys by their meaning (:func:`~sn29_growth.network.config.network_config`).
    """
    from sn29_growth.network.config import NetworkFormatError, as_network_reads, network_config

    raw = copy.deepcopy(raw)  # transformers' config classes edit nested dicts (rope_scaling) in place
    if network:
        return as_network_reads(raw)
    try:
        return network_config(raw)
    except NetworkFormatError as e:
        raise ModelLoadError(f"{where}: {e}") from None


def load_config(path: str | os.PathLike, *, network: bool = False, attn_implementation: str | None = None):
    """The transformers config object of a local checkpoint, through our patched classes (with
    ``attn_implementation`` set, for code that builds layers from the config itself)."""
    from transformers import AutoConfig

    raw = _read_config(path)
    check_norm_divisor(raw, str(path))
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelLoadError(f"{path}: config.json has no model_type")
    ensure_patched(model_type)
    fields = {
        k: v for k, v in config_for_loading(raw, str(path), network=network).items() if k != "model_type"
    }
    if attn_implementation is not None:
        fields["attn_implementation"] = attn_implementation
    try:
        return AutoConfig.for_model(model_type, **fields)
    except Exception as e:  # strict config validation errors come in several classes
        raise ModelLoadError(f"{path}: invalid config: {type(e).__name__}: {e}") from e


def check_tensor_table(path: str | os.PathLike, raw: dict[str, Any]) -> None:
    """Every tensor the config implies is in the shards, by name and shape, and nothing else is.

    A missing tensor would be initialised at random (two loads, two losses); an extra one is ignored by
    transformers. Both are refused, as is a set of shards transformers would read differently.
    """
    from sn29_growth.arch import Shape, UnsupportedArchitecture, compare_tensors
    from sn29_growth.checkpoint import INDEX_FILE
    from sn29_growth.io import CheckpointError, ShardedCheckpoint

    root = Path(path)
    if not (root / INDEX_FILE).is_file():
        names = [p.name for p in safetensors_files(root)]
        if names != ["model.safetensors"]:
            raise ModelLoadError(
                f"{path}: {len(names)} *.safetensors files but no {INDEX_FILE}; transformers would load "
                f"model.safetensors only"
            )
    try:
        shape = Shape.from_config(raw)
    except (UnsupportedArchitecture, ValueError) as e:
        raise ModelLoadError(f"{path}: {e}") from None
    try:
        ckpt = ShardedCheckpoint(root)
    except CheckpointError as e:  # the message names the shard
        raise ModelLoadError(str(e)) from None
    table = compare_tensors({n: (i.shape, i.dtype) for n, i in ckpt.infos.items()}, shape)
    if not table.ok:
        raise ModelLoadError(f"{path}: weights do not match config.json: {table.problem()}")


def load_model(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = "cpu",
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
    network: bool = False,
    direct: bool = True,
) -> torch.nn.Module:
    """Load a causal LM from a local checkpoint directory, safely. Returns it in eval mode.

    Before any weight is read the shards are checked against the config's tensor table (names,
    shapes); after loading, the instantiated class must be the patched class of ``model_type`` named
    by ``architectures``. ``network`` reads the config as the network does (see
    :func:`config_for_loading`). ``device_map`` (e.g. ``"auto"``) hands placement to accelerate's
    big-model inference for models larger than one device; otherwise the model is moved to ``device``.
    ``direct`` (the default for Llama/Phi3 on one device) reads each tensor of the checked shards
    straight onto ``device`` (:mod:`sn29_growth.io.device_load`); ``direct=False`` goes through
    ``from_pretrained`` and then moves the model.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a checkpoint directory")
    raw = _read_config(path)
    divisor = check_norm_divisor(raw, str(path))
    if not safetensors_files(path):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no *.safetensors weights"
        raise ModelLoadError(f"{path}: {what}; only safetensors are loaded")
    model_type = raw.get("model_type")
    if model_type in PATCHED_MODEL_TYPES:
        check_tensor_table(path, raw)
    config = load_config(path, network=network)
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
        if direct and device_map is None and model_type in PATCHED_MODEL_TYPES:
            model = _load_direct(path, config, dtype, device or "cpu", attn_implementation)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as e:
        raise ModelLoadError(f"{path}: cannot load weights: {type(e).__name__}: {e}") from e
    check_model_class(model, raw, str(path))
    verify_norms(model, divisor, str(path))
    if device_map is None and device is not None:
        model.to(device)
    return model.eval()


def _load_direct(path: Path, config, dtype, device, attn_implementation: str | None) -> torch.nn.Module:
    from sn29_growth.io import ShardedCheckpoint
    from sn29_growth.io.device_load import load_direct

    files = ShardedCheckpoint(path).files  # the shards the index names (checked by check_tensor_table)
    return load_direct(
        path, config, files, dtype=dtype, device=device, attn_implementation=attn_implementation
    )


def check_model_class(model: torch.nn.Module, raw: dict[str, Any], where: str) -> None:
    """The instantiated class is the one ``model_type`` selects and ``architectures`` names."""
    from sn29_growth.arch import SUPPORTED

    model_type = raw.get("model_type")
    if model_type not in SUPPORTED:
        return
    name = type(model).__name__
    archs = raw.get("architectures")
    if name != SUPPORTED[model_type] or (archs is not None and archs != [name]):
        raise ModelLoadError(
            f"{where}: model_type {quoted(model_type)} instantiated {name}, but architectures says {quoted(archs)}"
        )
    if not patched_classes_active(model_type) or type(model).__module__ not in (
        "transformers_llama",
        "transformers_phi3",
    ):
        raise ModelLoadError(f"{where}: {name} is not the norm_divisor-aware class of this package")


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
