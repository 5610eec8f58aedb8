"""A checkpoint from a config: random weights from a seed, in the network's format (``sn29 init``).

:func:`init_checkpoint` validates a Llama/Phi3 ``config.json`` (dimensions within sane bounds, a shape the
network's transformers 4.44 loads), streams seeded random weights into size-capped safetensors shards
(:func:`sn29_growth.growth.synthetic.write_random_checkpoint`: memory for one tensor at a time), writes
``config.json`` in the network's keys, copies a tokenizer's files, and renames the folder into place only
when everything is written. Special token ids of the config that the tokenizer does not have (or that lie
outside the model's vocabulary) are reported as warnings, as is a tokenizer larger than the vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DTYPE = "bfloat16"
DEFAULT_MAX_SHARD_BYTES = 2 * 10**9
EMBEDDED_TOKENIZER = "embedded"
SPECIAL_TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class InitReport:
    path: str
    model_type: str
    parameters: int
    dtype: str
    seed: int
    shards: int
    weight_bytes: int
    tokenizer: str | None  # where the tokenizer files came from (None: no tokenizer)
    tokenizer_files: tuple[str, ...] = ()
    tokenizer_size: int | None = None
    warnings: tuple[str, ...] = ()
    network: dict[str, Any] = field(default_factory=dict)

    @property
    def network_ok(self) -> bool:
        return bool(self.network.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), network_ok=self.network_ok)


def read_init_config(path: str | os.PathLike) -> dict[str, Any]:
    """A ``config.json`` file (or a folder holding one), read within the config's size bounds."""
    from sn29_growth.checkpoint import CONFIG_FILE, CONFIG_LIMITS, read_json_object

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CONFIG_FILE
    if not p.is_file():
        raise FileNotFoundError(f"CONFIG {path}: no such file")
    return read_json_object(p, CONFIG_LIMITS)


def validate_config(config: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The config to write (``architectures`` filled in, ``torch_dtype`` = ``dtype``); ValueError when it is
    not a Llama/Phi3 within bounds or not a shape the network loads."""
    from sn29_growth.arch import SUPPORTED, bounded_shape
    from sn29_growth.network.config import network_config
    from sn29_growth.network.rules import config_findings

    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        raise ValueError(
            f"model_type {model_type!r}: sn29 init makes {' and '.join(sorted(SUPPORTED))} checkpoints"
        )
    architectures = config.get("architectures")
    if architectures is None:
        config = dict(config, architectures=[SUPPORTED[model_type]])
    elif architectures != [SUPPORTED[model_type]]:
        raise ValueError(
            f"architectures {architectures!r} does not match model_type {model_type!r} "
            f"(expected [{SUPPORTED[model_type]!r}])"
        )
    if config.get("auto_map") or config.get("quantization_config"):
        raise ValueError(
            "auto_map / quantization_config: remote code and quantized weights are not supported"
        )
    shape = bounded_shape(config)
    pad = config.get("pad_token_id")
    if isinstance(pad, int) and not isinstance(pad, bool) and not 0 <= pad < shape.vocab_size:
        raise ValueError(
            f"pad_token_id {pad} is outside the vocabulary (vocab_size {shape.vocab_size:,}): the embedding "
            "cannot be built; set it to a token id below vocab_size, or null"
        )
    out = {k: v for k, v in config.items() if k != "dtype"}
    out["torch_dtype"] = dtype
    try:
        written = network_config(out)
    except ValueError as e:
        raise ValueError(f"config: {e}") from None
    errors = [f for f in config_findings(written) if f.severity == "error"]
    if errors:
        raise ValueError(
            "the network's validators (transformers 4.44) could not load or would score this config "
            "differently: " + "; ".join(f.message for f in errors)
        )
    return out


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or flag in ("1", "true", "yes", "on")


def tokenizer_folder(spec: str) -> Path:
    """A local folder holding the tokenizer files ``spec`` names (a folder, or a Hub model whose tokenizer
    files are fetched; offline a Hub name is an error that says so)."""
    from sn29_growth.checkpoint import TOKENIZER_FILES
    from sn29_growth.cliutil import hub_files, looks_like_local_path
    from sn29_growth.modelref import NOT_FOUND

    if looks_like_local_path(spec):
        folder = Path(spec).expanduser()
        if not folder.exists():
            raise ValueError(f"--tokenizer {spec}: {NOT_FOUND}")
        if not folder.is_dir():
            raise ValueError(
                f"--tokenizer {spec}: is a file; the folder holding the tokenizer files is expected"
            )
        if not any((folder / n).is_file() for n in TOKENIZER_FILES):
            raise ValueError(
                f"--tokenizer {spec}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)"
            )
        return folder
    if _hub_offline():
        raise ValueError(
            f"--tokenizer {spec}: not a local folder, and the Hub is offline (HF_HUB_OFFLINE); give a local "
            f"folder that holds the tokenizer files, or 'embedded'"
        )
    return hub_files(spec, TOKENIZER_FILES)


def _add_tokenizer(spec: str, directory: Path) -> tuple[str, ...]:
    from sn29_growth.network.tokenizer import copy_tokenizer_files, save_tokenizer

    if spec == EMBEDDED_TOKENIZER:
        from sn29_growth.checkpoint import TOKENIZER_FILES
        from sn29_growth.tokenizer import embedded_tokenizer

        save_tokenizer(embedded_tokenizer(), directory)
        return tuple(n for n in TOKENIZER_FILES if (directory / n).is_file())
    return tuple(copy_tokenizer_files(tokenizer_folder(spec), directory))


def _ids(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def special_token_warnings(config: dict[str, Any], tokenizer_size: int | None) -> list[str]:
    """Special token ids the tokenizer does not have, or that lie outside the model's vocabulary."""
    vocab = int(config["vocab_size"])
    out = []
    for key in SPECIAL_TOKEN_KEYS:
        for token_id in _ids(config.get(key)):
            if tokenizer_size is not None and token_id >= tokenizer_size:
                out.append(
                    f"config {key} {token_id} does not exist in the tokenizer ({tokenizer_size:,} tokens): "
                    "set it to the tokenizer's id"
                )
            elif token_id >= vocab or token_id < 0:
                out.append(
                    f"config {key} {token_id} is outside the model's vocabulary (vocab_size {vocab:,})"
                )
    if tokenizer_size is not None and tokenizer_size > vocab:
        out.append(
            f"the tokenizer has {tokenizer_size:,} tokens, more than vocab_size {vocab:,}: ids >= {vocab:,} "
            "have no embedding"
        )
    return out


def _tokenizer_size(directory: Path) -> tuple[int | None, str | None]:
    """``len(tokenizer)`` of the folder's tokenizer (transformers' own warnings about the config's token ids
    are silenced: :func:`special_token_warnings` reports them)."""
    from transformers.utils import logging as hf_logging

    from sn29_growth.checkpoint import load_tokenizer

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return len(load_tokenizer(directory)), None
    except Exception as e:  # a tokenizer that does not load is reported, the checkpoint is still written
        return None, f"the tokenizer does not load ({type(e).__name__}: {e}); special token ids not checked"
    finally:
        hf_logging.set_verbosity(level)


def init_checkpoint(
    config: dict[str, Any] | str | os.PathLike,
    directory: str | os.PathLike,
    *,
    dtype: str | None = None,
    tokenizer: str | None = None,
    seed: int = 0,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> InitReport:
    """Write a new checkpoint folder ``directory`` with seeded random weights for ``config``.

    ``dtype``: bfloat16, float16 or float32 (default: the config's ``torch_dtype``, else bfloat16).
    ``tokenizer``: a folder holding tokenizer files, a Hub model name (fetched only when online),
    ``embedded`` (this package's embedded tokenizer), or None (no tokenizer files).
    """
    import torch

    from sn29_growth.arch import Shape
    from sn29_growth.atomic import atomic_directory
    from sn29_growth.checkpoint import config_dtype_name
    from sn29_growth.growth.fit import count_params
    from sn29_growth.growth.spec import normalize_dtype
    from sn29_growth.growth.synthetic import write_random_checkpoint
    from sn29_growth.network.rules import check_model

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if max_shard_bytes <= 0:
        raise ValueError(f"--max-shard-size must be positive, got {max_shard_bytes}")
    raw = config if isinstance(config, dict) else read_init_config(config)
    declared = config_dtype_name(raw)
    if dtype is None and declared in ("bfloat16", "float16", "float32"):
        dtype = declared
    dtype = normalize_dtype(dtype) or DEFAULT_DTYPE
    cfg = validate_config(raw, dtype)
    shape = Shape.from_config(cfg)
    if tokenizer is not None and tokenizer != EMBEDDED_TOKENIZER:
        tokenizer_folder(tokenizer)  # refuse a missing folder or an offline Hub name before writing anything
    target = Path(directory).expanduser()
    warnings: list[str] = []
    files: tuple[str, ...] = ()
    size = None
    with atomic_directory(target) as tmp:
        tmp.rmdir()  # the writer creates the folder itself (refusing an existing one)
        write_random_checkpoint(
            tmp, cfg, dtype=getattr(torch, dtype), max_shard_bytes=int(max_shard_bytes), seed=seed
        )
        if tokenizer is not None:
            files = _add_tokenizer(tokenizer, tmp)
            size, problem = _tokenizer_size(tmp)
            if problem:
                warnings.append(problem)
        warnings += special_token_warnings(cfg, size)
        shards = sorted(p for p in tmp.iterdir() if p.suffix == ".safetensors")
        weight_bytes = sum(p.stat().st_size for p in shards)
    network = check_model(target)
    return InitReport(
        path=str(target),
        model_type=str(cfg["model_type"]),
        parameters=count_params(shape),
        dtype=dtype,
        seed=seed,
        shards=len(shards),
        weight_bytes=weight_bytes,
        tokenizer=tokenizer,
        tokenizer_files=files,
        tokenizer_size=size,
        warnings=tuple(warnings),
        network=network.to_dict(),
    )
