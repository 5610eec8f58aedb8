"""Would the candidate win? Score it against the current best exactly as a validator would.

The losses come from the validator's evaluation (:func:`sn29_growth.eval.evaluate.evaluate_models`, with
the competition's tokenization rule, sample caps and checks), the verdict from the validator's scoring
(:func:`sn29_growth.eval.scoring.score_competition`): the opponents keep their commitment blocks, the
candidate is scored as if committed at the current block, so every opponent holds the advantage of the
older model (a sample changes hands only if ``loss_new < loss_old · adv(old)``).

The candidate wins when its win rate is at least ``min_win_rate`` and above every opponent's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.eval.competitions import Competition
from sn29_growth.eval.scoring import ModelLosses, ScoreSettings, mean_finite, score_competition

log = logging.getLogger(__name__)

CANDIDATE = "candidate"


@dataclass(frozen=True)
class Opponent:
    """A model the candidate must beat: its local directory and the block it was committed at."""

    name: str
    path: Path
    block: int
    uid: int = 0

    def __post_init__(self) -> None:
        if not self.name or self.name == CANDIDATE:
            raise ValueError(f"name must be non-empty and not {CANDIDATE!r}, got {self.name!r}")
        if self.block < 0:
            raise ValueError(f"block must be >= 0, got {self.block}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`would_win`. ``mean_losses``: mean summed loss per sample, by model name."""

    wins: bool
    reason: str
    win_rate: float
    opponent_win_rates: dict[str, float] = field(default_factory=dict)
    mean_losses: dict[str, float | None] = field(default_factory=dict)
    advantages: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    dataset: str = ""
    table: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "wins": self.wins,
            "reason": self.reason,
            "win_rate": self.win_rate,
            "opponent_win_rates": self.opponent_win_rates,
            "mean_losses": self.mean_losses,
            "advantages": self.advantages,
            "samples": self.samples,
            "dataset": self.dataset,
        }


def would_win(
    candidate: Path,
    opponents: Sequence[Opponent],
    competition: Competition,
    *,
    current_block: int,
    dataset: str = "fineweb",
    samples: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    cache_dir: Path | None = None,
    min_win_rate: float = 0.5,
    evaluate: Callable[..., Any] | None = None,
) -> Verdict:
    """Evaluate ``candidate`` beside ``opponents`` on the same samples and score them with the advantage.

    ``evaluate`` defaults to :func:`~sn29_growth.eval.evaluate.evaluate_models` (tests inject losses).
    """
    if evaluate is None:
        from sn29_growth.eval.evaluate import evaluate_models as evaluate
    paths = [o.path for o in opponents] + [candidate]
    names = [o.name for o in opponents] + [CANDIDATE]
    if len(set(names)) != len(names):
        raise ValueError("opponents need distinct names")
    result = evaluate(
        [str(p) for p in paths],
        names=names,
        competition=competition,
        dataset=dataset,
        samples=samples,
        seed=seed,
        device=device,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    rows = {m.name: m for m in result.models}
    table = result.format_table()
    cand = rows[CANDIDATE]
    if cand.rejection:
        return Verdict(
            False,
            f"a validator would reject the candidate: {cand.rejection}",
            0.0,
            dataset=result.dataset,
            table=table,
        )
    scored = {CANDIDATE: ModelLosses(uid=len(opponents), block=current_block, losses=cand.losses)}
    for i, o in enumerate(opponents):
        row = rows[o.name]
        if row.rejection:
            log.warning(
                "opponent %s is rejected by the validator's checks (%s); not scored", o.name, row.rejection
            )
            continue
        scored[o.name] = ModelLosses(uid=i, block=min(o.block, current_block), losses=row.losses)
    means = {name: mean_finite(m.losses) for name, m in scored.items()}
    n = len(cand.losses)
    if len(scored) == 1:
        return Verdict(
            True,
            "no opponent to beat",
            1.0,
            mean_losses=means,
            samples=n,
            dataset=result.dataset,
            table=table,
        )
    score = score_competition(
        list(scored.values()),
        ScoreSettings.from_competition(competition),
        current_block=current_block,
        seed=seed,
    )
    by_uid = {m.uid: name for name, m in scored.items()}
    rates = {by_uid[u]: float(r) for u, r in score.win_rates.items()}
    advantages = {by_uid[u]: float(a) for u, a in score.result.advantages.items()}
    mine = rates.pop(CANDIDATE)
    best_other = max(rates.values())
    wins = mine >= min_win_rate and mine > best_other
    reason = (
        f"win rate {mine:.3f} vs {best_other:.3f} for the best opponent over {score.result.n_samples} "
        f"scored group(s) (needs >= {min_win_rate:.3f} and more than every opponent)"
    )
    log.info("would it win? %s: %s", "yes" if wins else "no", reason)
    return Verdict(wins, reason, mine, rates, means, advantages, n, result.dataset, table)
