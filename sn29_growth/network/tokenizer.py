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


def _token_contents(data: dict[str, Any]) -> set[str]:
    model = data.get("model") or {}
    vocab = model.get("vocab")
    out: set[str] = set()
    if isinstance(vocab, dict):
        out.update(k for k in vocab if isinstance(k, str))
    elif isinstance(vocab, list):
        out.update(p[0] for p in vocab if isinstance(p, list | tuple) and p and isinstance(p[0], str))
    out.update(
        t["content"]
        for t in data.get("added_tokens") or []
        if isinstance(t, dict) and isinstance(t.get("content"), str)
    )
    return out


def tokenizer_json_size(data: dict[str, Any]) -> int:
    """The number of ids a ``tokenizer.json`` can produce (largest id + 1)."""
    ids = _token_ids(data)
    return max(ids) + 1 if ids else 0


def missing_ids(data: dict[str, Any], vocab_size: int) -> list[int]:
    """The ids below ``vocab_size`` that no token of a ``tokenizer.json`` has (gaps and rows past its end)."""
    ids = _token_ids(data)
    return [i for i in range(vocab_size) if i not in ids]


def special_added_token(token_id: int, content: str) -> dict[str, Any]:
    """A tokenizer.json ``added_tokens`` entry for a special token that normal text never produces."""
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def placeholder_tokens(data: dict[str, Any], ids: list[int]) -> list[dict[str, Any]]:
    """One placeholder special token per id: ``<|extra_{id}|>``, made distinct from every existing token."""
    taken = _token_contents(data)
    out = []
    for i in ids:
        content, n = EXTRA_TOKEN.format(i), 0
        while content in taken:
            n += 1
            content = EXTRA_TOKEN.format(f"{i}_{n}")
        taken.add(content)
        out.append(special_added_token(i, content))
    return out


def with_placeholders(data: dict[str, Any], new: list[dict[str, Any]]) -> dict[str, Any]:
    """``tokenizer.json`` with the placeholder tokens ``new`` added at their own ids.

    tokenizers does not keep the ids an ``added_tokens`` entry states: a token missing from the model's
    vocabulary gets the next id the library picks (0.19: past the largest added id; 0.20+: the first free
    id past the vocabulary's entry count). When the placeholders follow on from the largest id with no gap
    below it (Llama-2, Llama-3) every version picks their stated ids, so they are only appended to
    ``added_tokens`` and the model is left alone. When they fill gaps (cl100k has no token at 100256 and
    100261..100275) the ids are made explicit: each placeholder, and each added token the vocabulary lacks,
    is put in the model's vocabulary (a dict: BPE, WordPiece, WordLevel) at its id, as cl100k's own special
    tokens are. No merge produces such an entry, and the added-token split takes it before the model sees
    the text. A Unigram vocabulary is a list (ids are positions): gaps there are refused.
    """
    size = tokenizer_json_size(data)
    old_added = list(data.get("added_tokens") or [])
    model = data.get("model") or {}
    vocab = model.get("vocab")
    if [t["id"] for t in new] != list(range(size, size + len(new))):
        if not isinstance(vocab, dict):
            raise NetworkFormatError(
                f"tokenizer.json: its {model.get('type', 'unknown')} model numbers tokens by position, so ids "
                f"below {size} without a token cannot be given one; only ids from {size} upwards can"
            )
        explicit = {t["content"]: t["id"] for t in old_added if t.get("content") not in vocab}
        model = {**model, "vocab": {**vocab, **explicit, **{t["content"]: t["id"] for t in new}}}
    added = sorted([*old_added, *new], key=lambda t: t["id"])
    return network_tokenizer_json({**data, "model": model, "added_tokens": added})


def check_token_ids(
    source: dict[str, Any], path: Path, vocab_size: int, placeholders: list[dict[str, Any]]
) -> None:
    """Load the extended ``tokenizer.json`` with the installed ``tokenizers`` and check that every id of
    ``source`` (the tokenizer.json it was extended from) keeps its token, every id below ``vocab_size``
    has one, none lies above, and each placeholder has its own id."""
    import json

    from tokenizers import Tokenizer

    before = Tokenizer.from_str(json.dumps(source))
    after = Tokenizer.from_file(str(path))
    problems = [f"id {i} has no token" for i in range(vocab_size) if after.id_to_token(i) is None]
    largest = max(after.get_vocab(with_added_tokens=True).values(), default=-1)
    if largest >= vocab_size:
        problems.append(f"the largest id is {largest}")
    problems += [
        f"id {i} changed from {old!r} to {after.id_to_token(i)!r}"
        for i, old in sorted((i, t) for t, i in before.get_vocab(with_added_tokens=True).items())
        if after.id_to_token(i) != old
    ]
    problems += [
        f"{t['content']} has id {got}, not {t['id']}"
        for t in placeholders
        if (got := after.token_to_id(t["content"])) != t["id"]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        raise NetworkFormatError(
            f"{path}: the extended tokenizer does not keep its ids and cover 0..{vocab_size - 1}: {shown}"
        )


def extend_tokenizer_files(src: Path, dst: Path, old_vocab: int, new_vocab: int) -> int:
    """Copy the tokenizer files; when the vocabulary grows, give every embedding row a token.

    The rule: when ``new_vocab > old_vocab``, every id below ``new_vocab`` that no token has — the new
    rows, the padded rows of an embedding larger than the tokenizer, and gaps in the tokenizer's own ids
    (cl100k has none at 100256 and 100261..100275) — gets a placeholder ``<|extra_{id}|>`` special token
    (never produced by normal text: the added-token split matches only that exact string, unnormalized),
    so that afterwards the ids are exactly ``0..new_vocab-1``, each with one distinct token. The tokens
    are written straight into ``tokenizer.json`` (see :func:`with_placeholders`) and
    ``tokenizer_config.json``'s ``added_tokens_decoder`` so that nothing else about the tokenizer
    changes; the files are then in the network's form and checked with :func:`check_token_ids`.

    A tokenizer with an id ``>= new_vocab`` is refused (the grown model would give it no embedding row).
    Without vocabulary growth the files are copied byte for byte, padded rows and gaps included (rows
    without a token are allowed; ids without a row are not). Returns the number of tokens added.
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
    if size > new_vocab:
        raise NetworkFormatError(
            f"--vocab-size {new_vocab}: the tokenizer of {src} has ids up to {size - 1}, which the grown model "
            f"would have no embedding row for; grow to at least {size}"
        )
    if size > old_vocab:
        log.warning(
            "the tokenizer of %s has ids up to %d but the model only %d rows; the grown model covers them",
            src,
            size - 1,
            old_vocab,
        )
    new = placeholder_tokens(data, missing_ids(data, new_vocab))
    if not new:
        return 0
    below = sum(t["id"] < size for t in new)
    if below:
        log.info(
            "placeholder tokens for %d id(s) missing below the tokenizer's largest id %d", below, size - 1
        )
    atomic_write_json(dst / TOKENIZER_JSON, with_placeholders(data, new), indent=2)
    if (dst / TOKENIZER_CONFIG).is_file():
        config = read_json_object(dst / TOKENIZER_CONFIG)
        if isinstance(config.get("added_tokens_decoder"), dict):
            decoder = dict(config["added_tokens_decoder"])
            for t in new:
                decoder[str(t["id"])] = {k: v for k, v in t.items() if k != "id"}
            config["added_tokens_decoder"] = decoder
        atomic_write_json(dst / TOKENIZER_CONFIG, network_tokenizer_config(config), indent=2)
    check_token_ids(data, dst / TOKENIZER_JSON, new_vocab, new)
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
