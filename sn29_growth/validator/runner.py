"""The validator's outer loop: load state, step, persist atomically, repeat — and never stop on a bad step."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sn29_growth.validator.config import ValidatorConfig
from sn29_growth.validator.state import StateError, ValidatorState, load_state, save_state
from sn29_growth.validator.step import Clients, StepReport, step

log = logging.getLogger(__name__)


def open_state(path: Path) -> ValidatorState:
    """Load the state; an unreadable file is moved aside (never deleted) and a fresh state begins.

    Temporary files of a write that a crash interrupted are removed: the state file itself is whole.
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


def run(
    config: ValidatorConfig,
    clients: Clients,
    *,
    max_steps: int | None = None,
    on_report: Callable[[StepReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ValidatorState:
    """Run steps until ``max_steps`` (forever when None). Each completed step is saved before the next."""
    config.model_dir.mkdir(parents=True, exist_ok=True)
    state = open_state(config.state_path)
    done = 0
    while max_steps is None or done < max_steps:
        before = copy.deepcopy(state)
        try:
            report = step(state, clients, config)
        except Exception as e:  # a step must never end the validator
            log.exception("step %d failed: %s", state.step, e)
            state = before
            sleep(min(max(config.step_interval_s, 1.0), 60.0))
            done += 1
            continue
        save_state(state, config.state_path)
        log.info(
            "step %d done at block %d: %d models, weights %s",
            report.step,
            report.block,
            len(report.rows),
            "set" if report.weights_set else "not set",
        )
        if on_report is not None:
            on_report(report)
        done += 1
        if max_steps is None or done < max_steps:
            sleep(config.step_interval_s)
    return state
