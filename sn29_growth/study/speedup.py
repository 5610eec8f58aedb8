"""Tokens saved by growth: when each arm's held-out loss curve crosses the base's loss and scratch's final loss.

Curves are ``[{tokens, val_loss}]`` at the validation points; between two points the loss is taken as
linear in tokens (:func:`loss_at`, :func:`tokens_to_reach`). Per arm and seed (:func:`arm_metrics`):

- ``tokens_to_beat_base``: tokens trained after growth until the loss is below the base model's final
  loss by ``margin`` (a preserving arm starts *at* the base's loss, so the margin keeps rounding from
  counting as a win);
- ``tokens_to_scratch``: tokens after growth until the loss reaches scratch's final loss (scratch's own
  value is the tokens at which it first reaches it, normally its whole run);
- ``tokens_to_scratch_total``: the same plus the tokens the base model was trained on (zero for scratch);
- ``speedup_after`` = scratch's tokens / ``tokens_to_scratch``; ``speedup_total`` = scratch's tokens /
  ``tokens_to_scratch_total`` — the published anchors' "× fewer tokens than from scratch", which counts
  the base model's training as spent;
- ``loss_at_scratch_tokens``: the loss after as many tokens as scratch trained (equal tokens after growth);
- against a *long* scratch run (``reads: all``: it trains on the base's tokens and the arms' tokens):
  ``long_scratch_tokens`` it needs to reach this arm's final loss, and ``speedup_vs_long_scratch`` =
  that ÷ the tokens this arm spent in all (the base's included) — the anchors' "× fewer tokens than
  scratch to the same loss". When the long run never gets there, the speed-up is at least its length ÷
  the arm's tokens: that lower bound is reported, with ``long_scratch_reached`` false. The other way
  round, ``tokens_to_long_scratch_total`` is what this arm needs, the base's tokens included, to reach the
  long run's final loss, and ``speedup_at_long_scratch_loss`` = the long run's tokens to that loss ÷ it.

``None`` means never reached within the run. :func:`summarize_metrics` gives mean and sample standard
deviation over the seeds that reached, with how many did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

METRICS = (
    "tokens_to_beat_base",
    "tokens_to_scratch",
    "tokens_to_scratch_total",
    "speedup_after",
    "speedup_total",
    "loss_at_scratch_tokens",
    "long_scratch_tokens",
    "speedup_vs_long_scratch",
    "tokens_to_long_scratch_total",
    "speedup_at_long_scratch_loss",
)


def _points(curve: list[dict]) -> list[tuple[float, float]]:
    pts = sorted((float(p["tokens"]), float(p["val_loss"])) for p in curve)
    if not pts:
        raise ValueError("curve: no validation points")
    return pts


def loss_at(curve: list[dict], tokens: float) -> float | None:
    """The loss after ``tokens``, linear between validation points; ``None`` outside the curve."""
    pts = _points(curve)
    if tokens < pts[0][0] or tokens > pts[-1][0]:
        return None
    for (t0, l0), (t1, l1) in zip(pts, pts[1:], strict=False):
        if t0 <= tokens <= t1:
            return l0 if t1 == t0 else l0 + (l1 - l0) * (tokens - t0) / (t1 - t0)
    return pts[-1][1]


def tokens_to_reach(curve: list[dict], target: float) -> float | None:
    """The first token count at which the loss is ``<= target`` (linear between points), or ``None``."""
    pts = _points(curve)
    if pts[0][1] <= target:
        return pts[0][0]
    for (t0, l0), (t1, l1) in zip(pts, pts[1:], strict=False):
        if l1 <= target:
            return t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    return None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or num == den == 0:
        return None
    return math.inf if den == 0 else num / den


def arm_metrics(
    arm: dict, base: dict, scratch: dict | None, margin: float, long: dict | None = None
) -> dict[str, float | bool | None]:
    """The token counts and speed-ups of one arm's record against its seed's base and scratch records
    (``long``: the seed's scratch run on base + arm tokens, if the study has one)."""
    curve = arm["curve"]
    out: dict[str, float | bool | None] = {
        "tokens_to_beat_base": tokens_to_reach(curve, base["loss"] - margin),
        **{k: None for k in METRICS[1:]},
        "long_scratch_reached": None,
    }
    if long is not None and arm is not long:
        spent = arm["tokens"] + (0 if arm["kind"] == "scratch" else base["tokens"])
        need = tokens_to_reach(long["curve"], arm["final_loss"])
        out["long_scratch_reached"] = need is not None
        out["long_scratch_tokens"] = need
        out["speedup_vs_long_scratch"] = (need if need is not None else long["tokens"]) / spent
        after = tokens_to_reach(curve, long["final_loss"])
        if after is not None:
            total = after + spent - arm["tokens"]
            out["tokens_to_long_scratch_total"] = total
            out["speedup_at_long_scratch_loss"] = _ratio(
                tokens_to_reach(long["curve"], long["final_loss"]), total
            )
    if scratch is None:
        return out
    target = scratch["final_loss"]
    scratch_tokens = tokens_to_reach(scratch["curve"], target)
    after = tokens_to_reach(curve, target)
    spent = 0 if arm["kind"] == "scratch" else base["tokens"]
    total = None if after is None else after + spent
    out.update(
        tokens_to_scratch=after,
        tokens_to_scratch_total=total,
        speedup_after=_ratio(scratch_tokens, after),
        speedup_total=_ratio(scratch_tokens, total),
        loss_at_scratch_tokens=None if scratch_tokens is None else loss_at(curve, scratch["tokens"]),
    )
    return out


def study_metrics(arms: list[dict], bases: list[dict], margin: float) -> dict[tuple[str, int], dict]:
    """:func:`arm_metrics` of every (arm, seed), pairing each with its seed's base and scratch run (the
    first arm of kind ``scratch``; without one, only ``tokens_to_beat_base`` is computed) and its long
    scratch run (``reads: all``), if any."""
    base_of = {b["seed"]: b for b in bases}
    scratch_of, long_of = {}, {}
    for r in arms:
        if r["kind"] == "scratch":
            (long_of if r.get("reads") == "all" else scratch_of).setdefault(r["seed"], r)
    return {
        (r["arm"], r["seed"]): arm_metrics(
            r, base_of[r["seed"]], scratch_of.get(r["seed"]), margin, long_of.get(r["seed"])
        )
        for r in arms
    }


def jsonable(value: float | None) -> float | str | None:
    """``inf`` as the string ``"inf"`` (strict JSON has no infinity)."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over the seeds that reached, of ``seeds`` seeds (``mean`` is
    ``inf`` when a seed's arm started already past the target: an unbounded speed-up)."""

    mean: float | None
    std: float | None
    reached: int
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": jsonable(self.mean), "std": self.std, "reached": self.reached, "seeds": self.seeds}

    def text(self, fmt: str = "{:,.0f}") -> str:
        if self.mean is None:
            return "never"
        if math.isinf(self.mean):
            return "∞ (starts there)"
        s = fmt.format(self.mean)
        if self.reached > 1:
            s += " ± " + fmt.format(self.std)
        if self.reached < self.seeds:
            s += f" ({self.reached}/{self.seeds} seeds)"
        return s


def stat(values: list[float | None]) -> Stat:
    got = [v for v in values if v is not None]
    if not got:
        return Stat(None, None, 0, len(values))
    if any(math.isinf(v) for v in got):
        return Stat(math.inf, None, len(got), len(values))
    m = sum(got) / len(got)
    sd = math.sqrt(sum((v - m) ** 2 for v in got) / (len(got) - 1)) if len(got) > 1 else 0.0
    return Stat(m, sd, len(got), len(values))


def summarize_metrics(per_run: dict[tuple[str, int], dict]) -> dict[str, dict[str, Stat]]:
    """arm → metric → :class:`Stat` over seeds (arms in first-seen order)."""
    arms: dict[str, list[dict]] = {}
    for (arm, _seed), m in per_run.items():
        arms.setdefault(arm, []).append(m)
    return {arm: {k: stat([m[k] for m in ms]) for k in METRICS} for arm, ms in arms.items()}


def long_scratch_reached(per_run: dict[tuple[str, int], dict]) -> dict[str, tuple[int, int]]:
    """arm → (seeds on which the long scratch run reached the arm's final loss, seeds compared)."""
    out: dict[str, tuple[int, int]] = {}
    for (arm, _seed), m in per_run.items():
        got, n = out.get(arm, (0, 0))
        if m.get("long_scratch_reached") is not None:
            got, n = got + bool(m["long_scratch_reached"]), n + 1
        out[arm] = (got, n)
    return out


def markdown_tokens_table(
    summary: dict[str, dict[str, Stat]],
    base_tokens: int,
    labels: dict[str, str],
    reached: dict[str, tuple[int, int]] | None = None,
) -> str:
    """The tokens-saved table: one row per arm, mean ± std over seeds (``reached``: see
    :func:`long_scratch_reached`; with it, the long-scratch columns are added)."""
    reached = reached or {}
    long = any(n for _, n in reached.values())
    head = [
        "arm",
        "strategy",
        "tokens after growth to beat the base",
        "tokens after growth to scratch's final loss",
        f"… including the base's {base_tokens:,}",
        "speed-up vs scratch (after growth)",
        "speed-up vs scratch (incl. base)",
        "loss at scratch's tokens",
    ]
    if long:
        head += [
            "long scratch: tokens to this arm's final loss",
            "speed-up to this arm's final loss (incl. base)",
            "tokens incl. base to long scratch's final loss",
            "speed-up to long scratch's final loss (incl. base)",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, m in summary.items():
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{arm}`",
                    labels.get(arm, ""),
                    m["tokens_to_beat_base"].text(),
                    m["tokens_to_scratch"].text(),
                    m["tokens_to_scratch_total"].text(),
                    m["speedup_after"].text("{:.2f}×"),
                    m["speedup_total"].text("{:.2f}×"),
                    m["loss_at_scratch_tokens"].text("{:.4f}"),
                    *(_long_cells(m, reached.get(arm, (0, 0))) if long else []),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _long_cells(m: dict[str, Stat], reached: tuple[int, int]) -> list[str]:
    got, n = reached
    if not n:
        return ["–"] * 4
    speed = m["speedup_vs_long_scratch"].text("{:.2f}×")
    if got < n:
        speed = ("≥ " if got == 0 else "") + speed + f" (long scratch never got there on {n - got}/{n} seeds)"
    return [
        m["long_scratch_tokens"].text(),
        speed,
        m["tokens_to_long_scratch_total"].text(),
        m["speedup_at_long_scratch_loss"].text("{:.2f}×"),
    ]
