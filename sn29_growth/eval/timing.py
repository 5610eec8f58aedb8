"""Where one model's evaluation spends its time: download, worker start, checks, tokens, hash, load, forward.

:class:`StageClock` records wall seconds per stage; stages nest, and time always goes to the innermost
stage running (a download inside the checks counts as download only), so the stages add up to the
wall time without double counting. :class:`StageTimes` is the frozen result that a worker returns in
its JSON row, ``sn29 evaluate --json`` prints, and the validator logs as one line per model::

    download 0.00s · startup 4.80s · checks 0.21s · tokenize 0.84s · hash 3.10s · load 7.90s · eval 96.2s · outside eval 17.6%

``startup`` is what an isolated model's worker process spends outside its stages (process start,
imports, reading the request). "Outside eval" is startup + checks + tokenize + hash + load as a
fraction of the forward passes (``eval``); the download is left out: it measures the network, not the
pipeline.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sn29_growth.fields import non_negative

STAGES = ("download", "startup", "checks", "tokenize", "hash", "load", "eval")
OUTSIDE = ("startup", "checks", "tokenize", "hash", "load")

T = TypeVar("T")


@dataclass(frozen=True)
class StageTimes:
    """Wall seconds per stage of one model's evaluation (each finite and >= 0)."""

    download_s: float = 0.0
    startup_s: float = 0.0
    checks_s: float = 0.0
    tokenize_s: float = 0.0
    hash_s: float = 0.0
    load_s: float = 0.0
    eval_s: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            non_negative(f.name, getattr(self, f.name))

    @property
    def outside_s(self) -> float:
        """Seconds outside the forward passes (download excluded)."""
        return math.fsum(getattr(self, f"{s}_s") for s in OUTSIDE)

    @property
    def outside_ratio(self) -> float | None:
        """:attr:`outside_s` over ``eval_s``; None when no forward pass ran."""
        return self.outside_s / self.eval_s if self.eval_s > 0 else None

    @property
    def total_s(self) -> float:
        return math.fsum(getattr(self, f.name) for f in fields(self))

    def __add__(self, other: StageTimes) -> StageTimes:
        return StageTimes(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_json(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {f.name: round(getattr(self, f.name), 4) for f in fields(self)}
        out["outside_s"] = round(self.outside_s, 4)
        ratio = self.outside_ratio
        out["outside_ratio"] = None if ratio is None else round(ratio, 4)
        return out

    @classmethod
    def from_json(cls, data: Any) -> StageTimes | None:
        """The times of :meth:`to_json` (derived keys ignored); None for anything that is not such a mapping."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (TypeError, ValueError):
            return None

    def render(self) -> str:
        parts = [f"{s} {_seconds(getattr(self, f'{s}_s'))}" for s in STAGES]
        ratio = self.outside_ratio
        parts.append("outside eval -" if ratio is None else f"outside eval {100 * ratio:.1f}%")
        return " · ".join(parts)


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


class StageClock:
    """Accumulates wall time per stage; nested stages pause the enclosing one."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._spent = dict.fromkeys(STAGES, 0.0)
        self._stack: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in self._spent:
            raise ValueError(f"stage {name!r} is not one of {', '.join(STAGES)}")
        now = self._clock()
        if self._stack:  # pause the enclosing stage
            outer, started = self._stack[-1]
            self._spent[outer] += now - started
        self._stack.append((name, now))
        try:
            yield
        finally:
            _, started = self._stack.pop()
            now = self._clock()
            self._spent[name] += now - started
            if self._stack:  # resume it
                self._stack[-1] = (self._stack[-1][0], now)

    def timed(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, its wall time counted under stage ``name``."""
        with self.stage(name):
            return fn(*args, **kwargs)

    def times(self) -> StageTimes:
        return StageTimes(**{f"{s}_s": max(0.0, v) for s, v in self._spent.items()})


def combined(first: StageTimes | None, second: StageTimes | None) -> StageTimes | None:
    """The sum of two records of the same model (e.g. the validator's and its worker's), either may be None."""
    if first is None or second is None:
        return first or second
    return first + second


def with_worker(parent: StageTimes | None, worker: StageTimes | None, worker_wall_s: float) -> StageTimes:
    """A model's times when its worker took ``worker_wall_s``: the parent's and the worker's stages, and
    the rest of the worker's wall time as ``startup``."""
    inside = worker.total_s if worker is not None else 0.0
    startup = StageTimes(startup_s=max(0.0, float(worker_wall_s) - inside))
    return combined(combined(parent, worker), startup) or startup


def budget_line(label: str, times: list[StageTimes]) -> str:
    """One log line for a step's models together: each stage summed over them, and the share of the
    whole (download excluded) spent outside the forward passes."""
    total = StageTimes()
    for t in times:
        total = total + t
    whole = total.outside_s + total.eval_s
    share = "-" if whole <= 0 else f"{100 * total.outside_s / whole:.1f}%"
    stages = " · ".join(
        f"{name} {_seconds(getattr(total, f'{stage}_s'))}"
        for name, stage in (
            ("worker start", "startup"),
            ("checks", "checks"),
            ("hash", "hash"),
            ("load", "load"),
            ("tokenize", "tokenize"),
            ("forward", "eval"),
        )
    )
    return f"{label} ({len(times)} models): {stages} · outside forward passes {share} of {_seconds(whole)}"


def pipeline_line(
    label: str, parent: StageTimes | None, worker: StageTimes | None, worker_wall_s: float | None = None
) -> str:
    """One log line for a model: the parent's stages plus those its worker reported."""
    if worker_wall_s is not None:
        times = with_worker(parent, worker, worker_wall_s)
    else:
        times = combined(parent, worker) or StageTimes()
    return f"{label}: {times.render()}"
