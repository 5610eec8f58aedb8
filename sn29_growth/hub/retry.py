"""Bounded retries with exponential backoff for Hub calls (used only at the network boundary)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sn29_growth.hub.protocol import HubError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before try n+1 is ``backoff_s * 2**(n-1)``, at most ``max_backoff_s``."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"max_backoff_s must be >= backoff_s, got {self.max_backoff_s}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds or raises a non-retryable :class:`HubError`, at most ``policy.attempts`` times.

    Only errors whose ``retryable`` flag is set (5xx, timeouts, dropped connections) are retried; the last one
    is re-raised when the attempts are used up.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except HubError as exc:
            if not exc.retryable or attempt == policy.attempts:
                raise
            wait = policy.delay(attempt)
            logger.warning(
                "%s failed (attempt %d/%d): %s; retrying in %.1fs", what, attempt, policy.attempts, exc, wait
            )
            sleep(wait)
    raise AssertionError("unreachable")
