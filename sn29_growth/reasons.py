"""Bounded reasons: a model's files choose what a rejection may quote, so every reason has a length limit.

:func:`bound_reason` is applied where reasons are kept (a result row, a validator's model record), so a
900 KB config value never reaches the state file, a table or a log line. :func:`quoted` is for messages
that quote a value of a model's files: its ``repr``, shortened.
"""

from __future__ import annotations

from typing import Any

MAX_REASON_CHARS = 1000
"""The longest reason kept: whole sentences of the checks fit, a quoted hostile value does not."""

QUOTE_CHARS = 60
"""The longest quoted value inside a reason."""


def shorten(text: str, limit: int) -> str:
    """``text``, or its start and how long it was, within ``limit`` characters (at least 40)."""
    limit = max(limit, 40)
    if len(text) <= limit:
        return text
    tail = f"… ({len(text):,} characters)"
    return text[: limit - len(tail)] + tail


def bound_reason(reason: str | None) -> str | None:
    """A reason within :data:`MAX_REASON_CHARS` (None stays None)."""
    return None if reason is None else shorten(str(reason), MAX_REASON_CHARS)


def quoted(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` shortened to about ``limit`` characters, for a message that names a file's value."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    return shorten(repr(value), limit)
