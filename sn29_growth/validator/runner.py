"""The validator's outer loop: lock, load state, step, persist atomically, repeat — never stop on a bad step.

A step abandoned for the host's fault (:class:`~sn29_growth.eval.environment.EnvironmentFailure`: no
CUDA, a CUDA error, the device out of memory, a full disk, a worker that cannot start) is rolled back
like any failed step — no model is marked, no weights are set — logged once with its cause, and retried
after a back-off that doubles each time (from the step interval, at least 30 s, to 15 minutes). After
``max_environment_failures`` of them in a row the loop raises :class:`EnvironmentFailed`, so that the
process exits non-zero and its supervisor (systemd, pm2) sees it.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sn29_growth.eval.environment import EnvironmentFailure
from sn29_growth.validator.config import ValidatorConfig
from sn29_growth.validator.lock import ValidatorLock, ValidatorLocked
from sn29_growth.validator.state import StateError, ValidatorState, load_state, save_state
from sn29_growth.validator.step import Clients, StepReport, step

__all__ = ["EnvironmentFailed", "RunSummary", "ValidatorLocked", "open_state", "run", "run_steps"]

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 900.0


class EnvironmentFailed(RuntimeError):
    """Too many consecutive steps failed for the host's fault; the message names the last cause."""


def environment_backoff(config: ValidatorConfig, failures: int) -> float:
    """Seconds to wait after the ``failures``-th consecutive environment failure."""
    base = max(config.step_interval_s, 30.0)
    return min(base * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)


@dataclass(frozen=True)
class RunSummary:
    """How a run ended: the last saved state and how many steps completed or failed (and were rolled back)."""

    state: ValidatorState
    steps_ok: int
    steps_failed: int

    @property
    def all_failed(self) -> bool:
        """True when at least one step ran and none completed: the validator did nothing useful."""
        return self.steps_failed > 0 and self.steps_ok == 0


def open_state(path: Path) -> ValidatorState:
    """Load the state; an unreadable file is moved aside (never deleted) and a fresh state begins.

    Temporary files of a write that a crash interrupted are removed: the state file itself is whole.
    Call this only while holding the model directory's :class:`ValidatorLock`: another validator's
    temporary file would be in-flight, not stale.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        return load_state(path)
    except StateError as e:
        aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        os.replace(path, aside)
        log.error("%s; moved to %s and starting from a fresh state", e, aside)
        return ValidatorState()


def run(config: ValidatorConfig, clients: Clients, **options) -> ValidatorState:
    """:func:`run_steps` (same keyword options), returning only the final state."""
    return run_steps(config, clients, **options).state


def run_steps(
    config: ValidatorConfig,
    clients: Clients,
    *,
    max_steps: int | None = None,
    on_report: Callable[[StepReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    lock: ValidatorLock | None = None,
) -> RunSummary:
    """Run steps until ``max_steps`` (forever when None). Each completed step is saved before the next.

    The model directory's lock is taken before any state file is touched (raising
    :class:`ValidatorLocked` if another validator holds it) unless the caller passes ``lock``, already held
    on ``config.model_dir``. A step that raises, or whose state cannot be saved, is logged, rolled back and
    counted as failed; the loop carries on.
    """
    if lock is not None:
        if not lock.held or lock.model_dir.resolve() != config.model_dir.resolve():
            raise ValueError(f"lock must be held on {config.model_dir}, got {lock.path} (held: {lock.held})")
        return _loop(config, clients, max_steps, on_report, sleep)
    with ValidatorLock(config.model_dir):
        return _loop(config, clients, max_steps, on_report, sleep)


def _loop(
    config: ValidatorConfig,
    clients: Clients,
    max_steps: int | None,
    on_report: Callable[[StepReport], None] | None,
    sleep: Callable[[float], None],
) -> RunSummary:
    state = open_state(config.state_path)
    ok = failed = environment = 0
    while max_steps is None or ok + failed < max_steps:
        before = copy.deepcopy(state)
        try:
            report = step(state, clients, config)
            save_state(state, config.state_path)
        except EnvironmentFailure as e:  # the host's fault: nobody is blamed, retried with back-off
            state = before
            failed += 1
            environment += 1
            if environment >= config.max_environment_failures:
                raise EnvironmentFailed(
                    f"{environment} consecutive steps abandoned for the host's fault; last: {e}"
                ) from e
            wait = environment_backoff(config, environment)
            log.error(
                "step %d abandoned, no model blamed: environment failure: %s (%d of %d in a row; retry in %.0f s)",
                state.step + 1,
                e,
                environment,
                config.max_environment_failures,
                wait,
            )
            if max_steps is None or ok + failed < max_steps:
                sleep(wait)
            continue
        except Exception as e:  # a step must never end the validator
            log.exception("step %d failed: %s", state.step, e)
            state = before
            failed += 1
            environment = 0
            if max_steps is None or ok + failed < max_steps:
                sleep(min(max(config.step_interval_s, 1.0), 60.0))
            continue
        ok += 1
        environment = 0
        log.info(
            "step %d done at block %d: %d models, weights %s",
            report.step,
            report.block,
            len(report.rows),
            "set" if report.weights_set else "not set",
        )
        if on_report is not None:
            on_report(report)
        if max_steps is None or ok + failed < max_steps:
            sleep(config.step_interval_s)
    return RunSummary(state=state, steps_ok=ok, steps_failed=failed)
