"""Would it win? The validator's scoring of injected losses, with the advantage of the older model."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from sn29_growth.eval.competitions import parse_competitions
from sn29_growth.eval.scoring import advantage
from sn29_growth.miner.wins import CANDIDATE, Opponent, would_win

COMPETITION = parse_competitions(
    {
        "default": {
            "group_samples": 1,
            "advantage_initial": 0.004,
            "advantage_decay": 0.995,
            "dataset": "fineweb2",
        },
        "c00": {"reward": 1.0, "model_types": ["LlamaForCausalLM"], "model_size": 10**9, "parameters": 10**8},
    }
)["c00"]
BASE_LOSSES = (100.0, 200.0, 300.0, 400.0)


def fake_evaluate(losses: dict[str, tuple[float, ...]], rejections: dict[str, str] | None = None):
    """Stands in for evaluate_models: returns the given per-sample losses; records how it was called."""
    calls = []

    def evaluate(paths, *, names, **kw):
        calls.append(dict(paths=paths, names=names, **kw))
        rows = [
            SimpleNamespace(
                name=n,
                losses=() if n in (rejections or {}) else losses[n],
                rejection=(rejections or {}).get(n),
            )
            for n in names
        ]
        return SimpleNamespace(models=rows, dataset="fake", format_table=lambda: "table")

    evaluate.calls = calls
    return evaluate


def verdict(candidate_losses, *, base_block=1_000, block=1_000, rejections=None, **kw):
    ev = fake_evaluate({"best": BASE_LOSSES, CANDIDATE: tuple(candidate_losses)}, rejections)
    opp = Opponent("best", Path("/models/best"), base_block)
    return would_win(Path("/models/cand"), [opp], COMPETITION, current_block=block, evaluate=ev, **kw), ev


def test_a_fresh_commitment_needs_to_beat_the_advantage():
    adv = advantage(0, 0.004, 0.995)  # the current best committed at this very block: 1 - 0.004
    just_short = [v * adv * 1.0001 for v in BASE_LOSSES]  # 0.39 % better: not enough
    enough = [v * adv * 0.9999 for v in BASE_LOSSES]
    lost, _ = verdict(just_short)
    won, _ = verdict(enough)
    assert not lost.wins and lost.win_rate == 0.0 and lost.opponent_win_rates == {"best": 1.0}
    assert won.wins and won.win_rate == 1.0
    assert won.advantages["best"] == pytest.approx(adv)


def test_the_advantage_decays_with_the_age_of_the_best():
    epochs = 400  # 0.995**400 ≈ 0.135: the advantage has shrunk to about 0.05 %
    age = 361 * epochs
    losses = [v * 0.999 for v in BASE_LOSSES]  # 0.1 % better
    young, _ = verdict(losses, base_block=10_000, block=10_000)
    old, _ = verdict(losses, base_block=10_000, block=10_000 + age)
    assert not young.wins and old.wins
    assert old.advantages["best"] == pytest.approx(1 - 0.004 * 0.995**epochs)


def test_ties_and_partial_wins():
    half = [BASE_LOSSES[0] * 0.5, BASE_LOSSES[1] * 0.5, BASE_LOSSES[2], BASE_LOSSES[3]]
    v, _ = verdict(half)
    assert v.win_rate == 0.5 and not v.wins  # needs more than every opponent, not a tie
    v, _ = verdict(half, min_win_rate=0.0)
    assert not v.wins
    three = [*(x * 0.5 for x in BASE_LOSSES[:3]), BASE_LOSSES[3]]
    v, _ = verdict(three, min_win_rate=0.8)
    assert v.win_rate == 0.75 and not v.wins  # above the opponent, below the threshold
    v, _ = verdict(three)
    assert v.wins


def test_infinite_candidate_samples_lose_them():
    v, _ = verdict([math.inf, 1.0, 1.0, 1.0])
    assert v.win_rate == 0.75 and v.wins
    assert v.mean_losses[CANDIDATE] == pytest.approx(1.0)  # the mean is over finite samples


def test_rejected_candidate_never_wins_and_rejected_opponent_is_not_scored():
    v, _ = verdict([1.0] * 4, rejections={CANDIDATE: "12,345 parameters, above the limit"})
    assert not v.wins and "above the limit" in v.reason
    v, _ = verdict([1.0] * 4, rejections={"best": "config has auto_map"})
    assert v.wins and v.reason == "no opponent to beat"


def test_evaluation_is_called_like_the_validator_does():
    _, ev = verdict([1.0] * 4, dataset="local", samples=8, seed=3, device="cpu", cache_dir=Path("/c"))
    (call,) = ev.calls
    assert call["names"] == ["best", CANDIDATE] and call["paths"] == ["/models/best", "/models/cand"]
    assert call["competition"] is COMPETITION
    assert (call["dataset"], call["samples"], call["seed"], call["device"], call["cache_dir"]) == (
        "local",
        8,
        3,
        "cpu",
        "/c",
    )


def test_opponent_names_are_checked():
    with pytest.raises(ValueError, match="name"):
        Opponent(CANDIDATE, Path("/x"), 0)
    with pytest.raises(ValueError, match="block"):
        Opponent("best", Path("/x"), -1)
