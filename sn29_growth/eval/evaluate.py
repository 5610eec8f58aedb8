"""Evaluate models side by side as an SN29 validator would: checks → losses → wins → weights.

:func:`evaluate_models` takes local checkpoint directories and/or ``org/name[@revision]`` Hub references,
in age order (the first is the oldest: it holds the advantage of an earlier commit), and returns an
:class:`EvaluationResult` whose :meth:`~EvaluationResult.format_table` is the scoring table.
:func:`evaluate_by_competition` (``sn29 evaluate``) evaluates each model in the competition of its
architecture, one result per competition.

For each model, in order: the checks that need no weights (file list and ``config.json``; a Hub model
fetches only ``config.json`` for them), the tokenizer and the per-sample tokenization rule, the loss
cache, and only then the weights. A model that fails any check is a result row with a reason.

Defaults:

- the competition is the one whose ``model_types`` holds the first model's architecture (the packaged
  ``competitions.json``: ``c00`` for Llama, ``c01`` for Phi3), unless named;
- the dataset is the competition's (FineWeb-edu) when the datasets-server is reachable, else ``local``
  (the embedded corpus's held-out part), and the table header says so;
- the tokenizer is the competition's unless ``free_tokenizer`` lets a model bring its own. The ``local``
  dataset, and offline mode, imply ``free_tokenizer``: the competition tokenizers cannot be downloaded
  offline, and the embedded data goes with the models' own tokenizers;
- fp32 on CPU; bf16 with SDPA attention on CUDA, through accelerate's ``device_map="auto"`` when the
  model does not fit on the GPU.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sn29_growth.checkpoint import CONFIG_FILE, try_read_config
from sn29_growth.eval import checks, memory
from sn29_growth.eval.cache import LossCache, is_content_hash, model_content_hash, settings_fingerprint
from sn29_growth.eval.competitions import Competition, Competitions, default_competitions, load_competitions
from sn29_growth.eval.data import (
    DataSource,
    sample_key,
)
from sn29_growth.eval.environment import EnvironmentFailure, device_problem, environment_cause
from sn29_growth.eval.loss import ENGINE_VERSION, EngineSettings, summed_losses
from sn29_growth.eval.results import EvaluationResult, ModelResult
from sn29_growth.eval.samples import resolve_samples, worker_request, write_samples_file
from sn29_growth.eval.scoring import ModelLosses, ScoreSettings, score_competition
from sn29_growth.eval.timing import StageClock, with_worker
from sn29_growth.eval.tokenizers import (
    PASS_THROUGH,
    TokenizerPolicy,
    Tokenizers,
    TokenizerUnusable,
    tokenization_note,
)
from sn29_growth.modelref import ModelRef
from sn29_growth.network.rules import NetworkCheck, check_model

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("SN29_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sn29-growth"
    )
    return Path(base) / "eval"


# ------------------------------------------------------------------------------------------- models


# ------------------------------------------------------------------------------------------- pieces


def choose_competition(
    competitions: Competitions, architectures: Sequence[str | None], name: str | None = None
) -> Competition:
    """The named competition, or the first (by name) accepting the first architecture any competition accepts."""
    if name is not None:
        if name not in competitions:
            raise ValueError(f"competition {name!r} not found (have: {', '.join(competitions)})")
        return competitions[name]
    known = [a for a in architectures if a is not None]
    for arch in known:
        for comp in competitions.values():
            if comp.allows_model_type(arch):
                return comp
    if known:
        raise ValueError(f"no competition accepts architecture {known[0]}; name one with --competition")
    raise ValueError(
        "cannot infer the competition: no model has a readable config; name one with --competition"
    )


def _placement(device: str, n_params: int | None) -> dict[str, Any]:
    """``load_model`` keywords: the whole model on one device, or accelerate's device map on CUDA."""
    if device.startswith("cuda") and n_params:
        free, _ = torch.cuda.mem_get_info()
        if 2 * n_params > 0.8 * free:
            return {"device": None, "device_map": "auto"}
    return {"device": device}


@dataclass
class _Prepared:
    """A model after the weight-free checks."""

    ref: ModelRef
    name: str
    config: dict[str, Any] | None
    files: dict[str, int]
    rejection: str | None = None
    path: Path | None = None
    network: NetworkCheck | None = None  # read once: the table's column and the tokenizer's loadability
    unavailable: bool = False  # the files could not be fetched: no verdict on them
    content_hash: str | None = None  # the loss-cache key when the caller has digested the files already


class _Evaluator:
    def __init__(
        self, hub, cache_dir: Path | None, device: str, progress: bool, engine: EngineSettings | None
    ):
        self._hub = hub
        self.cache_dir = cache_dir
        self.device = device
        self.dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.progress = progress
        self.engine = engine
        self.losses = LossCache(cache_dir)
        self.tokenizers = Tokenizers(cache_dir / "tokens" if cache_dir is not None else None)
        self.clock = StageClock()  # the current model's stages

    @property
    def hub(self):
        if self._hub is None:
            from sn29_growth.hub.hf_client import HfHubClient

            self._hub = HfHubClient()
        return self._hub

    def _hub_cache(self) -> Path:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)

    def prepare(self, ref: ModelRef, name: str) -> _Prepared:
        """File list and config without weights (a Hub model fetches config.json only)."""
        try:
            return self._prepare(ref, name)
        except PASS_THROUGH:
            raise
        except BaseException as e:  # nothing a repository holds may stop the evaluation of the others
            log.warning("%s: preparation failed", name, exc_info=True)
            return _Prepared(ref, name, None, {}, rejection=f"unreadable: {type(e).__name__}: {e}")

    def _prepare(self, ref: ModelRef, name: str) -> _Prepared:
        if ref.path is not None:
            config, why = try_read_config(ref.path)
            return _Prepared(ref, name, config, checks.local_files(ref.path), rejection=why, path=ref.path)
        from sn29_growth.hub.protocol import HubError

        try:
            commit = self.hub.resolve_revision(ref.repo_id, ref.revision)
            files = {f.path: f.size for f in self.hub.repo_files(ref.repo_id, commit)}
            if CONFIG_FILE not in files:
                return _Prepared(ref, name, None, files, rejection="no config.json in the repository")
            snap = self.hub.download(
                ref.repo_id, commit, cache_dir=self._hub_cache(), allow_patterns=(CONFIG_FILE,)
            )
            ref = ref.at(commit)
            config, why = try_read_config(Path(snap))
            return _Prepared(ref, name, config, files, rejection=why)
        except HubError as e:
            why, unavailable = _hub_reason(e)
            return _Prepared(ref, name, None, {}, rejection=why, unavailable=unavailable)

    def fetch(self, prep: _Prepared) -> Path:
        if prep.path is None:
            prep.path = Path(
                self.hub.download(prep.ref.repo_id, prep.ref.revision, cache_dir=self._hub_cache())
            )
        return prep.path

    def gate(
        self, prep: _Prepared, block: int, competition: Competition, network: bool = True
    ) -> ModelResult | Path:
        """The checks that load no tokenizer and no weights, then the download: a path, or a rejected row.

        ``network``: also apply the network's rules, which parse the tokenizer files; an isolated
        evaluation leaves that to the model's worker, so that its parent parses none of them."""
        if network and prep.path is not None and prep.network is None:
            prep.network = check_model(prep.path)
        base = self._base(prep, block)
        if prep.rejection:
            return ModelResult(**base, rejection=prep.rejection, unavailable=prep.unavailable)
        if prep.config is None:
            return ModelResult(**base, rejection="config.json is missing or not a JSON object")
        reason = checks.precheck(prep.config, prep.files, competition)
        if reason:
            return ModelResult(**base, rejection=reason)
        from sn29_growth.hub.protocol import HubError

        try:
            path = self.clock.timed("download", self.fetch, prep)
        except HubError as e:
            why, unavailable = _hub_reason(e)
            return ModelResult(**base, rejection=why, unavailable=unavailable)
        if network and prep.network is None:
            prep.network = check_model(path)
        return path

    def _base(self, prep: _Prepared, block: int) -> dict[str, Any]:
        arch = checks.architecture(prep.config) if prep.config else None
        network = prep.network.summary() if prep.network else None
        return dict(name=prep.name, block=block, architecture=arch, network=network)

    def evaluate(
        self, prep: _Prepared, block: int, competition: Competition, policy: TokenizerPolicy, samples
    ) -> ModelResult:
        """One model's row, in this process. Whatever its files do, the result is a row, never a raise."""
        stage = "checks"
        self.clock = StageClock()
        try:
            gated = self.clock.timed("checks", self.gate, prep, block, competition)
            if isinstance(gated, ModelResult):
                return gated
            stage = "evaluation"
            row = self.clock.timed("checks", self._evaluate, prep, gated, block, competition, policy, samples)
            log.info("%s: %s", prep.name, self.clock.times().render())
            return replace(row, stages=self.clock.times())
        except (*PASS_THROUGH, EnvironmentFailure):
            raise
        except BaseException as e:  # e.g. a tokenizers PanicException (a BaseException) from hostile files
            _raise_if_environment(e)
            log.warning("%s: %s failed", prep.name, stage, exc_info=not isinstance(e, MemoryError))
            reason = (
                memory.out_of_memory_reason() if isinstance(e, MemoryError) else f"{type(e).__name__}: {e}"
            )
            return ModelResult(**self._base(prep, block), rejection=f"{stage}: {reason}")

    def _evaluate(
        self, prep: _Prepared, path: Path, block: int, competition: Competition, policy, samples
    ) -> ModelResult:
        base = self._base(prep, block)
        chosen = self._choose_tokenizer(prep, path, base, competition, policy, samples)
        if isinstance(chosen, ModelResult):
            return chosen
        tokens = chosen.tokens
        base.update(tokenizer=chosen.name)
        vocab = prep.config.get("vocab_size")
        max_id = max(checks.tokenizer_max_id(chosen.tokenizer), tokens.max_id)
        if isinstance(vocab, int) and max_id >= vocab:
            return ModelResult(
                **base, rejection=f"token id {max_id} is not below the model's vocab_size {vocab}"
            )

        content = prep.content_hash or self.clock.timed("hash", model_content_hash, path, self.cache_dir)
        base.update(content_hash=content)
        fp = settings_fingerprint(
            {
                "engine": ENGINE_VERSION,
                "dtype": str(self.dtype),
                "device": torch.device(self.device).type,
                "tokenizer": tokens.tokenizer_fingerprint,
                "tokenize": chosen.settings.as_dict(),
            }
        )
        keys = [sample_key(s) for s in samples]
        cached = self.losses.get(content, fp, keys)
        if len(cached) == len(keys):
            log.info("%s: all %d losses from the cache", prep.name, len(keys))
            return ModelResult(**base, losses=tuple(cached[k] for k in keys), note=chosen.note)
        row = self._load_and_score(prep, path, base, max_id, tokens, keys, cached, chosen.note)
        if not row.rejection:
            self.losses.put(content, fp, dict(zip(keys, row.losses, strict=True)))
        return row

    def _choose_tokenizer(
        self, prep: _Prepared, path: Path, base: dict[str, Any], competition: Competition, policy, samples
    ):
        """The tokenizer that scores this model and its tokenized samples, or the rejected row."""
        try:
            return self.clock.timed(
                "tokenize",
                self.tokenizers.choose,
                path,
                prep.config.get("model_type"),
                competition,
                policy,
                samples,
                prep.network,
                prep.config.get("vocab_size"),
            )
        except PASS_THROUGH:
            raise
        except TokenizerUnusable as e:
            if memory.is_out_of_memory(e):
                return ModelResult(**base, rejection=f"tokenizer: {memory.out_of_memory_reason()}: {e}")
            return ModelResult(**base, rejection=str(e))
        except BaseException as e:  # a broken tokenizer of one model must not stop the evaluation
            log.warning("%s: tokenizer failed", prep.name, exc_info=True)
            if memory.is_out_of_memory(e):
                return ModelResult(**base, rejection=f"tokenizer: {memory.out_of_memory_reason()}")
            return ModelResult(**base, rejection=f"tokenizer: {type(e).__name__}: {e}")

    def _load_and_score(
        self, prep: _Prepared, path: Path, base: dict[str, Any], max_id: int, tokens, keys, cached, note
    ) -> ModelResult:
        """Load the weights and compute the losses the cache does not hold; the model is freed after."""
        from sn29_growth.loading import ModelLoadError, load_model

        try:
            n_params = checks.count_parameters_safe(prep.config) if self.device.startswith("cuda") else None
            model = self.clock.timed(
                "load",
                load_model,
                path,
                dtype=self.dtype,
                attn_implementation="sdpa",
                network=True,
                **_placement(self.device, n_params),
            )
        except ModelLoadError as e:
            _raise_if_environment(e)
            return ModelResult(**base, rejection=f"load: {e}")
        try:
            reason = checks.check_vocab(max_id, model)
            if reason:
                return ModelResult(**base, rejection=reason)
            bad = checks.nonfinite_parameters(model)
            if bad:
                note = f"non-finite weights ({bad[0]}{', ...' if len(bad) > 1 else ''}): every sample +inf"
                return ModelResult(**base, losses=tuple(math.inf for _ in keys), note=note)
            todo = [i for i, k in enumerate(keys) if k not in cached]
            try:
                run = self.clock.timed(
                    "eval",
                    summed_losses,
                    model,
                    [tokens.items[i].ids for i in todo],
                    self.engine or EngineSettings.for_device(self.device),
                    progress=self.progress,
                    desc=prep.name,
                )
            except RuntimeError as e:
                _raise_if_environment(e)  # CUDA errors, the device out of memory: the host's fault
                log.warning("%s: evaluation failed", prep.name, exc_info=True)
                why = memory.out_of_memory_reason() if memory.is_out_of_memory(e) else ""
                return ModelResult(
                    **base, rejection=f"evaluation failed: {why or f'{type(e).__name__}: {e}'}"
                )
            fresh = dict(zip([keys[i] for i in todo], run.losses, strict=True))
            log.info("%s: %d samples, %.0f tokens/s", prep.name, len(todo), run.tokens_per_s)
            return ModelResult(
                **base, losses=tuple(cached[k] if k in cached else fresh[k] for k in keys), note=note
            )
        finally:
            del model
            if self.device.startswith("cuda") or (n_params or 0) > 100_000_000:
                gc.collect()  # return a big model's memory before the next one loads
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _hub_reason(error: BaseException) -> tuple[str, bool]:
    """The row's reason for a Hub error, and whether it leaves the model unevaluated rather than rejected:
    the Hub offline or out of reach, or a download cut short, says nothing about the model's files."""
    from sn29_growth.hub.protocol import HubUnavailable

    if isinstance(error, HubUnavailable) or getattr(error, "retryable", False):
        return f"could not be fetched: {type(error).__name__}: {error}", True
    return f"hub: {type(error).__name__}: {error}", False


def _raise_if_environment(error: BaseException) -> None:
    """Raise :class:`EnvironmentFailure` when ``error`` is the host's fault (never the model's row)."""
    cause = environment_cause(error)
    if cause is not None:
        raise EnvironmentFailure(cause) from error


def _isolated_row(
    evaluator: _Evaluator,
    prep: _Prepared,
    block: int,
    competition: Competition,
    request: dict[str, Any],
    timeout_s: float,
    worker_command: Sequence[str] | None,
) -> ModelResult:
    """Gate in this process (from the file list and ``config.json``: no tokenizer file is parsed here),
    then check, tokenize, load and score in a worker a timeout really kills."""
    from sn29_growth.eval.worker import run_in_worker

    evaluator.clock = StageClock()
    gated = evaluator.clock.timed("checks", evaluator.gate, prep, block, competition, False)
    if isinstance(gated, ModelResult):
        return gated
    request = {**request, "models": [{"key": prep.name, "path": str(gated)}]}
    result = run_in_worker(request, timeout_s, command=list(worker_command) if worker_command else None)
    base = evaluator._base(prep, block)
    if result.environment:
        raise EnvironmentFailure(result.environment)
    if not result.ok:
        return ModelResult(**base, rejection=f"evaluation failed: {result.error}", failed=True)
    row = (result.response or {}).get("models", {}).get(prep.name)
    if not isinstance(row, dict):
        return ModelResult(**base, rejection="evaluation failed: the worker returned no row", failed=True)
    parsed = ModelResult.from_json(row, name=prep.name, block=block)
    return replace(
        parsed,
        stages=with_worker(evaluator.clock.times(), parsed.stages, result.seconds),
    )


# ------------------------------------------------------------------------------------------- public


@dataclass(frozen=True)
class _Options:
    """How each competition's group is evaluated (see :func:`evaluate_models` for each keyword)."""

    dataset: str | DataSource | None = None
    samples: int | None = None
    seed: int = 0
    allow_bos: bool = False
    free_tokenizer: bool | None = None
    fallback_tokenizer: bool | None = None
    isolate: bool = False
    timeout_s: float = 3600.0
    worker_command: Sequence[str] | None = None


@dataclass
class _Session:
    """The models of one call after the weight-free checks, and what every group shares."""

    evaluator: _Evaluator
    prepared: list[_Prepared]
    table: Competitions
    device: str
    cache_path: Path | None

    def architectures(self) -> list[str | None]:
        return [checks.architecture(p.config) if p.config else None for p in self.prepared]


def _cache_path(cache_dir: str | os.PathLike | None | bool) -> Path | None:
    if cache_dir is True:
        return default_cache_dir()
    if cache_dir is None or cache_dir is False:
        return None
    return Path(cache_dir)


def _competition_table(competitions: Competitions | str | os.PathLike | None) -> Competitions:
    if isinstance(competitions, Competitions):
        return competitions
    if competitions is None:
        return default_competitions()
    return load_competitions(competitions)


def _warm_factory() -> None:
    """Start the warm worker factory now, so that its imports overlap the preparation."""
    from sn29_growth.eval.worker import warm_factory

    warm_factory()


def _start(
    models: Sequence[str | os.PathLike],
    names: Sequence[str] | None,
    competitions: Competitions | str | os.PathLike | None,
    device: str | None,
    cache_dir: str | os.PathLike | None | bool,
    hub,
    engine: EngineSettings | None,
    progress: bool,
) -> _Session:
    """Check the arguments and the host, then read every model's file list and ``config.json``."""
    if not models:
        raise ValueError("models: at least one model is needed")
    refs = [ModelRef.parse(m) for m in models]
    labels = list(names) if names is not None else [r.spec for r in refs]
    if len(labels) != len(refs) or len(set(labels)) != len(labels):
        raise ValueError("names: one distinct name per model is needed")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(device)
    if problem:
        raise EnvironmentFailure(problem)
    cache_path = _cache_path(cache_dir)
    evaluator = _Evaluator(hub, cache_path, device, progress, engine)
    prepared = [evaluator.prepare(r, n) for r, n in zip(refs, labels, strict=True)]
    return _Session(evaluator, prepared, _competition_table(competitions), device, cache_path)


def _group_rows(
    session: _Session,
    comp: Competition,
    members: Sequence[tuple[int, _Prepared]],
    options: _Options,
    choice,
    policy: TokenizerPolicy,
) -> list[ModelResult]:
    """Each member's row, in this process or each in its own worker."""
    evaluator, chosen = session.evaluator, choice.samples
    if not options.isolate:
        return [evaluator.evaluate(p, block, comp, policy, chosen) for block, p in members]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sn29-eval-") as tmp:
        request = worker_request(
            comp,
            ("", Path()),
            write_samples_file(Path(tmp) / "samples.json", choice.source.name, chosen),
            free_tokenizer=policy.own,
            seed=options.seed,
            device=session.device,
            cache_dir=session.cache_path,
            allow_bos=options.allow_bos,
            dataset=choice.source.name,
            fallback_tokenizer=policy.fallback,
        )
        return [
            _isolated_row(evaluator, p, block, comp, request, options.timeout_s, options.worker_command)
            for block, p in members
        ]


def _scored(
    rows: list[ModelResult], comp: Competition, seed: int, current_block: int
) -> tuple[list[ModelResult], int]:
    """The rows with their wins, win rates and weights, and the number of sample groups scored."""
    scored = [ModelLosses(uid=r.block, block=r.block, losses=r.losses) for r in rows if not r.rejection]
    if not scored:
        return rows, 0
    score = score_competition(
        scored, ScoreSettings.from_competition(comp), current_block=current_block, seed=seed
    )
    rows = [
        r
        if r.rejection
        else _with_score(
            r,
            score.wins.get(r.block, 0),
            score.win_rates.get(r.block, 0.0),
            score.weights.get(r.block, 0.0),
        )
        for r in rows
    ]
    return rows, score.result.n_samples


def _evaluate_group(
    session: _Session, comp: Competition, members: Sequence[tuple[int, _Prepared]], options: _Options
) -> EvaluationResult:
    """Evaluate ``members`` (``(block, model)``, blocks counted over the whole call) on ``comp``."""
    choice = resolve_samples(
        options.dataset, comp, options.samples, options.seed, session.cache_path, options.free_tokenizer
    )
    fallback = choice.fallback_tokenizer if options.fallback_tokenizer is None else options.fallback_tokenizer
    policy = TokenizerPolicy(own=choice.free_tokenizer, fallback=fallback, allow_bos=options.allow_bos)
    rows = _group_rows(session, comp, members, options, choice, policy)
    rows, groups = _scored(rows, comp, options.seed, current_block=len(session.prepared))
    return EvaluationResult(
        competition=comp.name,
        dataset=choice.source.name,
        dataset_note=choice.note,
        seed=options.seed,
        sample_ids=tuple(s.id for s in choice.samples),
        models=tuple(rows),
        device=session.device,
        dtype="bf16" if session.evaluator.dtype == torch.bfloat16 else "fp32",
        group_samples=comp.group_samples,
        scored_groups=groups,
        tokenizer_note=" · ".join(n for n in (choice.tokenizer_note, tokenization_note()) if n),
    )


def evaluate_models(
    models: Sequence[str | os.PathLike],
    *,
    names: Sequence[str] | None = None,
    competition: str | Competition | None = None,
    competitions: Competitions | str | os.PathLike | None = None,
    dataset: str | DataSource | None = None,
    samples: int | None = None,
    seed: int = 0,
    device: str | None = None,
    cache_dir: str | os.PathLike | None | bool = True,
    hub=None,
    engine: EngineSettings | None = None,
    allow_bos: bool = False,
    progress: bool = False,
    free_tokenizer: bool | None = None,
    fallback_tokenizer: bool | None = None,
    isolate: bool = False,
    timeout_s: float = 3600.0,
    worker_command: Sequence[str] | None = None,
    content_hashes: Sequence[str | None] | None = None,
) -> EvaluationResult:
    """Evaluate ``models`` (oldest first) on one competition and score them against each other.

    ``names`` label the rows (default: the arguments). ``competitions`` is a loaded
    :class:`Competitions`, a path/URL of ``competitions.json``, or None for the packaged one. ``dataset``
    is ``local``, ``fineweb``, a ``.txt``/``.jsonl`` path, a :class:`DataSource`, or None (see the module
    docstring). ``samples`` defaults to ``eval_pages × rows_per_page`` for FineWeb and to every sample
    otherwise. ``cache_dir=True`` uses :func:`default_cache_dir`; None/False disables the on-disk caches.
    ``hub`` is a :class:`~sn29_growth.hub.protocol.HubClient` for ``org/name`` models (default: the
    huggingface_hub client). ``free_tokenizer`` overrides whether models bring their own tokenizers.
    ``isolate`` tokenizes, loads and scores each model in its own worker process, killed after
    ``timeout_s`` seconds (a hostile tokenizer that hangs or crashes then costs only its own row; the
    Python API defaults to in-process, ``sn29 evaluate`` to isolated). Raises ``ValueError`` only for
    unusable arguments and :class:`~sn29_growth.eval.environment.EnvironmentFailure` when the host cannot
    evaluate (no CUDA, a CUDA error, the device out of memory, a full disk, a worker that cannot start);
    a bad model is a row. ``content_hashes`` (one per model, None: unknown) are the loss-cache keys of
    models whose files the caller has digested already (:func:`~sn29_growth.eval.cache.content_hash_of`).
    """
    if isolate and worker_command is None:
        _warm_factory()  # its imports overlap the preparation
    session = _start(models, names, competitions, device, cache_dir, hub, engine, progress)
    for prep, known in zip(session.prepared, content_hashes or (), strict=False):
        if is_content_hash(known) and prep.ref.path is not None:
            prep.content_hash = known
    if isinstance(competition, Competition):
        comp = competition
    else:
        comp = choose_competition(session.table, session.architectures(), competition)
    options = _Options(
        dataset,
        samples,
        seed,
        allow_bos,
        free_tokenizer,
        fallback_tokenizer,
        isolate,
        timeout_s,
        worker_command,
    )
    return _evaluate_group(session, comp, list(enumerate(session.prepared)), options)


def group_by_competition(
    competitions: Competitions, architectures: Sequence[str | None]
) -> list[tuple[Competition, list[int]]]:
    """The models (by index) of each competition, in the order of their first model: each architecture
    goes to the first competition accepting it; a model whose architecture is unknown or accepted by none
    goes with the first group, where it is a rejected row. Raises ValueError when no model has an
    architecture any competition accepts."""
    groups: dict[str, list[int]] = {}
    strays = []
    for index, arch in enumerate(architectures):
        accepting = [c for c in competitions.values() if arch is not None and c.allows_model_type(arch)]
        if accepting:
            groups.setdefault(accepting[0].name, []).append(index)
        else:
            strays.append(index)
    if not groups:
        choose_competition(competitions, architectures)  # raises, saying why none can be inferred
    first = next(iter(groups))
    groups[first] = sorted([*groups[first], *strays])
    return [(competitions[name], members) for name, members in groups.items()]


def not_admitted(
    competition: Competition, names: Sequence[str], architectures: Sequence[str | None]
) -> list[str]:
    """``name (architecture)`` of each model whose known architecture ``competition`` does not accept."""
    return [
        f"{name} ({arch})"
        for name, arch in zip(names, architectures, strict=True)
        if arch is not None and not competition.allows_model_type(arch)
    ]


def evaluate_by_competition(
    models: Sequence[str | os.PathLike],
    *,
    names: Sequence[str] | None = None,
    competition: str | None = None,
    competitions: Competitions | str | os.PathLike | None = None,
    device: str | None = None,
    cache_dir: str | os.PathLike | None | bool = True,
    hub=None,
    engine: EngineSettings | None = None,
    progress: bool = False,
    **options: Any,
) -> list[EvaluationResult]:
    """What ``sn29 evaluate`` runs: each model evaluated in its own competition, one result per
    competition (in the order of its first model; ages still follow the argument order).

    With ``competition`` named, every model is evaluated there, and a model whose architecture that
    competition does not accept is refused with a ValueError before any evaluation. ``options`` are the
    remaining keywords of :func:`evaluate_models`.
    """
    settings = _Options(**options)
    if settings.isolate and settings.worker_command is None:
        _warm_factory()  # its imports overlap the preparation
    session = _start(models, names, competitions, device, cache_dir, hub, engine, progress)
    architectures = session.architectures()
    if competition is not None:
        comp = choose_competition(session.table, architectures, competition)
        refused = not_admitted(comp, [p.name for p in session.prepared], architectures)
        if refused:
            raise ValueError(
                f"--competition {comp.name} does not accept {', '.join(refused)} (it accepts "
                f"{', '.join(comp.model_types)}); leave out --competition to evaluate each model in the "
                "competition of its architecture"
            )
        groups = [(comp, list(range(len(session.prepared))))]
    else:
        groups = group_by_competition(session.table, architectures)
    return [
        _evaluate_group(session, comp, [(i, session.prepared[i]) for i in members], settings)
        for comp, members in groups
    ]


def _with_score(row: ModelResult, wins: int, win_rate: float, weight: float) -> ModelResult:
    return replace(row, wins=wins, win_rate=win_rate, weight=weight)
