"""Validation of SN29's ``norm_divisor`` config value (no torch: usable before any model is built)."""

from __future__ import annotations

import math
import numbers

from sn29_growth.reasons import quoted


def validate_norm_divisor(value: object) -> float | int | None:
    """Return ``value`` if it is a valid ``norm_divisor`` (None, or a positive finite real number)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"norm_divisor must be a positive finite number or null, got {quoted(value)}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"norm_divisor must be a positive finite number or null, got {quoted(value)}")
    return value
