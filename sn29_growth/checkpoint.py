"""What a model folder is: its file names, and reading and writing its JSON files safely.

Every layer reads ``config.json`` (and the tokenizer's JSON files) through :func:`read_config` /
:func:`read_json`: a miner's repository is untrusted input, so each file is bounded in bytes, nesting
depth and number of values *before* it is parsed, and anything wrong with it is a
:class:`CheckpointFileError` naming the file and the limit — never a ``RecursionError`` or an hour of
parsing. Every file a tokenizer or model loader may read has a size limit of its own
(:data:`FILE_SIZE_LIMITS`), checked before download and before a tokenizer loads; a model's tokenizer
is loaded from :data:`TOKENIZER_LOAD_FILES` only. Every config this project writes goes through
:func:`write_config`, which writes the form the network's transformers (4.44) reads with the same
meaning as ours (:mod:`sn29_growth.network.config`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
INDEX_FILE = "model.safetensors.index.json"
RECIPE_FILE = "growth_recipe.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

SCORING_TOKENIZER_FILES: tuple[str, ...] = (
    TOKENIZER_JSON,
    TOKENIZER_CONFIG,
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
"""The tokenizer files a tokenizer is built from (chat templates play no part in scoring)."""
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
TOKENIZER_FILES: tuple[str, ...] = (*SCORING_TOKENIZER_FILES, *CHAT_TEMPLATE_FILES)
"""Tokenizer files a checkpoint may carry; copied along whenever a checkpoint is rewritten."""


class CheckpointFileError(ValueError):
    """A model-folder file that is missing, malformed or beyond a safety limit; the message names it."""


@dataclass(frozen=True)
class JsonLimits:
    """Bounds checked on the raw bytes before a JSON file is parsed."""

    max_bytes: int
    max_depth: int
    max_values: int


CONFIG_LIMITS = JsonLimits(max_bytes=1 << 20, max_depth=32, max_values=50_000)
TOKENIZER_CONFIG_LIMITS = JsonLimits(max_bytes=16 << 20, max_depth=32, max_values=2_000_000)
TOKENIZER_JSON_LIMITS = JsonLimits(max_bytes=64 << 20, max_depth=64, max_values=8_000_000)
"""Real tokenizers come to at most about 2.2 million values and containers (Gemma 3's 33 MB file)."""
LIMITS_BY_NAME = {
    CONFIG_FILE: CONFIG_LIMITS,
    GENERATION_CONFIG_FILE: CONFIG_LIMITS,
    INDEX_FILE: TOKENIZER_CONFIG_LIMITS,
    TOKENIZER_CONFIG: TOKENIZER_CONFIG_LIMITS,
    "special_tokens_map.json": TOKENIZER_CONFIG_LIMITS,
    "added_tokens.json": TOKENIZER_CONFIG_LIMITS,
    TOKENIZER_JSON: TOKENIZER_JSON_LIMITS,
    RECIPE_FILE: TOKENIZER_JSON_LIMITS,  # a recipe lists every new slice of every tensor
}

FILE_SIZE_LIMITS: dict[str, int] = {
    **{name: limits.max_bytes for name, limits in LIMITS_BY_NAME.items()},
    "tokenizer.model": 64 << 20,
    "vocab.json": 64 << 20,
    "merges.txt": 64 << 20,
    **{name: 1 << 20 for name in CHAT_TEMPLATE_FILES},
}
"""Bytes allowed per file name, for every file but the weights that a tokenizer or model loader may
read: checked from the Hub's file sizes before any download and again before a tokenizer loads. A few
times the largest real file of each kind (a 256k-token ``tokenizer.json`` is 33 MB, a chat template tens
of kB); what the loaders make of a file is several times its size in memory."""

TOKENIZER_LOAD_FILES: tuple[str, ...] = (*SCORING_TOKENIZER_FILES, CONFIG_FILE)
"""The files a model's own tokenizer is loaded from for scoring: what transformers 4.44's
``AutoTokenizer.from_pretrained`` reads for the tokenizer classes of the competitions (``config.json``
names the class when ``tokenizer_config.json`` does not). Chat templates never take part in scoring."""


def file_size_problem(name: str, size: int) -> str | None:
    """Why a file of ``size`` bytes named ``name`` is refused (above :data:`FILE_SIZE_LIMITS`), or None."""
    limit = FILE_SIZE_LIMITS.get(name)
    if limit is not None and size > limit:
        return f"{name} is {size:,} bytes, above the limit of {limit:,} for that file"
    return None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting_depth(skeleton: bytes) -> int:
    """The deepest nesting of a JSON text whose strings are blanked, a million brackets at a time."""
    import numpy as np

    brackets = np.frombuffer(skeleton.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(brackets), 1 << 20):
        chunk = brackets[start : start + (1 << 20)]
        run = np.cumsum(np.where((chunk == 0x5B) | (chunk == 0x7B), 1, -1)) + depth
        deepest, depth = max(deepest, int(run.max())), int(run[-1])
    return deepest


def parse_json_bounded(data: bytes, limits: JsonLimits, where: str) -> Any:
    """Parse ``data`` after checking its size, nesting depth and value count (every container counts as
    a value, an empty one too: each is an object the parser creates); NaN/Infinity refused."""
    if len(data) > limits.max_bytes:
        raise CheckpointFileError(f"{where}: {len(data):,} bytes, above the limit of {limits.max_bytes:,}")
    skeleton = _STRING.sub(b'""', data)
    depth = _nesting_depth(skeleton)
    if depth > limits.max_depth:
        raise CheckpointFileError(
            f"{where}: nested {depth} levels deep, above the limit of {limits.max_depth}"
        )
    values = sum(skeleton.count(c) for c in (b",", b":", b"[", b"{")) + 1
    if values > limits.max_values:
        raise CheckpointFileError(
            f"{where}: about {values:,} JSON values, above the limit of {limits.max_values:,}"
        )
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointFileError(f"{where}: not valid JSON ({type(e).__name__}: {e})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | os.PathLike, limits: JsonLimits | None = None) -> Any:
    """A JSON file of a model folder, bounded by ``limits`` (default: by file name, else the config's)."""
    p = Path(path)
    limits = limits or LIMITS_BY_NAME.get(p.name, CONFIG_LIMITS)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise CheckpointFileError(f"{p}: not a regular file")
        if size > limits.max_bytes:
            raise CheckpointFileError(f"{p}: {size:,} bytes, above the limit of {limits.max_bytes:,}")
        with p.open("rb") as f:
            data = f.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise CheckpointFileError(f"{p}: missing") from None
    except OSError as e:
        raise CheckpointFileError(f"{p}: unreadable ({e})") from None
    return parse_json_bounded(data, limits, str(p))


def read_json_object(path: str | os.PathLike, limits: JsonLimits | None = None) -> dict[str, Any]:
    data = read_json(path, limits)
    if not isinstance(data, dict):
        raise CheckpointFileError(f"{path}: not a JSON object")
    return data


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a model folder (bounded; see :data:`CONFIG_LIMITS`)."""
    return read_json_object(Path(directory) / CONFIG_FILE, CONFIG_LIMITS)


def read_config_or_none(directory: str | os.PathLike) -> dict[str, Any] | None:
    """:func:`read_config`, or None when the file is missing or unusable (callers report it)."""
    return try_read_config(directory)[0]


def try_read_config(directory: str | os.PathLike) -> tuple[dict[str, Any] | None, str | None]:
    """``(config, None)``, or ``(None, why it is unusable)`` with the folder's path left out of the reason
    (it reads ``config.json: ...``): for reports that name the model themselves."""
    try:
        return read_config(directory), None
    except CheckpointFileError as e:
        return None, str(e).replace(str(Path(directory) / CONFIG_FILE), CONFIG_FILE)


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """:func:`read_config` of a model about to be built or loaded: a config that asks for remote code
    (``auto_map``) is refused here, whatever the caller does next."""
    config = read_config(directory)
    if "auto_map" in config:
        raise CheckpointFileError(
            f"{Path(directory) / CONFIG_FILE}: config has auto_map (remote code), which is never executed"
        )
    return config


def read_recipe(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``growth_recipe.json`` a grown checkpoint carries (bounded read), None when it has none."""
    path = Path(directory) / RECIPE_FILE
    return read_json_object(path) if path.exists() else None


def tokenizer_files_max_id(
    tokenizer_json: dict[str, Any],
    added_tokens: dict[str, Any] | None = None,
    added_tokens_decoder: dict[str, Any] | None = None,
) -> int:
    """The largest token id a tokenizer loaded from these files can emit, read off the parsed files
    alone: ``tokenizer.json``'s model vocabulary (a ``{token: id}`` map, or a Unigram list whose ids are
    positions) and added tokens, ``added_tokens.json`` (``{token: id}``) and ``tokenizer_config.json``'s
    ``added_tokens_decoder`` (``{id: token}``); -1 when they name none."""
    ids: list[int] = []
    model = tokenizer_json.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        ids += [v for v in vocab.values() if isinstance(v, int)]
    elif isinstance(vocab, list):
        ids.append(len(vocab) - 1)
    added = tokenizer_json.get("added_tokens")
    if isinstance(added, list):
        ids += [t["id"] for t in added if isinstance(t, dict) and isinstance(t.get("id"), int)]
    ids += [v for v in (added_tokens or {}).values() if isinstance(v, int)]
    ids += [int(k) for k in (added_tokens_decoder or {}) if isinstance(k, str) and k.isdigit()]
    return max(ids, default=-1)


def read_tokenizer_max_id(directory: str | os.PathLike) -> int | None:
    """:func:`tokenizer_files_max_id` of a folder's files (bounded reads), None without ``tokenizer.json``."""
    root = Path(directory)
    if not (root / TOKENIZER_JSON).is_file():
        return None
    optional = {}
    for name in ("added_tokens.json", TOKENIZER_CONFIG):
        optional[name] = read_json_object(root / name) if (root / name).is_file() else {}
    decoder = optional[TOKENIZER_CONFIG].get("added_tokens_decoder")
    return tokenizer_files_max_id(
        read_json_object(root / TOKENIZER_JSON),
        optional["added_tokens.json"],
        decoder if isinstance(decoder, dict) else None,
    )


def has_tokenizer(directory: str | os.PathLike) -> bool:
    """Whether a model folder carries a tokenizer of its own (``tokenizer.json`` or ``tokenizer_config.json``)."""
    return any((Path(directory) / name).is_file() for name in (TOKENIZER_JSON, TOKENIZER_CONFIG))


def load_tokenizer(source: str | os.PathLike):
    """The tokenizer of a model folder (or a Hub tokenizer name), never with remote code; an unusable one
    raises :class:`CheckpointFileError` naming the source."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.fspath(source), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise CheckpointFileError(f"{os.fspath(source)}: no usable tokenizer ({e})") from e


def write_config(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``config`` (a file path or a folder) atomically in the network's format; returns what was written."""
    from sn29_growth.atomic import atomic_write_json
    from sn29_growth.network.config import network_config

    target = Path(path)
    if target.is_dir():
        target = target / CONFIG_FILE
    out = network_config(config)
    atomic_write_json(target, out)
    return out


def check_destination(src: str | os.PathLike, dst: str | os.PathLike, flag: str = "DST") -> None:
    """Refuse a destination that is the source or inside it (writing it would rewrite what is being read)."""
    s, d = Path(src).resolve(), Path(dst).resolve()
    if d == s or s in d.parents:
        raise ValueError(f"{flag} {dst} is inside SRC {src}; choose a directory outside the source")


BYTES_PER_DTYPE = {"float32": 4, "bfloat16": 2, "float16": 2}  # the weight dtypes a checkpoint may declare


def config_dtype_name(config: dict[str, Any]) -> str | None:
    """The weights' dtype a config records, as written (transformers 5's ``dtype`` first, as it reads it,
    then ``torch_dtype``); None when it records none."""
    for key in ("dtype", "torch_dtype"):
        value = config.get(key)
        if isinstance(value, str) and value:
            return value.removeprefix("torch.")
    return None


def declared_dtype(config: dict[str, Any]) -> str | None:
    """The weight dtype a config declares, when it is one of :data:`BYTES_PER_DTYPE`; None otherwise."""
    name = config_dtype_name(config)
    name = name.lower() if name else None
    return name if name in BYTES_PER_DTYPE else None


def checkpoint_dtype(config: dict[str, Any]) -> str:
    """The dtype a checkpoint's weights are taken to have: the declared one, float32 when none is declared."""
    return declared_dtype(config) or "float32"


def save_model(model, directory: str | os.PathLike, *, state_dict=None, dtype=None, tokenizer=None) -> None:
    """``model.save_pretrained`` (optionally of ``state_dict`` cast to ``dtype``), in the network's format.

    transformers 5 writes ``config.json`` in its own keys; it is rewritten by :func:`write_config` with
    ``torch_dtype`` set to the dtype of the saved weights. ``tokenizer`` (optional) is saved with its
    files normalised for tokenizers 0.19.
    """
    import torch

    directory = Path(directory)
    if dtype is not None:
        state_dict = state_dict if state_dict is not None else model.state_dict()
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    model.save_pretrained(directory, state_dict=state_dict)
    config = read_config(directory)
    tensors = state_dict.values() if state_dict is not None else model.parameters()
    saved = dtype or next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    config.pop("dtype", None)
    config["torch_dtype"] = str(saved).removeprefix("torch.")
    write_config(directory, config)
    if tokenizer is not None:
        from sn29_growth.network.tokenizer import save_tokenizer

        save_tokenizer(tokenizer, directory)
