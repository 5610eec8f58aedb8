"""Config fields that carry their command-line help, and the validators the configs share.

A frozen config dataclass states each setting once, default and help together, with :func:`setting`;
:func:`sn29_growth.cliutil.add_setting` turns such a field into an argparse flag, so no flag restates a
default or re-words a help text. The validators raise ``ValueError`` naming the field, as every config's
``__post_init__`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, field
from typing import Any


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A dataclass field whose metadata holds its flag's ``help``, ``metavar`` and ``choices``."""
    metadata = {"help": help, "metavar": metavar, "choices": tuple(choices) if choices else None}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------------------ validators


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(name: str, value: Any) -> None:
    if not (_number(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


def non_negative(name: str, value: Any) -> None:
    if not (_number(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")


def int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


def fraction(name: str, value: Any, *, include_one: bool = True) -> None:
    """``value`` in [0, 1] (``include_one``) or [0, 1)."""
    ok = _number(value) and value >= 0.0 and (value <= 1.0 if include_one else value < 1.0)
    if not ok:
        raise ValueError(f"{name}: must be in [0, {'1]' if include_one else '1)'}, got {value!r}")


def one_of(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be a bool, got {value!r}")
