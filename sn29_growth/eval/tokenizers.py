"""Which tokenizer scores a model, as the network decides it, and loading tokenizers with the network's
decode semantics.

A model's own tokenizer (``tokenizer.json`` in its folder, under ``free_tokenizer``) must load on the
network's stack and pass the round trips; when it cannot be used the competition's tokenizer scores the
model instead, as the reference validator does. Every tokenizer is loaded marked with whether the
network's transformers (4.44) cleans up spaces on decode (:mod:`sn29_growth.eval.tokenize`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.checkpoint import (
    TOKENIZER_JSON,
    TOKENIZER_LOAD_FILES,
    file_size_problem,
    read_tokenizer_max_id,
)
from sn29_growth.eval.competitions import Competition
from sn29_growth.eval.tokenize import TokenizationCache, TokenizedSet, TokenizeSettings
from sn29_growth.network.rules import NetworkCheck, check_model

log = logging.getLogger(__name__)

PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


class TokenizerUnusable(ValueError):
    """A model's tokenizer cannot score it (the message is the reason)."""


class TokenIdBeyondVocab(TokenizerUnusable):
    """A model's own tokenizer can emit ids the model has no embedding for: the model is rejected (no
    other tokenizer stands in)."""


def staged_tokenizer_folder(source: str | os.PathLike) -> tempfile.TemporaryDirectory:
    """A private temporary folder holding only the files a tokenizer is loaded from for scoring
    (:data:`~sn29_growth.checkpoint.TOKENIZER_LOAD_FILES`), hard links to the model folder's files (copies
    across file systems), each within its size limit; raises :class:`TokenizerUnusable` naming a file
    over its limit. Chat templates, generation configs and anything else a library might read stay out.
    The folder is removed when the returned object is cleaned up or collected."""
    root = Path(source)
    staged = tempfile.TemporaryDirectory(prefix="sn29-tokenizer-")
    try:
        for name in TOKENIZER_LOAD_FILES:
            src, dst = root / name, Path(staged.name) / name
            if not src.is_file():
                continue
            problem = file_size_problem(name, src.stat().st_size)
            if problem is None:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
                problem = file_size_problem(name, dst.stat().st_size)
            if problem:
                raise TokenizerUnusable(problem)
    except BaseException:
        staged.cleanup()
        raise
    return staged


def _staged(source: str | os.PathLike) -> tuple[str | os.PathLike, tempfile.TemporaryDirectory | None]:
    """Where to load ``source`` from: a model folder's staged copy (and the handle keeping it), or a Hub name."""
    if Path(source).is_dir():
        staged = staged_tokenizer_folder(source)
        return staged.name, staged
    return source, None


@dataclass(frozen=True)
class TokenizerPolicy:
    """Which tokenizer scores a model: its own (``own``, i.e. free_tokenizer), with the competition's
    standing in when the own one cannot be used (``fallback``, as the reference does), else the
    competition's; ``allow_bos`` is the local opt-out of :mod:`sn29_growth.eval.tokenize`."""

    own: bool
    fallback: bool = True
    allow_bos: bool = False


EMULATE_ENV = "SN29_TOKENIZE_EMULATED"
"""Set to 1 to tokenize with the in-process emulation even where the network's stack can run."""


def load_tokenizer(source: str | os.PathLike, model_type: str | None = None):
    """The tokenizer of a folder or a Hub name, as the network loads it; a folder's from a staged copy
    of the files scoring needs (:func:`staged_tokenizer_folder`).

    On the network's stack (:func:`~sn29_growth.network.exact.load_network_tokenizer`, exact by
    construction) wherever it can run; a tokenizer 4.44 cannot load raises
    :class:`TokenizerUnusable` with 4.44's own error, as the network rejects it. Only when the stack
    itself cannot be set up here (or ``$SN29_TOKENIZE_EMULATED`` is 1) the emulation on transformers 5
    stands in, marked with why (``emulation_reason``); every tokenization then says it was emulated.
    """
    from sn29_growth.network.exact import TokenizerWorkerError, load_network_tokenizer, stack_available

    reason = "SN29_TOKENIZE_EMULATED=1" if os.environ.get(EMULATE_ENV) == "1" else stack_available()
    if reason is None:
        where, staged = _staged(source)
        try:
            tokenizer = load_network_tokenizer(where)
        except TokenizerWorkerError as e:
            from sn29_growth.eval.memory import current_memory_limit, describe_limit

            died = "died" in str(e) and current_memory_limit() is not None
            why = f"{e} ({describe_limit()})" if died else str(e)
            raise TokenizerUnusable(f"does not load on the network's stack: {why}") from None
        tokenizer.staged = staged  # reloaded from there should its worker restart
        return tokenizer
    log.warning(
        "tokenizing %s by emulation: the network's tokenizer stack is unavailable (%s)", source, reason
    )
    return emulated_tokenizer(source, model_type, reason)


def emulated_tokenizer(source: str | os.PathLike, model_type: str | None = None, reason: str = "requested"):
    """transformers 5's tokenizer marked with whether the network's decode cleans up spaces (the
    emulation; see :mod:`sn29_growth.eval.tokenize`)."""
    from sn29_growth.checkpoint import load_tokenizer as load_files
    from sn29_growth.eval.tokenize import NETWORK_CLEAN_UP
    from sn29_growth.network.tokenizer import network_cleans_up

    where, staged = _staged(source)
    try:
        tokenizer = load_files(where)
        setattr(tokenizer, NETWORK_CLEAN_UP, network_cleans_up(_tokenizer_config(where), model_type))
    finally:
        if staged is not None:
            staged.cleanup()
    tokenizer.emulation_reason = reason
    return tokenizer


def _tokenizer_config(source: str | os.PathLike) -> dict[str, Any] | None:
    """The ``tokenizer_config.json`` of a folder, or of a Hub tokenizer in the local cache (None if absent)."""
    from sn29_growth.checkpoint import TOKENIZER_CONFIG, read_json_object

    path = Path(source) / TOKENIZER_CONFIG
    if not Path(source).is_dir():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(os.fspath(source), TOKENIZER_CONFIG)
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return None
    return read_json_object(path)


@dataclass(frozen=True)
class Tokenization:
    """How one model's samples were tokenized: the tokenizer, its name (``own`` or the competition's),
    the settings and tokens, and a note when the competition's tokenizer stood in for the model's own."""

    tokenizer: Any
    name: str
    settings: TokenizeSettings
    tokens: TokenizedSet
    note: str | None = None


class Tokenizers:
    """The tokenizers of one evaluation: the tokenization cache and the competition tokenizers, loaded once."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache = TokenizationCache(cache_dir)
        self._competition: dict[str, Any] = {}

    def competition_tokenizer(self, competition: Competition):
        if competition.tokenizer not in self._competition:
            self._competition[competition.tokenizer] = load_tokenizer(competition.tokenizer)
        return self._competition[competition.tokenizer]

    def choose(
        self,
        path: Path,
        model_type: str | None,
        competition: Competition,
        policy: TokenizerPolicy,
        samples,
        network: NetworkCheck | None = None,
        vocab_size: int | None = None,
    ) -> Tokenization:
        """The tokenization the network's rule gives the model at ``path``, or raises
        :class:`TokenizerUnusable` with the reason.

        A model's own tokenizer (``tokenizer.json``, when ``policy.own``) must load on the network's stack
        and pass the round trips; if it does not, the competition's tokenizer scores the model instead,
        as the reference does (``policy.fallback``), else the model is rejected for it. ``network``: the
        folder's network check when the caller has it already (else it is read here). ``vocab_size``:
        the model's; an own tokenizer whose files name a larger id is rejected before it is loaded
        (:class:`TokenIdBeyondVocab`), not replaced.
        """
        own_problem = None
        if (policy.own or not competition.tokenizer) and (path / TOKENIZER_JSON).is_file():
            if competition.sample_limits(own_tokenizer=True)[1] is None:  # the reference rejects, no fallback
                raise TokenizerUnusable(
                    "the competition sets no max_sequence_len, without which the network's validators "
                    "cannot score a model's own tokenizer"
                )
            try:
                problem = (network or check_model(path)).loading_problem()
                if problem:
                    raise TokenizerUnusable(problem)
                _check_max_id(path, vocab_size)
                return self._tokenize_with(path, model_type, competition, policy, samples)
            except (*PASS_THROUGH, TokenIdBeyondVocab):
                raise
            except TokenizerUnusable as e:
                own_problem = str(e)
            except BaseException as e:  # e.g. a tokenizers PanicException, a BaseException
                log.warning("own tokenizer of %s failed", path, exc_info=True)
                own_problem = f"tokenizer: {type(e).__name__}: {e}"
            if not (competition.tokenizer and policy.fallback):
                raise TokenizerUnusable(own_problem)
        if not competition.tokenizer:
            raise TokenizerUnusable("the model has no tokenizer.json and the competition names no tokenizer")
        found = self._tokenize_with(None, model_type, competition, policy, samples)
        if own_problem:
            note = f"own tokenizer unusable ({own_problem}); scored with {competition.tokenizer}, as the network does"
            if found.note:
                note = f"{note}; {found.note}"
            return Tokenization(found.tokenizer, found.name, found.settings, found.tokens, note)
        return found

    def _tokenize_with(
        self,
        path: Path | None,
        model_type: str | None,
        competition: Competition,
        policy: TokenizerPolicy,
        samples,
    ) -> Tokenization:
        own = path is not None
        settings = TokenizeSettings.from_competition(
            competition, own_tokenizer=own, allow_bos=policy.allow_bos
        )
        tokenizer = load_tokenizer(path, model_type) if own else self.competition_tokenizer(competition)
        tokens = self.cache.tokenize(tokenizer, samples, settings)
        reason = tokens.rejection(competition.max_tokenize_fails)
        if reason:
            raise TokenizerUnusable(reason)
        note = None
        if not tokens.exact:
            why = getattr(tokenizer, "emulation_reason", "not a tokenizer on the network's stack")
            note = f"tokenized by emulation ({tokens.engine}; {why}): may differ from the network"
        return Tokenization(tokenizer, "own" if own else competition.tokenizer, settings, tokens, note)


def _check_max_id(path: Path, vocab_size: int | None) -> None:
    """The cheap check before any tokenization: the largest id the tokenizer files name vs ``vocab_size``."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return
    top = read_tokenizer_max_id(path)
    if top is not None and top >= vocab_size:
        raise TokenIdBeyondVocab(f"token id {top} is not below the model's vocab_size {vocab_size}")


PROBE_SAMPLES = 64
"""Held-out samples of the embedded corpus a tokenizer's round trips are probed on by ``sn29 check``."""


def tokenizer_findings_on_network(path: str | os.PathLike, max_tokenize_fails: int = 3) -> tuple:
    """Run a folder's tokenizer on the network's own stack: load it as 4.44 does and apply the per-sample
    rule (no cap, no length limit) to :data:`PROBE_SAMPLES` held-out samples of the embedded corpus.

    Findings (:class:`~sn29_growth.network.rules.Finding`): an error when 4.44 cannot load it, when more
    than ``max_tokenize_fails`` samples fail the round trip (the network then rejects the model; a BOS
    the tokenizer prepends is named), or when it has no EOS; a warning when the stack cannot run here.
    No finding for a folder without tokenizer files (the static rules say so)."""
    from sn29_growth.checkpoint import TOKENIZER_FILES
    from sn29_growth.corpus import load_corpus
    from sn29_growth.eval.tokenize import EXACT_ENGINE, TokenizeSettings, tokenize_samples
    from sn29_growth.network.exact import TokenizerWorkerError, load_network_tokenizer, stack_available
    from sn29_growth.network.rules import Finding

    root = Path(path)
    if not any((root / n).is_file() for n in TOKENIZER_FILES):
        return ()
    file = TOKENIZER_JSON if (root / TOKENIZER_JSON).is_file() else "tokenizer files"
    reason = stack_available()
    if reason is not None:
        return (
            Finding("warning", file, "network_stack_unavailable", f"not run on {EXACT_ENGINE}: {reason}"),
        )
    try:
        staged = staged_tokenizer_folder(root)
    except TokenizerUnusable as e:
        return (Finding("error", file, "size", str(e), True),)
    try:
        tokenizer = load_network_tokenizer(staged.name)
    except TokenizerWorkerError as e:
        staged.cleanup()
        return (Finding("error", file, "network_load", f"does not load on {EXACT_ENGINE}: {e}", True),)
    tokenizer.staged = staged
    if tokenizer.eos_token_id is None:
        return (Finding("error", file, "no_eos", f"no eos_token_id on {EXACT_ENGINE}: the rule appends EOS"),)
    samples = load_corpus().held_out[:PROBE_SAMPLES]
    tokens = tokenize_samples(tokenizer, samples, TokenizeSettings(0, 0))
    reason = tokens.rejection(max_tokenize_fails)
    if reason:
        return (
            Finding("error", file, "round_trip", f"on {EXACT_ENGINE}: {reason} of {len(samples)} probed"),
        )
    return ()


def check_on_network(path: str | os.PathLike) -> NetworkCheck:
    """:func:`~sn29_growth.network.rules.check_model` plus the tokenizer run on the network's stack."""
    static = check_model(path)
    return NetworkCheck(static.path, static.findings + tokenizer_findings_on_network(path))


def tokenization_note() -> str:
    """One line for a step's table: whether tokenization runs on the network's stack here, or why not."""
    from sn29_growth.eval.tokenize import EXACT_ENGINE
    from sn29_growth.network.exact import stack_available

    reason = "SN29_TOKENIZE_EMULATED=1" if os.environ.get(EMULATE_ENV) == "1" else stack_available()
    if reason is None:
        return f"tokenization: exact, on the network's stack ({EXACT_ENGINE})"
    return f"tokenization: EMULATED on transformers 5 ({reason}); scores may differ from the network's"
