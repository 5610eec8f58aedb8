"""SN29's per-sample tokenization rule, with a cache per (tokenizer fingerprint, settings, sample).

The rule, as the subnet's validators apply it to every sample:

1. a text longer than ``cap_sample_len`` characters is cut at the last space before the cap (at the cap
   when there is none) and marked *capped* (``cap_sample_len`` 0: no cap);
2. ``ids = tokenizer(text)["input_ids"]`` with the tokenizer's default special tokens; if
   ``tokenizer.decode(ids) != text`` the sample scores +inf (a *decode failure*; more than
   ``max_tokenize_fails`` of them reject the tokenizer);
3. the EOS id is appended unless the text was capped;
4. more than ``max_sequence_len`` ids scores +inf (``max_sequence_len`` 0: no limit).

Exact by construction. The network runs this rule on transformers 4.44.0 / tokenizers 0.19.1, whose
tokenizer classes build some pipelines differently from transformers 5's (cl100k declared
``GPT2TokenizerFast``, Llama tokenizers with ``add_bos_token: false``). A tokenizer loaded by
:func:`sn29_growth.eval.tokenizers.load_tokenizer` is a
:class:`~sn29_growth.network.exact.NetworkTokenizer`: the whole rule runs in a worker on that very
stack, and the tokenization records its engine. Any other tokenizer object (one this package trained in
memory, or transformers 5's when the network's stack cannot run here) goes through the emulation below:
transformers 5's encoding, then 4.44's decode clean-up (``" ,"`` → ``","``, ``" n't"`` → ``"n't"``, …)
when the tokenizer is marked for it (:data:`NETWORK_CLEAN_UP`); it agrees with the network only for the
tokenizer families the slow parity suite shows identical (``tests/test_tokenizer_parity.py``).

BOS tokens. A tokenizer that prepends a BOS token fails step 2 (the decoded text starts with the BOS
string), so under the subnet's rule every sample is a decode failure and the tokenizer is rejected. That
is what this module does by default (``allow_bos=False``), with the failure named ``bos`` so the rejection
says why. ``allow_bos=True`` is an explicit opt-out for local experiments: a leading BOS is kept in the
ids (the model is scored after it) and left out of the round-trip comparison. It is part of the settings
fingerprint, so losses computed either way never mix in a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sn29_growth.atomic import atomic_write_json
from sn29_growth.corpus import Sample
from sn29_growth.eval.data import sample_key
from sn29_growth.network.config import NETWORK_TOKENIZERS, NETWORK_TRANSFORMERS
from sn29_growth.network.tokenizer import clean_up_tokenization

log = logging.getLogger(__name__)

DECODE = "decode"  # decode(ids) != text
BOS = "bos"  # decode fails only because the tokenizer prepends a BOS token
TOO_LONG = "too_long"  # more than max_sequence_len ids
FAILURES = (DECODE, BOS, TOO_LONG)


@dataclass(frozen=True)
class TokenizeSettings:
    """The competition values that decide how a sample is tokenized."""

    cap_sample_len: int
    max_sequence_len: int
    allow_bos: bool = False

    def __post_init__(self) -> None:
        for name in ("cap_sample_len", "max_sequence_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be an integer >= 0 (0: none), got {value!r}")
        if not isinstance(self.allow_bos, bool):
            raise ValueError(f"allow_bos: must be true/false, got {self.allow_bos!r}")

    @classmethod
    def from_competition(
        cls, competition, *, own_tokenizer: bool = False, allow_bos: bool = False
    ) -> TokenizeSettings:
        """The competition's limits for its own tokenizer or a model's (see ``Competition.sample_limits``);
        ValueError when the competition gives a model's own tokenizer no ``max_sequence_len``."""
        cap, limit = competition.sample_limits(own_tokenizer)
        if limit is None:
            raise ValueError(
                "the competition sets no max_sequence_len, without which the network's validators cannot "
                "score a model's own tokenizer"
            )
        return cls(cap, limit, allow_bos)

    def as_dict(self) -> dict:
        return {
            "cap_sample_len": self.cap_sample_len,
            "max_sequence_len": self.max_sequence_len,
            "allow_bos": self.allow_bos,
        }

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Tokenized:
    """One sample after the rule: ``ids`` (None when it scores +inf), whether it was capped, and why not."""

    sample_id: str
    ids: tuple[int, ...] | None
    capped: bool
    failure: str | None = None

    def __post_init__(self) -> None:
        if (self.ids is None) != (self.failure is not None):
            raise ValueError("failure: must be set exactly when ids is None")
        if self.failure is not None and self.failure not in FAILURES:
            raise ValueError(f"failure: {self.failure!r} is not one of {FAILURES}")


@dataclass(frozen=True)
class TokenizedSet:
    """The samples of one evaluation tokenized by one tokenizer; ``engine`` names the stack that ran the
    rule (:func:`tokenizer_engine`)."""

    tokenizer_fingerprint: str
    settings: TokenizeSettings
    items: tuple[Tokenized, ...]
    engine: str = ""

    @property
    def exact(self) -> bool:
        return self.engine == EXACT_ENGINE

    @property
    def decode_failures(self) -> int:
        """Samples that failed the round trip (including BOS failures); too-long samples do not count."""
        return sum(1 for t in self.items if t.failure in (DECODE, BOS))

    @property
    def bos_failures(self) -> int:
        return sum(1 for t in self.items if t.failure == BOS)

    @property
    def sequences(self) -> list[tuple[int, ...] | None]:
        return [t.ids for t in self.items]

    @property
    def max_id(self) -> int:
        return max((max(t.ids) for t in self.items if t.ids), default=-1)

    def rejection(self, max_tokenize_fails: int) -> str | None:
        """Why the tokenizer is rejected (more than ``max_tokenize_fails`` decode failures), or None."""
        fails = self.decode_failures
        if fails <= max_tokenize_fails:
            return None
        if self.bos_failures == fails:
            return (
                f"tokenizer adds a BOS token: {fails} samples fail the decode round trip "
                f"(max_tokenize_fails={max_tokenize_fails})"
            )
        return f"tokenizer fails the decode round trip on {fails} samples (max_tokenize_fails={max_tokenize_fails})"


def cap_text(text: str, cap_sample_len: int) -> tuple[str, bool]:
    """Step 1: cut at the last space before ``cap_sample_len`` (at the cap when there is none); 0: no cap."""
    if not cap_sample_len or len(text) <= cap_sample_len:
        return text, False
    cut = text.rfind(" ", 0, cap_sample_len)
    return (text[:cut] if cut >= 0 else text[:cap_sample_len]), True


EXACT_ENGINE = f"transformers {NETWORK_TRANSFORMERS} / tokenizers {NETWORK_TOKENIZERS}"


def tokenizer_engine(tokenizer) -> str:
    """Which stack runs the rule for ``tokenizer``: the network's (exact) or an emulation on ours."""
    if getattr(tokenizer, "exact", False):
        return EXACT_ENGINE
    import transformers

    return f"emulated on transformers {transformers.__version__}"


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides how ``tokenizer`` encodes and decodes (for a tokenizer on the
    network's stack: computed there, the stack's versions included)."""
    if getattr(tokenizer, "exact", False):
        return f"x{tokenizer.fingerprint}"
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    special = {
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": getattr(tokenizer, "bos_token_id", None),
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "add_eos_token": getattr(tokenizer, "add_eos_token", None),
        "clean_up_tokenization_spaces": getattr(tokenizer, "clean_up_tokenization_spaces", None),
        "network_clean_up": network_clean_up(tokenizer),
    }
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


NETWORK_CLEAN_UP = "sn29_network_clean_up"
"""Attribute set on a loaded tokenizer: whether the network's transformers 4.44 cleans up on decode."""


def network_clean_up(tokenizer) -> bool:
    return bool(getattr(tokenizer, NETWORK_CLEAN_UP, False))


def network_decode(tokenizer, ids: Sequence[int]) -> str:
    """``tokenizer.decode(ids)`` as transformers 4.44 computes it (see the module docstring)."""
    text = tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)
    return clean_up_tokenization(text) if network_clean_up(tokenizer) else text


def _apply_rule(
    tokenizer, sample_id: str, text: str, ids: list[int], capped: bool, s: TokenizeSettings
) -> Tokenized:
    bos = getattr(tokenizer, "bos_token_id", None)
    leading_bos = bos is not None and len(ids) > 0 and ids[0] == bos
    if s.allow_bos and leading_bos:
        round_trip = network_decode(tokenizer, ids[1:]) == text
    else:
        round_trip = network_decode(tokenizer, ids) == text
    if not round_trip:
        failure = BOS if leading_bos and network_decode(tokenizer, ids[1:]) == text else DECODE
        return Tokenized(sample_id, None, capped, failure)
    if not capped:
        ids = [*ids, tokenizer.eos_token_id]
    if s.max_sequence_len and len(ids) > s.max_sequence_len:
        return Tokenized(sample_id, None, capped, TOO_LONG)
    return Tokenized(sample_id, tuple(int(i) for i in ids), capped)


def tokenize_sample(tokenizer, sample: Sample, settings: TokenizeSettings) -> Tokenized:
    """Apply the per-sample rule to one sample."""
    return _tokenize(tokenizer, [sample], settings)[0]


def _tokenize(tokenizer, samples: Sequence[Sample], settings: TokenizeSettings) -> list[Tokenized]:
    if getattr(tokenizer, "exact", False):
        items = tokenizer.apply_rule(
            [s.text for s in samples], settings.cap_sample_len, settings.max_sequence_len, settings.allow_bos
        )
        return [
            Tokenized(s.id, ids, capped, failure)
            for s, (ids, capped, failure) in zip(samples, items, strict=True)
        ]
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos_token_id; the per-sample rule appends EOS")
    capped = [cap_text(s.text, settings.cap_sample_len) for s in samples]
    if not capped:
        return []
    encoded = tokenizer([text for text, _ in capped])["input_ids"]
    return [
        _apply_rule(tokenizer, s.id, text, list(ids), was_capped, settings)
        for s, (text, was_capped), ids in zip(samples, capped, encoded, strict=True)
    ]


class TokenizationCache:
    """Tokenizations per (tokenizer fingerprint, settings fingerprint, sample key), in memory and on disk.

    With a ``directory`` each (tokenizer, settings) pair has one JSON file, rewritten atomically when new
    samples were tokenized.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._tables: dict[tuple[str, str], dict[str, list]] = {}
        self.hits = 0
        self.misses = 0

    def _path(self, key: tuple[str, str]) -> Path | None:
        return None if self.directory is None else self.directory / f"tok-{key[0]}-{key[1]}.json"

    def _table(self, key: tuple[str, str]) -> dict[str, list]:
        if key not in self._tables:
            table: dict[str, list] = {}
            path = self._path(key)
            if path is not None and path.is_file():
                try:
                    table = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    log.warning("tokenization cache: unreadable %s; starting afresh", path)
            self._tables[key] = table
        return self._tables[key]

    def tokenize(self, tokenizer, samples: Sequence[Sample], settings: TokenizeSettings) -> TokenizedSet:
        fp = tokenizer_fingerprint(tokenizer)
        key = (fp, settings.fingerprint)
        table = self._table(key)
        keys = [sample_key(s) for s in samples]
        todo = [s for s, k in zip(samples, keys, strict=True) if k not in table]
        self.hits += len(samples) - len(todo)
        self.misses += len(todo)
        if todo:
            for s, t in zip(todo, _tokenize(tokenizer, todo, settings), strict=True):
                table[sample_key(s)] = [None if t.ids is None else list(t.ids), t.capped, t.failure]
            path = self._path(key)
            if path is not None:
                atomic_write_json(path, table, indent=None)
        items = []
        for s, k in zip(samples, keys, strict=True):
            ids, was_capped, failure = table[k]
            items.append(Tokenized(s.id, None if ids is None else tuple(ids), bool(was_capped), failure))
        return TokenizedSet(fp, settings, tuple(items), tokenizer_engine(tokenizer))


def tokenize_samples(
    tokenizer, samples: Sequence[Sample], settings: TokenizeSettings, cache: TokenizationCache | None = None
) -> TokenizedSet:
    """Apply the per-sample rule to every sample (through ``cache`` when given)."""
    return (cache or TokenizationCache()).tokenize(tokenizer, samples, settings)
