"""Tokenizer files in a form the network's stack loads (transformers 4.44 / tokenizers 0.19).

transformers 5 saves ``tokenizer_config.json`` with ``tokenizer_class: "TokenizersBackend"`` (a class
4.44 does not know), and tokenizers ≥ 0.20 writes BPE merges as ``[a, b]`` pairs (0.19 reads only
``"a b"`` strings). Tokenizer files are therefore copied byte for byte wherever possible; where this
project must write them (vocabulary growth, the demo's tokenizers) they go through
:func:`normalize_tokenizer_dir`, which rewrites just those two things and keeps every other key.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json
from sn29_growth.checkpoint import TOKENIZER_CONFIG, TOKENIZER_FILES, TOKENIZER_JSON, read_json_object
from sn29_growth.network.config import NetworkFormatError
from sn29_growth.network.known import (
    CLEAN_UP_OFF_BY_DEFAULT,
    TOKENIZER_CLASS_BY_MODEL_TYPE,
    TOKENIZER_CLASSES,
)

log = logging.getLogger(__name__)

V5_TOKENIZER_CLASS = "TokenizersBackend"
NETWORK_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
EXTRA_TOKEN = "<|extra_{}|>"


def legacy_merges(merges: list[Any]) -> list[str]:
    """BPE merges as ``"a b"`` strings (the only form tokenizers 0.19 reads)."""
    out = []
    for m in merges:
        if isinstance(m, str):
            out.append(m)
            continue
        if not (isinstance(m, list | tuple) and len(m) == 2 and all(isinstance(p, str) for p in m)):
            raise NetworkFormatError(f"tokenizer.json: malformed BPE merge {m!r}")
        if any(" " in p for p in m):
            raise NetworkFormatError(
                f"tokenizer.json: the merge {m!r} has a space inside a token, which tokenizers 0.19's "
                f"'a b' merge strings cannot express"
            )
        out.append(f"{m[0]} {m[1]}")
    return out


def network_tokenizer_json(data: dict[str, Any]) -> dict[str, Any]:
    """``tokenizer.json`` with BPE merges as strings; everything else unchanged."""
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("merges"), list):
        return data
    merges = model["merges"]
    if all(isinstance(m, str) for m in merges):
        return data
    return {**data, "model": {**model, "merges": legacy_merges(merges)}}


def network_tokenizer_config(data: dict[str, Any]) -> dict[str, Any]:
    """``tokenizer_config.json`` with a tokenizer class 4.44 knows and without 5's ``backend`` key."""
    out = dict(data)
    if out.get("tokenizer_class") == V5_TOKENIZER_CLASS:
        out["tokenizer_class"] = NETWORK_TOKENIZER_CLASS
    if out.get("backend") == "tokenizers":
        del out["backend"]
    return out


def normalize_tokenizer_dir(directory: str | os.PathLike) -> list[str]:
    """Rewrite a folder's tokenizer files into the network's form in place; returns the files changed."""
    d = Path(directory)
    changed = []
    for name, convert in (
        (TOKENIZER_JSON, network_tokenizer_json),
        (TOKENIZER_CONFIG, network_tokenizer_config),
    ):
        path = d / name
        if not path.is_file():
            continue
        data = read_json_object(path)
        new = convert(data)
        if new != data:
            atomic_write_json(path, new, indent=2)
            changed.append(name)
    return changed


def save_tokenizer(tokenizer, directory: str | os.PathLike) -> None:
    """``tokenizer.save_pretrained(directory)``, then the files normalised for the network."""
    tokenizer.save_pretrained(str(directory))
    normalize_tokenizer_dir(directory)


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy every tokenizer file of ``src`` into ``dst`` byte for byte; returns the names copied."""
    src, dst = Path(src), Path(dst)
    present = [n for n in TOKENIZER_FILES if (src / n).is_file()]
    for name in present:
        shutil.copy2(src / name, dst / name)
    return present


def _token_ids(data: dict[str, Any]) -> set[int]:
    model = data.get("model") or {}
    vocab = model.get("vocab")
    ids = set()
    if isinstance(vocab, dict):
        ids.update(v for v in vocab.values() if isinstance(v, int))
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        ids.update(range(len(vocab)))
    ids.update(
        t["id"]
        for t in data.get("added_tokens") or []
        if isinstance(t, dict) and isinstance(t.get("id"), int)
    )
    return ids


def tokenizer_json_size(data: dict[str, Any]) -> int:
    """The number of ids a ``tokenizer.json`` can produce (largest id + 1)."""
    ids = _token_ids(data)
    return max(ids) + 1 if ids else 0


def _added_token(token_id: int) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": EXTRA_TOKEN.format(token_id),
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def extend_tokenizer_files(src: Path, dst: Path, old_vocab: int, new_vocab: int) -> int:
    """Copy the tokenizer files; when the vocabulary grows past the tokenizer, add placeholder tokens.

    A tokenizer of exactly ``old_vocab`` ids gets ``<|extra_i|>`` special tokens for ids ``old_vocab ..
    new_vocab-1`` (never produced by normal text), written straight into ``tokenizer.json`` (and
    ``tokenizer_config.json``'s ``added_tokens_decoder``) so that nothing else about the tokenizer
    changes; the files are then in the network's form. A tokenizer already smaller than the embedding
    (padded rows) is copied as it is. Returns the number of tokens added.
    """
    present = copy_tokenizer_files(src, dst)
    if new_vocab <= old_vocab or not present:
        if new_vocab > old_vocab:
            log.warning("%s has no tokenizer files; the grown vocabulary has no tokens to extend", src)
        return 0
    if TOKENIZER_JSON not in present:
        raise NetworkFormatError(
            f"--vocab-size: {src} has no tokenizer.json; vocabulary growth extends tokenizer.json only"
        )
    data = read_json_object(dst / TOKENIZER_JSON)
    size = tokenizer_json_size(data)
    if size != old_vocab:
        log.info("tokenizer has %d ids for %d embedding rows: left unchanged", size, old_vocab)
        return 0
    new = [_added_token(i) for i in range(old_vocab, new_vocab)]
    data = network_tokenizer_json({**data, "added_tokens": [*(data.get("added_tokens") or []), *new]})
    atomic_write_json(dst / TOKENIZER_JSON, data, indent=2)
    if (dst / TOKENIZER_CONFIG).is_file():
        config = read_json_object(dst / TOKENIZER_CONFIG)
        if isinstance(config.get("added_tokens_decoder"), dict):
            decoder = dict(config["added_tokens_decoder"])
            for t in new:
                decoder[str(t["id"])] = {k: v for k, v in t.items() if k != "id"}
            config["added_tokens_decoder"] = decoder
        atomic_write_json(dst / TOKENIZER_CONFIG, network_tokenizer_config(config), indent=2)
    return len(new)


# ------------------------------------------------------------------------------------------- decoding

CLEAN_UP_REPLACEMENTS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)
"""transformers 4.44's ``clean_up_tokenization``: these replacements, in this order, on the decoded text."""


def clean_up_tokenization(text: str) -> str:
    """What transformers 4.44's decode does to a text when ``clean_up_tokenization_spaces`` is on."""
    for old, new in CLEAN_UP_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def network_cleans_up(tokenizer_config: dict[str, Any] | None, model_type: str | None = None) -> bool:
    """Whether transformers 4.44's ``decode`` cleans up tokenization spaces for this tokenizer.

    The value ``tokenizer_config.json`` sets wins; otherwise the default of the class 4.44 instantiates
    (``tokenizer_class``, its fast variant, or the class of the model's ``model_type``): False for the
    Llama/Gemma-style fast classes, True for every other, ``PreTrainedTokenizerFast`` included.
    """
    config = tokenizer_config or {}
    if "clean_up_tokenization_spaces" in config:
        return bool(config["clean_up_tokenization_spaces"])
    cls = config.get("tokenizer_class") or TOKENIZER_CLASS_BY_MODEL_TYPE.get(model_type or "")
    if cls is None:
        return True
    fast = cls if cls.endswith("Fast") or f"{cls}Fast" not in TOKENIZER_CLASSES else f"{cls}Fast"
    return fast not in CLEAN_UP_OFF_BY_DEFAULT
