"""Learning rates as a pure function of the step: no scheduler object, nothing to checkpoint but the step.

Step ``s`` (0-based) is the optimizer update being taken. Every element follows the base schedule
``lr · f(s)``: linear warm-up over ``warmup_steps``, then cosine or linear decay to ``min_lr_ratio`` at
the last step (or constant). Elements that a growth recipe marks new additionally get
``min(1, (s + 1) / new_lr_warmup)``: a fresh Adam moves every element by about ±lr on its first steps,
which is large for a slice that starts at zero. During the first ``new_only_steps`` steps the other
("old") elements get learning rate 0, i.e. they do not move at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sn29_growth.train.config import ScheduleConfig


@dataclass(frozen=True)
class LearningRates:
    old: float  # every element not marked new (all elements when there is no growth recipe)
    new: float  # elements marked new by the growth recipe


def base_factor(step: int, steps: int, schedule: ScheduleConfig) -> float:
    """The multiplier of the peak learning rate at update ``step`` of a ``steps``-step run."""
    if step < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    warmup = schedule.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule.kind == "constant":
        return 1.0
    span = max(1, steps - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    floor = schedule.min_lr_ratio
    if schedule.kind == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - floor) * progress


def new_factor(step: int, schedule: ScheduleConfig) -> float:
    """The extra re-warm multiplier of new elements at update ``step``."""
    if not schedule.new_lr_warmup:
        return 1.0
    return min(1.0, (step + 1) / schedule.new_lr_warmup)


def learning_rates(step: int, steps: int, lr: float, schedule: ScheduleConfig) -> LearningRates:
    base = lr * base_factor(step, steps, schedule)
    old = 0.0 if step < schedule.new_only_steps else base
    return LearningRates(old=old, new=base * new_factor(step, schedule))
