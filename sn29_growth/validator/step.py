"""One validator step: discover → prioritise → download → check → evaluate → score → set weights.

``step(state, clients, config)`` mutates ``state`` and returns a :class:`StepReport`; it never raises for
a per-model problem (that becomes a recorded reason) and only propagates errors that make the whole step
meaningless (the chain unreachable before anything was learned). The runner persists the state after
every step and carries on.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.chain.commitment import ModelCommitment, directory_hash_of, hashed_files, salted_hash
from sn29_growth.chain.protocol import ChainClient, ChainClientError
from sn29_growth.checkpoint import (
    read_config_or_none,
    try_read_config,
)
from sn29_growth.digest import DigestMemo
from sn29_growth.eval import checks
from sn29_growth.eval.budget import device_flops, model_budget
from sn29_growth.eval.cache import content_hash_of, model_file_names
from sn29_growth.eval.competitions import Competition, Competitions, ProvidesCompetitions, ProvidesHallOfFame
from sn29_growth.eval.data import DataSourceError
from sn29_growth.eval.environment import EnvironmentFailure, device_problem
from sn29_growth.eval.results import EvaluationFailed, ModelResult
from sn29_growth.eval.samples import resolve_samples, worker_request, write_samples_file
from sn29_growth.eval.scoring import (
    ModelLosses,
    ScoreSettings,
    bounty_shares,
    ema,
    score_competition,
    weights_from_win_rates,
)
from sn29_growth.eval.timing import StageClock, StageTimes, budget_line, pipeline_line, with_worker
from sn29_growth.eval.tokenize import cap_text
from sn29_growth.eval.tokenizers import tokenization_note
from sn29_growth.hub.protocol import DiskBudgetExceeded, HubError
from sn29_growth.hub.store import ModelSnapshots
from sn29_growth.reasons import bound_reason
from sn29_growth.validator.config import ValidatorConfig
from sn29_growth.validator.entries import ModelEntry
from sn29_growth.validator.state import ModelRecord, ModelStatus, ValidatorState

log = logging.getLogger(__name__)

INJECTED_UID_BASE = 1_000_000
MAX_FAILURES = 5  # transient failures in a row before a model waits for a revisit


@dataclass
class Clients:
    """What a step talks to; every field is a small protocol so tests can inject fakes."""

    chain: ChainClient
    competitions: ProvidesCompetitions
    hall_of_fame: ProvidesHallOfFame | None = None
    store: ModelSnapshots | None = None  # None: no Hub models
    evaluate: Callable[[dict[str, Any], float], Any] | None = None  # (request, timeout) -> WorkerResult
    entries: list[ModelEntry] = field(default_factory=list)  # --models: local dirs or Hub refs


@dataclass
class StepReport:
    step: int
    block: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[int, float] = field(default_factory=dict)
    weights_set: bool = False
    notes: list[str] = field(default_factory=list)

    def format_table(self) -> str:
        lines = [f"step {self.step} · block {self.block}"]
        head = (
            f"{'uid':>8} {'label':<28} {'comp':<5} {'status':<10} {'mean loss':>10} {'win rate':>9}  reason"
        )
        lines += [head, "-" * len(head)]
        for r in sorted(self.rows, key=lambda r: (r["competition"], r["uid"])):
            loss = "" if r["mean_loss"] is None else f"{r['mean_loss']:.4f}"
            lines.append(
                f"{r['uid']:>8} {r['label'][:28]:<28} {r['competition']:<5} {r['status']:<10} {loss:>10} "
                f"{r['win_rate']:>9.3f}  {r['reason']}"
            )
        verb = "set" if self.weights_set else "would set"
        shown = ", ".join(f"{uid}: {w:.4f}" for uid, w in sorted(self.weights.items()) if w > 0) or "none"
        lines.append(f"weights ({verb}): {shown}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------- discover


def _discover(state: ValidatorState, clients: Clients, competitions: Competitions) -> None:
    """Bring ``state.models`` in line with the chain's commitments and the injected entries."""
    raw = clients.chain.commitments()
    seen: set[str] = set()
    for hotkey, rc in raw.items():
        seen.add(hotkey)
        rec = state.models.get(hotkey)
        if rec is not None and rec.commitment == rc.value and rec.block == rc.block:
            rec.uid = rc.uid
            continue
        if hotkey in state.discarded and state.discarded[hotkey].get("commitment") == rc.value:
            continue
        try:
            mc = ModelCommitment.parse(rc.value)
        except ValueError as e:
            _discard(state, hotkey, rc.value, rc.block, f"malformed commitment: {e}")
            continue
        if mc.competition not in competitions:
            _discard(state, hotkey, rc.value, rc.block, f"unknown competition {mc.competition!r}")
            continue
        state.discarded.pop(hotkey, None)
        was_pool = any(hotkey in pool for pool in state.pools.values())
        _forget_from_pools(state, hotkey)
        state.models[hotkey] = ModelRecord(
            hotkey=hotkey,
            uid=rc.uid,
            commitment=rc.value,
            competition=mc.competition,
            block=rc.block,
            label=mc.repo_id,
            was_pool=was_pool,
        )
        state.failures.pop(hotkey, None)
        log.info("new commitment from uid %d: %s", rc.uid, rc.value)
    for i, entry in enumerate(clients.entries):
        key = entry.key
        seen.add(key)
        uid = entry.uid if entry.uid is not None else INJECTED_UID_BASE + i
        rec = state.models.get(key)
        if rec is None or rec.commitment != entry.model or rec.block != entry.block:
            _forget_from_pools(state, key)
            state.models[key] = ModelRecord(
                hotkey=key,
                uid=uid,
                commitment=entry.model,
                competition=entry.competition or "",
                block=entry.block,
                injected=entry.injected,
                label=entry.label,
            )
    for key in [k for k in state.models if k not in seen]:
        log.info("%s no longer committed; dropped", key)
        _forget_from_pools(state, key)
        del state.models[key]


def _discard(state: ValidatorState, hotkey: str, value: str, block: int, reason: str) -> None:
    state.discarded[hotkey] = {"commitment": value, "reason": bound_reason(reason), "block": block}
    state.models.pop(hotkey, None)
    _forget_from_pools(state, hotkey)
    log.info("discarded commitment of %s: %s", hotkey, reason)


def _forget_from_pools(state: ValidatorState, key: str) -> None:
    for pool in state.pools.values():
        if key in pool:
            pool.remove(key)


def _drop_duplicates(state: ValidatorState) -> None:
    """Several hotkeys committing the same repo+commit: only the earliest block (then uid) counts."""
    by_target: dict[tuple[str, str], list[ModelRecord]] = {}
    for rec in state.models.values():
        if rec.injected or rec.status == ModelStatus.REJECTED:
            continue
        try:
            mc = ModelCommitment.parse(rec.commitment)
        except ValueError:
            continue
        by_target.setdefault((mc.repo_id, mc.commit), []).append(rec)
    for recs in by_target.values():
        recs.sort(key=lambda r: (r.block, r.uid))
        for dup in recs[1:]:
            _reject(
                state, dup, f"duplicate of uid {recs[0].uid}'s earlier commitment of the same repo and commit"
            )


def _reject(state: ValidatorState, rec: ModelRecord, reason: str) -> None:
    rec.status, rec.reason, rec.win_rate = ModelStatus.REJECTED, reason, 0.0
    _forget_from_pools(state, rec.hotkey)


# ------------------------------------------------------------------------------------------- prioritise


def _candidates(state: ValidatorState, comp: Competition, config: ValidatorConfig) -> list[ModelRecord]:
    """Pool members, then new or changed commitments (oldest first), then models due for a revisit."""
    members = [state.models[k] for k in state.pools.get(comp.name, []) if k in state.models]
    mine = [r for r in state.models.values() if r.competition == comp.name and r not in members]
    new = sorted(
        (r for r in mine if r.status == ModelStatus.NEW), key=lambda r: (not r.was_pool, r.block, r.uid)
    )
    limit = config.max_new_per_step or comp.pend_size
    revisit = [
        r
        for r in mine
        if r.status in (ModelStatus.EVALUATED, ModelStatus.FAILED)
        and state.step - r.last_eval_step >= config.revisit_every_steps
    ]
    revisit.sort(key=lambda r: (r.last_eval_step, r.block, r.uid))
    return members + new[:limit] + revisit[:1]


# ------------------------------------------------------------------------------------------- download + check


def _prepare(
    rec: ModelRecord,
    comp: Competition,
    clients: Clients,
    state: ValidatorState,
    content_owner: dict[str, str],
    clock: StageClock | None = None,
) -> Path | None:
    """Download and check one model; returns its local directory or None (with the reason recorded).

    A model that already passed every check keeps its verified snapshot: no re-hash, no Hub call.
    """
    clock = clock or StageClock()
    try:
        committed = not rec.injected and _is_commitment(rec.commitment)
        if rec.content_hash:
            path = _cached_path(rec, clients) if committed else _entry_path(rec, clients)
            if path is not None:
                return path
        fetch = (_fetch_committed, rec, comp, clients) if committed else (_entry_path, rec, clients)
        path = clock.timed("download", *fetch)
        if path is None:
            return None
        reason = checks.precheck(_config(path), checks.local_files(path), comp)
        if reason:
            _reject(state, rec, reason)
            return None
        # read once: salted below, unsalted for copies
        digest, _ = clock.timed("hash", model_hashes, path, state)
        if committed:
            mc = ModelCommitment.parse(rec.commitment)
            actual = salted_hash(digest, rec.hotkey)
            if actual != mc.hash:
                _reject(state, rec, f"content hash mismatch: committed {mc.hash}, files hash to {actual}")
                return None
        owner = content_owner.setdefault(digest, rec.hotkey)
        if owner != rec.hotkey:
            first = state.models.get(owner)
            _reject(state, rec, f"byte-identical to {first.label if first else owner}, which was seen first")
            return None
        rec.content_hash = digest
        state.failures.pop(rec.hotkey, None)
        return path
    except _Rejected as e:
        _reject(state, rec, str(e))
        return None
    except DiskBudgetExceeded as e:  # our disk, not the miner's fault: retry after cleanup
        state.failures[rec.hotkey] = state.failures.get(rec.hotkey, 0) + 1
        rec.reason = f"disk: {e}"
        log.error("%s: %s", rec.label, rec.reason)
        return None
    except HubError as e:
        if getattr(e, "retryable", False):
            n = state.failures[rec.hotkey] = state.failures.get(rec.hotkey, 0) + 1
            rec.reason = f"hub unavailable ({n}x): {e}"
            if n >= MAX_FAILURES:
                rec.status, rec.last_eval_step = ModelStatus.FAILED, state.step
            log.warning("%s: %s", rec.label, rec.reason)
        else:
            _reject(state, rec, f"hub: {type(e).__name__}: {e}")
        return None
    except OSError as e:
        rec.reason = f"local storage: {e}"
        rec.status, rec.last_eval_step = ModelStatus.FAILED, state.step
        log.error("%s: %s", rec.label, rec.reason)
        return None
    except Exception as e:  # nothing a repository holds may propagate out of this model's stage
        log.warning("%s: checks failed", rec.label, exc_info=True)
        _reject(state, rec, f"unreadable: {type(e).__name__}: {e}")
        return None


def model_hashes(path: Path, state: ValidatorState) -> tuple[str, str]:
    """The model's unsalted commitment hash and its loss-cache key, from one digest per file: the files
    are read only when new or changed since the state last saw them (``state.file_digests``)."""
    hashed = hashed_files(path)
    names = sorted(set(hashed) | set(model_file_names(path)))
    digests = dict(zip(names, DigestMemo(state.file_digests).digests([path / n for n in names]), strict=True))
    commitment = directory_hash_of({name: digests[name] for name in hashed})
    return commitment, content_hash_of({name: digests[name] for name in model_file_names(path)})


def _cached_path(rec: ModelRecord, clients: Clients) -> Path | None:
    if clients.store is None:
        return None
    mc = ModelCommitment.parse(rec.commitment)
    return clients.store.cached_snapshot(mc.repo_id, mc.commit)


def _is_commitment(value: str) -> bool:
    try:
        ModelCommitment.parse(value)
        return True
    except ValueError:
        return False


def _config(path: Path) -> dict[str, Any]:
    """The model's config, or raises _Rejected naming why it is unusable (bounded read)."""
    config, why = try_read_config(path)
    if config is None:
        raise _Rejected(why)
    return config


def _entry_path(rec: ModelRecord, clients: Clients) -> Path | None:
    local = Path(rec.commitment).expanduser()
    if local.is_dir():
        return local
    if clients.store is None:
        raise HubError(f"{rec.commitment}: not a local directory and no Hub client is configured")
    ref, _, rev = rec.commitment.partition("@")
    return Path(clients.store.fetch(ref, rev or "main"))


def _fetch_committed(rec: ModelRecord, comp: Competition, clients: Clients) -> Path | None:
    if clients.store is None:
        raise HubError("no Hub client is configured")
    mc = ModelCommitment.parse(rec.commitment)
    plan = clients.store.plan(mc.repo_id, mc.commit)  # sizes before any download
    reason = checks.check_files({f.path: f.size for f in plan.files}, comp)
    if reason:
        raise _Rejected(reason)
    return Path(clients.store.fetch(mc.repo_id, mc.commit))


class _Rejected(HubError):
    """A model that fails a check before download (the message is the reason)."""

    retryable = False


# ------------------------------------------------------------------------------------------- evaluate + score


@dataclass(frozen=True)
class _StepSamples:
    """The competition's samples of this step: the file every worker reads, how they are tokenized, and
    the UTF-8 bytes of each (capped) sample for the time budget."""

    path: Path
    free_tokenizer: bool
    fallback_tokenizer: bool
    dataset: str
    sample_bytes: tuple[int, ...]


def _samples_file(comp: Competition, config: ValidatorConfig, seed: int) -> _StepSamples:
    """Choose the competition's samples once for the step; every model's worker reads the same file."""
    cache = config.model_dir / "eval-cache"
    choice = resolve_samples(config.dataset, comp, config.samples, seed, cache / "datasets")
    path = write_samples_file(
        config.model_dir / "eval-samples" / f"{comp.name}.json", choice.source.name, choice.samples
    )
    cap = comp.sample_limits(choice.free_tokenizer)[0]
    sizes = tuple(len(cap_text(s.text, cap)[0].encode("utf-8", "surrogatepass")) for s in choice.samples)
    return _StepSamples(path, choice.free_tokenizer, choice.fallback_tokenizer, choice.source.name, sizes)


def _time_budget(rec: ModelRecord, path: Path, comp: Competition, samples: _StepSamples, config) -> float:
    """``--eval-timeout`` when given, else the model's own budget (:mod:`sn29_growth.eval.budget`), logged."""
    if config.eval_timeout_s is not None:
        return config.eval_timeout_s
    from sn29_growth.checkpoint import try_read_config

    raw, _ = try_read_config(path)
    parameters = (checks.count_parameters_safe(raw) if raw else None) or comp.parameters
    weights = sum(f.stat().st_size for f in path.glob("*.safetensors") if f.is_file())
    problem = device_problem(config.device)
    if problem:
        raise EnvironmentFailure(problem)
    try:
        flops = device_flops(config.device)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        raise EnvironmentFailure(f"cannot measure {config.device}: {e}") from e
    budget = model_budget(
        config.budget,
        flops_per_s=flops,
        parameters=parameters,
        weight_bytes=weights,
        sample_bytes=list(samples.sample_bytes),
        max_sequence_len=comp.sample_limits(samples.free_tokenizer)[1],
    )
    log.info("%s: time budget %s", rec.label or rec.hotkey, budget.explanation)
    return budget.seconds


def _evaluate_one(
    rec: ModelRecord,
    path: Path,
    comp: Competition,
    samples: _StepSamples,
    clients: Clients,
    config: ValidatorConfig,
    seed: int,
    state: ValidatorState,
    clock: StageClock,
) -> tuple[ModelResult, float] | EvaluationFailed:
    """One model in its own worker process: its row and the worker's wall time, or why the worker failed
    (crash, timeout). The loss-cache key goes with the request: the worker hashes nothing."""
    try:
        _, content = clock.timed("hash", model_hashes, path, state)
    except (OSError, ValueError) as e:  # the worker hashes (or rejects) it then
        log.warning("%s: cannot hash its files here: %s", rec.label or rec.hotkey, e)
        content = None
    request = worker_request(
        comp,
        (rec.hotkey, path),
        samples.path,
        free_tokenizer=samples.free_tokenizer,
        seed=seed,
        device=config.device,
        cache_dir=config.model_dir / "eval-cache",
        dataset=samples.dataset,
        fallback_tokenizer=samples.fallback_tokenizer,
        content_hash=content,
    )
    result = clients.evaluate(request, _time_budget(rec, path, comp, samples, config))
    if getattr(result, "environment", None):  # the host failed, not the model: abandon the step
        raise EnvironmentFailure(result.environment)
    if not result.ok:
        return EvaluationFailed(result.error)
    row = (result.response or {}).get("models", {}).get(rec.hotkey)
    if not isinstance(row, dict):
        return EvaluationFailed("the worker returned no result for this model")
    return ModelResult.from_json(row, name=rec.hotkey, block=rec.block), result.seconds


def _score(
    state: ValidatorState, comp: Competition, evaluated: list[ModelRecord], block: int, seed: int
) -> dict[int, float]:
    scored = [ModelLosses(uid=r.uid, block=r.block, losses=tuple(r_losses)) for r, r_losses in evaluated]
    if not scored:
        state.pools[comp.name] = []
        return {}
    result = score_competition(scored, ScoreSettings.from_competition(comp), current_block=block, seed=seed)
    by_uid = {r.uid: r for r, _ in evaluated}
    for uid, rec in by_uid.items():
        rec.win_rate = float(result.win_rates.get(uid, 0.0))
    ranked = sorted(by_uid.values(), key=lambda r: (-r.win_rate, r.block, r.uid))
    state.pools[comp.name] = [r.hotkey for r in ranked[: comp.pool_size]]
    for rec in ranked[comp.pool_size :]:
        rec.status = ModelStatus.EVALUATED
    for rec in ranked[: comp.pool_size]:
        rec.status = ModelStatus.POOL
    return {uid: rate for uid, rate in result.win_rates.items()}


def step(state: ValidatorState, clients: Clients, config: ValidatorConfig) -> StepReport:
    state.step += 1
    block = clients.chain.current_block()
    report = StepReport(step=state.step, block=block)
    competitions: Competitions = clients.competitions.get()
    describe = getattr(clients.competitions, "describe", None)
    report.notes.append(f"competitions: {describe() if describe else competitions.origin}")
    report.notes.append(tokenization_note())
    _discover(state, clients, competitions)
    _infer_entry_competitions(state, competitions)
    _drop_duplicates(state)
    seed = config.seed if config.seed is not None else block // 361
    content_owner: dict[str, str] = {}
    for rec in sorted(state.models.values(), key=lambda r: (r.block, r.uid)):
        if rec.content_hash and rec.status != ModelStatus.REJECTED:
            content_owner.setdefault(rec.content_hash, rec.hotkey)

    win_rates: dict[str, dict[int, float]] = {}
    for comp in competitions.values():
        ready: list[tuple[ModelRecord, Path]] = []
        clocks: dict[str, StageClock] = {}
        for rec in _candidates(state, comp, config):
            clock = clocks[rec.hotkey] = StageClock()
            path = clock.timed("checks", _prepare, rec, comp, clients, state, content_owner, clock)
            if path is not None:
                ready.append((rec, path))
        if not ready:
            continue
        try:
            samples = _samples_file(comp, config, seed)
        except (DataSourceError, ValueError, OSError) as e:
            report.notes.append(f"{comp.name}: no samples this step: {e}")
            for rec, _ in ready:
                rec.reason = f"samples unavailable: {e}"
            continue
        evaluated = []
        spent: list[StageTimes] = []
        for rec, path in ready:
            clock = clocks[rec.hotkey]
            out = _evaluate_one(rec, path, comp, samples, clients, config, seed, state, clock)
            if not isinstance(out, EvaluationFailed):
                out, worker_s = out
                times = clock.times()
                spent.append(with_worker(times, out.stages, worker_s))
                log.info("%s", pipeline_line(rec.label or rec.hotkey, times, out.stages, worker_s))
            rec.last_eval_step = state.step
            if isinstance(out, EvaluationFailed):  # revisited later, not every step
                rec.status, rec.reason = ModelStatus.FAILED, f"evaluation failed: {out.reason}"
                rec.mean_loss, rec.win_rate = None, 0.0
                _forget_from_pools(state, rec.hotkey)
                state.failures[rec.hotkey] = state.failures.get(rec.hotkey, 0) + 1
                log.warning("%s: %s", rec.label, rec.reason)
                continue
            if out.rejection:
                _reject(state, rec, out.rejection)
                continue
            rec.mean_loss = out.mean_loss
            rec.reason = out.note or ""
            evaluated.append((rec, list(out.losses)))
        if spent:
            log.info("%s", budget_line(f"step {state.step} {comp.name}", spent))
        win_rates[comp.name] = _score(state, comp, evaluated, block, seed)

    weights = _weights(state, clients, competitions, win_rates, block)
    report.weights = weights
    _maybe_set_weights(state, clients, config, weights, block, report)
    report.rows = [_row(r) for r in state.models.values()]
    if clients.store is not None:
        _cleanup(state, clients)
    DigestMemo(state.file_digests).prune()  # bounded: only files still present keep their digest
    return report


def _infer_entry_competitions(state: ValidatorState, competitions: Competitions) -> None:
    """An injected entry without a competition joins the first one accepting its architecture."""
    for rec in state.models.values():
        if rec.competition:
            continue
        local = Path(rec.commitment)
        arch = checks.architecture(read_config_or_none(local) or {}) if local.is_dir() else None
        rec.competition = next(
            (c.name for c in competitions.values() if arch and c.allows_model_type(arch)), "-"
        )
        if rec.competition == "-":
            _reject(state, rec, f"no competition accepts architecture {arch or '(unreadable config)'}")


def _weights(
    state: ValidatorState,
    clients: Clients,
    competitions: Competitions,
    win_rates: dict[str, dict[int, float]],
    block: int,
) -> dict[int, float]:
    injected = {r.uid for r in state.models.values() if r.injected}
    rates = {c: {u: w for u, w in wr.items() if u not in injected} for c, wr in win_rates.items()}
    rates = {c: wr for c, wr in rates.items() if wr}  # a competition of benchmarks only passes its share on
    skew = {c: competitions[c].weight_skew_factor for c in rates}
    reward = {c: competitions[c].reward for c in rates}
    bounties = None
    if clients.hall_of_fame is not None:
        hotkey_uid = {r.hotkey: r.uid for r in state.models.values() if not r.injected}
        shares = bounty_shares(clients.hall_of_fame.get().bounties, block)
        bounties = {hotkey_uid[h]: s for h, s in shares.items() if h in hotkey_uid}
    fresh = weights_from_win_rates(rates, skew, reward, bounties=bounties) if rates else {}
    old = {int(k): v for k, v in state.ema_weights.items()}
    smoothed = ema(old, fresh) if sum(fresh.values()) > 0 else old  # nobody won anything: keep the EMA
    state.ema_weights = {str(k): v for k, v in smoothed.items()}
    return smoothed


def _maybe_set_weights(
    state: ValidatorState,
    clients: Clients,
    config: ValidatorConfig,
    weights: dict[int, float],
    block: int,
    report: StepReport,
) -> None:
    due = state.last_weights_block < 0 or block - state.last_weights_block >= config.weights_interval_blocks
    if not (config.set_weights and due and sum(weights.values()) > 0):
        return
    if config.offline:
        report.notes.append("offline: weights recorded by the offline chain, not sent")
    try:
        clients.chain.set_weights(weights, config.version_key)
    except ChainClientError as e:
        report.notes.append(f"set_weights failed (retried next step): {e}")
        log.error("set_weights failed: %s", e)
        return
    state.last_weights_block = block
    report.weights_set = True


def _cleanup(state: ValidatorState, clients: Clients) -> None:
    keep = set()
    for rec in state.models.values():
        if rec.status != ModelStatus.REJECTED and _is_commitment(rec.commitment):
            mc = ModelCommitment.parse(rec.commitment)
            keep.add((mc.repo_id, mc.commit))
    try:
        clients.store.cleanup(keep)
    except OSError as e:
        log.warning("cache cleanup failed: %s", e)


def _row(rec: ModelRecord) -> dict[str, Any]:
    return {
        "uid": rec.uid,
        "label": rec.label or rec.hotkey,
        "competition": rec.competition,
        "status": rec.status,
        "mean_loss": rec.mean_loss,
        "win_rate": rec.win_rate,
        "reason": rec.reason,
        "injected": rec.injected,
    }
