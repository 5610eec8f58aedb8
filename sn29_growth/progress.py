"""Progress of long phases that reads well on a terminal and in a log file.

On a terminal :class:`Progress` is a tqdm bar (log records printed meanwhile go above the bar). Anywhere
else (a log file, ``tee``, systemd's journal) a bar becomes one long line of carriage returns, so
:class:`Progress` logs a plain line through ``logging`` instead, at most every ``interval_s`` seconds
(default 30, or the ``SN29_PROGRESS_INTERVAL`` environment variable), plus a final line when the phase
lasted long enough to have logged one::

    train: 120/2,000 step (6%) · 0.52 step/s · ETA 1h00m · loss=3.2145 tok_s=12,345
    Llama-3.2-1B: 1.25M/5.00M tok (25%) · 45.3k tok/s · ETA 1m23s · samples=128/512
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

INTERVAL_ENV = "SN29_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0

_log = logging.getLogger(__name__)


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between two progress lines: ``SN29_PROGRESS_INTERVAL`` when it is a number >= 0."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_amount(value: float, scale: bool) -> str:
    """``12,345`` or, with ``scale``, ``12.3k`` / ``4.56M`` / ``7.89G``."""
    if scale:
        for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= factor:
                return (
                    f"{value / factor:.3g}{suffix}"
                    if value / factor < 100
                    else f"{value / factor:.0f}{suffix}"
                )
        return f"{value:.3g}" if value != int(value) else f"{int(value)}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.3g}"


def _format_rate(rate: float, scale: bool) -> str:
    if scale or rate >= 100:
        return format_amount(round(rate) if rate >= 100 else rate, scale)
    return f"{rate:.3g}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """A progress counter for one phase: a tqdm bar on a terminal, periodic log lines elsewhere.

    ``total`` (``None`` when unknown) and ``initial`` are in ``unit``; ``unit_scale`` writes large amounts
    as ``1.25M``. ``bar=False`` never shows a bar (log lines even on a terminal); ``enabled=False`` shows
    nothing (e.g. ranks other than 0). ``update(n, **postfix)`` advances by ``n`` and replaces the
    ``key=value`` details shown after the rates. ``logger`` is the caller's logger; ``stream`` is where
    the bar would go (stderr) and decides between bar and lines; ``clock`` is for tests.
    """

    def __init__(
        self,
        total: float | None,
        desc: str,
        *,
        unit: str = "it",
        initial: float = 0,
        unit_scale: bool = False,
        bar: bool = True,
        enabled: bool = True,
        leave: bool = True,
        logger: logging.Logger | None = None,
        interval_s: float | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.initial = initial
        self.n = initial
        self.enabled = enabled
        self.logger = logger or _log
        self.interval_s = interval_from_env() if interval_s is None else interval_s
        self.postfix: dict[str, Any] = {}
        self.lines = 0  # log lines written so far
        self._clock = clock
        self._start = self._last = clock()
        self._closed = False
        self._tqdm = None
        self._redirect = contextlib.ExitStack()
        stream = sys.stderr if stream is None else stream
        if enabled and bar and is_terminal(stream):
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._tqdm = tqdm(
                total=total,
                initial=initial,
                unit=unit,
                unit_scale=unit_scale,
                desc=desc,
                leave=leave,
                dynamic_ncols=True,
                file=stream,
            )
            self._redirect.enter_context(logging_redirect_tqdm(tqdm_class=type(self._tqdm)))

    @property
    def bar(self):
        """The tqdm bar in use, or ``None`` when progress goes to the log (or nowhere)."""
        return self._tqdm

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1, **postfix: Any) -> None:
        if self._closed or not self.enabled:
            return
        self.n += n
        if postfix:
            self.postfix = dict(postfix)
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix({k: _format_value(v) for k, v in postfix.items()}, refresh=False)
            self._tqdm.update(n)
            return
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._emit(now)

    def close(self) -> None:
        """End the phase: close the bar, or log a final line if this phase logged any line."""
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
            self._redirect.close()
        elif self.enabled and self.lines:
            self._emit(self._clock(), final=True)

    # -------------------------------------------------------------------------------------- lines

    def rate(self, now: float | None = None) -> float | None:
        """Units per second since the phase started (``None`` before any time or work has passed)."""
        elapsed = (self._clock() if now is None else now) - self._start
        done = self.n - self.initial
        if elapsed <= 0 or done <= 0:
            return None
        return done / elapsed

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The log line describing where the phase stands."""
        now = self._clock() if now is None else now
        amount = format_amount(self.n, self.unit_scale)
        if self.total is not None:
            amount += f"/{format_amount(self.total, self.unit_scale)}"
        head = f"{amount} {self.unit}"
        if self.total:
            head += f" ({100.0 * self.n / self.total:.0f}%)"
        if final:
            reached = self.total is None or self.n >= self.total
            head = f"{'done' if reached else 'stopped at'} {head} in {format_duration(now - self._start)}"
        parts = [head]
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{_format_rate(rate, self.unit_scale)} {self.unit}/s")
            if not final and self.total is not None and self.n < self.total:
                parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(" ".join(f"{k}={_format_value(v)}" for k, v in self.postfix.items()))
        return f"{self.desc}: " + " · ".join(parts)

    def _emit(self, now: float, final: bool = False) -> None:
        self.logger.info("%s", self.line(now, final))
        self.lines += 1
        self._last = now
