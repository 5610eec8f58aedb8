"""SN29 scoring rules: grouping, advantage, wins, weights, bounties, EMA — tables and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sn29_growth.eval.competitions import Bounty, default_competitions, default_hall_of_fame
from sn29_growth.eval.scoring import (
    BLOCKS_PER_EPOCH,
    ModelLosses,
    ScoreSettings,
    advantage,
    bounty_shares,
    competition_weights,
    compute_wins,
    ema,
    group_samples,
    sample_order,
    score_competition,
    weights_from_win_rates,
)

INF = math.inf
NAN = math.nan
HOTKEY_A = "5FFM6Nvvm78GqyMratgXXvjbqZPi7SHgSQ81nyS96jBuUWgt"
HOTKEY_B = "5FFApaS75bv5pJHfAp2FVLBj9ZaXuFDjEypsaBNc1wCfe52v"
WEEK = 140 * BLOCKS_PER_EPOCH  # 140 epochs of 72 minutes


def wins_of(models, *, current_block=10_000, initial=0.004, decay=1.0):
    """decay=1 makes every advantage exactly 1 − initial, whatever the age (easy hand computation)."""
    result = compute_wins(
        models, current_block=current_block, advantage_initial=initial, advantage_decay=decay
    )
    return dict(result.wins)


# --------------------------------------------------------------------------------------------- advantage


@pytest.mark.parametrize(
    ("delta", "initial", "decay", "expected"),
    [
        (0, 0.004, 0.995, 0.996),
        (361, 0.004, 0.995, 1 - 0.004 * 0.995),
        (722, 0.004, 0.995, 1 - 0.004 * 0.995**2),
        (180.5, 0.004, 0.995, 1 - 0.004 * 0.995**0.5),
        (WEEK, 0.004, 0.995, 0.998017),  # about half the advantage left after a week
        (10**9, 0.004, 0.995, 1.0),
        (12345, 0.0, 0.995, 1.0),
        (12345, 0.004, 1.0, 0.996),
    ],
)
def test_advantage_table(delta, initial, decay, expected):
    assert advantage(delta, initial, decay) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("delta", "initial", "decay"),
    [
        (-1, 0.004, 0.995),
        (NAN, 0.004, 0.995),
        (0, 1.0, 0.995),
        (0, -0.1, 0.995),
        (0, 0.004, 0.0),
        (0, 0.004, 1.1),
    ],
)
def test_advantage_rejects_bad_arguments(delta, initial, decay):
    with pytest.raises(ValueError):
        advantage(delta, initial, decay)


# -------------------------------------------------------------------------------------------------- wins


def test_two_models_the_advantage_table():
    # adv = 0.996 for both; the older model A holds a sample unless B < A · 0.996.
    a = ModelLosses(uid=5, block=10, losses=(100.0, 100.0, 100.0, INF, 50.0, NAN))
    b = ModelLosses(uid=3, block=20, losses=(99.7, 99.5, 100.5, 500.0, NAN, INF))
    #  s0: 99.7 ≥ 99.6 → A keeps (newer only slightly better)   s1: 99.5 < 99.6 → B takes
    #  s2: B worse → A     s3: A is +inf → B     s4: B NaN(+inf) → A     s5: both +inf → dropped
    result = compute_wins([a, b], current_block=100, advantage_initial=0.004, advantage_decay=1.0)
    assert result.order == (5, 3)
    assert dict(result.wins) == {3: 2, 5: 3}
    assert result.n_samples == 5 and result.n_dropped == 1
    assert dict(result.win_rates) == {3: 0.4, 5: 0.6}
    assert dict(result.advantages) == {3: pytest.approx(0.996), 5: pytest.approx(0.996)}


def test_the_holders_advantage_applies_not_the_oldest_models():
    a = ModelLosses(1, 100, (100.0, 100.0, 100.0, 100.0))
    b = ModelLosses(2, 200, (99.0, 101.0, 99.0, 99.7))
    c = ModelLosses(3, 300, (98.7, 99.5, 98.5, 99.65))
    # s0: B takes (99 < 99.6); C must beat 99 · 0.996 = 98.604 → 98.7 does not, although it beats A · 0.996.
    # s1: B does not take (101); C takes from A (99.5 < 99.6).
    # s2: B takes; C takes from B (98.5 < 98.604).
    # s3: neither B (99.7) nor C (99.65) gets under 99.6 → A.
    assert wins_of([c, a, b]) == {1: 1, 2: 1, 3: 2}


def test_the_advantage_shrinks_with_the_holders_age():
    old = ModelLosses(1, 0, (100.0,))
    new = ModelLosses(2, WEEK, (99.75,))
    # The holder's age at current_block sets adv: at age 0 B needs < 99.6, a week later < 99.8017.
    young = compute_wins([old, new], current_block=0)
    assert dict(young.wins) == {1: 1, 2: 0}
    aged = compute_wins([old, new], current_block=WEEK)
    assert dict(aged.wins) == {1: 0, 2: 1}
    assert aged.advantages[1] == pytest.approx(0.998017, abs=1e-6)
    assert aged.advantages[2] == pytest.approx(0.996)


def test_a_model_holding_the_sample_brings_its_own_advantage():
    a = ModelLosses(1, 0, (100.0,))  # a week old: adv ≈ 0.998017
    b = ModelLosses(2, WEEK, (99.5,))  # one block old: adv ≈ 0.996
    c = ModelLosses(3, WEEK + 1, (99.2,))
    # B takes from A (99.5 < 99.8017); C then needs < 99.5 · adv(B) ≈ 99.102, not 99.5 · adv(A) ≈ 99.303.
    assert dict(compute_wins([a, b, c], current_block=WEEK + 1).wins) == {1: 0, 2: 1, 3: 0}


def test_a_commit_after_the_current_block_has_no_advantage():
    """As the reference computes it: a negative age gives factor 1 (not the full age-0 advantage)."""
    result = compute_wins([ModelLosses(1, 500, (1.0,))], current_block=100)
    assert result.advantages[1] == 1.0
    holder = ModelLosses(1, 500, (100.0,))  # the only holder, from the future
    challenger = ModelLosses(2, 600, (99.9,))  # beats 100 · 1, would not beat 100 · 0.996
    assert dict(compute_wins([holder, challenger], current_block=100).wins) == {1: 0, 2: 1}
    assert dict(compute_wins([holder, challenger], current_block=600).wins) == {1: 1, 2: 0}


def test_ties_go_to_the_older_model_then_the_lower_uid():
    same_block = [ModelLosses(7, 50, (10.0, 10.0)), ModelLosses(2, 50, (10.0, 10.0))]
    assert wins_of(same_block, initial=0.0) == {2: 2, 7: 0}
    assert wins_of(same_block[::-1], initial=0.0) == {2: 2, 7: 0}
    older_high_uid = [ModelLosses(9, 10, (10.0,)), ModelLosses(1, 11, (10.0,))]
    assert wins_of(older_high_uid, initial=0.0) == {1: 0, 9: 1}


def test_zero_loss_holds_against_everything():
    assert wins_of([ModelLosses(1, 1, (0.0,)), ModelLosses(2, 2, (0.0,))]) == {1: 1, 2: 0}


def test_no_samples_or_all_inf_gives_zero_win_rates():
    models = [ModelLosses(1, 1, (INF, NAN)), ModelLosses(2, 2, (NAN, None))]
    result = compute_wins(models, current_block=10)
    assert result.n_samples == 0 and result.n_dropped == 2
    assert dict(result.win_rates) == {1: 0.0, 2: 0.0}
    assert compute_wins([], current_block=10).n_samples == 0


@pytest.mark.parametrize(
    "models",
    [
        [ModelLosses(1, 1, (1.0,)), ModelLosses(1, 2, (1.0,))],
        [ModelLosses(1, 1, (1.0,)), ModelLosses(2, 2, (1.0, 2.0))],
    ],
    ids=["duplicate-uid", "ragged"],
)
def test_compute_wins_rejects_bad_input(models):
    with pytest.raises(ValueError, match="models"):
        compute_wins(models, current_block=10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"uid": -1, "block": 1, "losses": ()}, "uid"),
        ({"uid": True, "block": 1, "losses": ()}, "uid"),
        ({"uid": 1, "block": -1, "losses": ()}, "block"),
        ({"uid": 1, "block": 1, "losses": (-0.5,)}, "losses"),
        ({"uid": 1, "block": 1, "losses": (-INF,)}, "losses"),
    ],
)
def test_model_losses_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        ModelLosses(**kwargs)


def test_model_losses_normalise_nan_and_none_to_inf():
    m = ModelLosses(1, 2, np.array([1.5, np.nan, np.inf], dtype=np.float32))
    assert m.losses == (1.5, INF, INF)
    assert ModelLosses(1, 2, (NAN, None)) == ModelLosses(1, 2, (INF, INF))


# ---------------------------------------------------------------------------------------------- grouping


def test_sample_order_is_pinned():
    # Validators sharing a seed must share the order on any machine: pin it.
    assert sample_order(10, 42).tolist() == [0, 2, 5, 9, 4, 1, 6, 8, 7, 3]
    assert sample_order(10, "42").tolist() == sample_order(10, 42).tolist()
    assert sorted(sample_order(1000, 7).tolist()) == list(range(1000))
    assert sample_order(1000, 7).tolist() != sample_order(1000, 8).tolist()
    assert sample_order(0, 1).tolist() == []


def test_group_samples_table():
    losses = [
        [1.0, 2.0, 3.0, 4.0, INF, 6.0, 7.0],
        [1.0, 1.0, 1.0, 1.0, NAN, 1.0, NAN],
    ]
    # sample 4 is +inf for everyone → dropped; 6 samples in 2 groups of 3.
    grouped = group_samples(losses, 3, seed=1)
    assert grouped.shape == (2, 2)
    assert grouped[0].sum() == 23.0
    assert sorted(grouped[1].tolist()) == [3.0, INF]
    # the group in which model 1 has the NaN is the one containing sample 6 (loss 7 for model 0)
    inf_group = int(np.argmax(np.isinf(grouped[1])))
    assert grouped[0, inf_group] >= 7.0
    # g = 1 keeps every usable sample, in the seeded order
    kept = np.array([0, 1, 2, 3, 5, 6])
    np.testing.assert_array_equal(
        group_samples(losses, 1, seed=1)[0], np.array(losses[0])[kept][sample_order(6, 1)]
    )


def test_group_samples_leaves_out_the_partial_last_group():
    losses = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    grouped = group_samples(losses, 4, seed=3)
    assert grouped.shape == (1, 1)
    left_out = set(np.array(losses[0])[sample_order(6, 3)[4:]].tolist())
    assert grouped[0, 0] == 21.0 - sum(left_out)
    assert group_samples(losses, 7, seed=3).shape == (1, 0)


@pytest.mark.parametrize(
    ("losses", "g"), [([1.0, 2.0], 1), ([[1.0, -2.0]], 1), ([[1.0]], 0), ([[1.0]], True)], ids=str
)
def test_group_samples_rejects_bad_input(losses, g):
    with pytest.raises(ValueError):
        group_samples(losses, g, seed=0)


# --------------------------------------------------------------------------------------------- weights


def test_competition_weights_table():
    assert competition_weights({1: 0.75, 2: 0.25}, 2.0) == pytest.approx({1: 0.9, 2: 0.1})
    assert competition_weights({1: 0.75, 2: 0.25}, 1.0) == pytest.approx({1: 0.75, 2: 0.25})
    assert competition_weights({1: 0.0, 2: 0.0}, 2.0) == {1: 0.0, 2: 0.0}
    assert competition_weights({}, 2.0) == {}
    with pytest.raises(ValueError, match="skew"):
        competition_weights({1: 0.5}, 0.0)
    with pytest.raises(ValueError, match="win_rates"):
        competition_weights({1: 1.5}, 1.0)


WIN_RATES = {"c00": {1: 0.75, 2: 0.25}, "c01": {3: 1.0}}


@pytest.mark.parametrize(
    ("win_rates", "reward", "bounties", "expected"),
    [
        (WIN_RATES, {"c00": 0.5, "c01": 0.5}, None, {1: 0.45, 2: 0.05, 3: 0.5}),
        (WIN_RATES, {"c00": 0.75, "c01": 0.25}, None, {1: 0.675, 2: 0.075, 3: 0.25}),
        (WIN_RATES, {"c00": 1.5, "c01": 0.5}, None, {1: 0.675, 2: 0.075, 3: 0.25}),  # rewards are relative
        (WIN_RATES, {"c00": 0.5, "c01": 0.5}, {9: 0.2}, {1: 0.36, 2: 0.04, 3: 0.4, 9: 0.2}),
        (WIN_RATES, {"c00": 0.5, "c01": 0.5}, {3: 0.2}, {1: 0.36, 2: 0.04, 3: 0.6}),
        (
            {"c00": {1: 0.0, 2: 0.0}, "c01": {3: 0.5}},
            {"c00": 0.5, "c01": 0.5},
            None,
            {1: 0.0, 2: 0.0, 3: 1.0},
        ),
        ({"c00": {1: 0.0}}, {"c00": 1.0}, {9: 0.1}, {1: 0.0, 9: 1.0}),
        ({"c00": {1: 0.0}}, {"c00": 1.0}, None, {1: 0.0}),
        (WIN_RATES, {"c00": 0.5, "c01": 0.5}, {9: 1.0}, {1: 0.0, 2: 0.0, 3: 0.0, 9: 1.0}),
    ],
)
def test_weights_from_win_rates_table(win_rates, reward, bounties, expected):
    weights = weights_from_win_rates(win_rates, 2.0, reward, bounties=bounties)
    assert weights == pytest.approx(expected, abs=1e-12)
    assert list(weights) == sorted(weights)


def test_weights_per_competition_skew():
    weights = weights_from_win_rates(WIN_RATES, {"c00": 1.0, "c01": 2.0}, {"c00": 0.5, "c01": 0.5})
    assert weights == pytest.approx({1: 0.375, 2: 0.125, 3: 0.5})


def test_weights_reject_inconsistent_input():
    with pytest.raises(ValueError, match="reward"):
        weights_from_win_rates(WIN_RATES, 2.0, {"c00": 1.0})
    with pytest.raises(ValueError, match="reward"):
        weights_from_win_rates(WIN_RATES, 2.0, {"c00": -1.0, "c01": 1.0})
    with pytest.raises(ValueError, match="bounties"):
        weights_from_win_rates(WIN_RATES, 2.0, {"c00": 1.0, "c01": 1.0}, bounties={9: 0.7, 8: 0.6})


def test_weights_for_the_published_competitions():
    comps = default_competitions()
    skew = {name: c.weight_skew_factor for name, c in comps.items()}
    weights = weights_from_win_rates(
        {"c00": {0: 0.5, 1: 0.5}, "c01": {2: 0.8, 3: 0.2}}, skew, comps.rewards()
    )
    # skew 2.0: c01 → 0.64 / 0.68 and 0.04 / 0.68 of its half
    assert weights == pytest.approx({0: 0.25, 1: 0.25, 2: 0.5 * 0.64 / 0.68, 3: 0.5 * 0.04 / 0.68})


# -------------------------------------------------------------------------------------------- bounties


def test_bounty_shares_table():
    fresh = Bounty(hotkey=HOTKEY_A, block=1000, reward=2.0)
    assert bounty_shares([fresh], 1000) == pytest.approx({HOTKEY_A: 0.01})  # reward / 200
    assert bounty_shares([fresh], 1000 + 361) == pytest.approx({HOTKEY_A: 0.01 * 0.995})
    assert bounty_shares([fresh], 1000 + 3610) == pytest.approx({HOTKEY_A: 0.01 * 0.995**10})
    assert bounty_shares([fresh], 999) == {}  # not active yet
    second = Bounty(hotkey=HOTKEY_A, block=1000, reward=1.0)
    other = Bounty(hotkey=HOTKEY_B, block=1000, reward=4.0)
    assert bounty_shares([fresh, second, other], 1000) == pytest.approx({HOTKEY_A: 0.015, HOTKEY_B: 0.02})


def test_bounty_shares_are_capped_by_the_max_fraction():
    big = [Bounty(hotkey=HOTKEY_A, block=0, reward=60.0), Bounty(hotkey=HOTKEY_B, block=0, reward=20.0)]
    # uncapped 0.3 + 0.1 = 0.4
    assert bounty_shares(big, 0, max_fraction=1.0) == pytest.approx({HOTKEY_A: 0.3, HOTKEY_B: 0.1})
    capped = bounty_shares(big, 0, max_fraction=0.2)
    assert capped == pytest.approx({HOTKEY_A: 0.15, HOTKEY_B: 0.05})
    assert sum(capped.values()) == pytest.approx(0.2)


def test_published_hall_of_fame_emission_control_takes_the_capped_share():
    hof = default_hall_of_fame()
    block = 5020713 + 10 * 361
    shares = bounty_shares(hof.bounties, block)
    control = "5EXXXXXnvHbsa1JSWSseFm8evjALQoqMhxETWyk8moJkaPXH"
    assert shares[control] == pytest.approx(1.0, abs=1e-12)
    assert math.fsum(shares.values()) == pytest.approx(1.0, abs=1e-12)
    assert math.fsum(bounty_shares(hof.bounties, block, max_fraction=0.4).values()) == pytest.approx(0.4)
    # before the emission-control block only the small early bounties pay
    early = bounty_shares(hof.bounties, 3436348)
    assert control not in early
    assert early[HOTKEY_B] == pytest.approx(0.005)


# ------------------------------------------------------------------------------------------------- ema


def test_ema_table():
    assert ema({1: 1.0}, {2: 1.0}) == {1: 0.5, 2: 0.5}
    assert ema({1: 0.2, 2: 0.8}, {1: 0.6, 2: 0.4}, alpha=0.25) == pytest.approx({1: 0.3, 2: 0.7})
    assert ema({}, {3: 0.7, 1: 0.3}) == {1: 0.3, 3: 0.7}  # first step: no smoothing
    assert ema({"hk": 1.0}, {}) == {"hk": 0.5}
    with pytest.raises(ValueError, match="alpha"):
        ema({1: 1.0}, {1: 1.0}, alpha=0.0)
    with pytest.raises(ValueError, match="new"):
        ema({1: 1.0}, {1: NAN})


# -------------------------------------------------------------------------------------------- pipeline


def test_score_competition_end_to_end():
    a = ModelLosses(uid=4, block=100, losses=(10.0, 10.0, 10.0, 10.0, INF, 10.0))
    b = ModelLosses(uid=8, block=200, losses=(9.0, 9.0, 9.0, 9.0, NAN, 9.0))
    settings_ = ScoreSettings(group_samples=2, weight_skew_factor=2.0)
    result = score_competition([b, a], settings_, current_block=300, seed=99)
    # 5 usable samples → 2 groups of 2 (one left out); each group 18 < 20 · 0.996 → B wins both
    assert (result.n_raw_samples, result.n_all_inf, result.n_remainder) == (6, 1, 1)
    assert dict(result.wins) == {4: 0, 8: 2}
    assert dict(result.win_rates) == {4: 0.0, 8: 1.0}
    assert dict(result.weights) == {4: 0.0, 8: 1.0}
    assert result.result.order == (4, 8)


def test_score_settings_from_competition():
    c00 = default_competitions()["c00"]
    s = ScoreSettings.from_competition(c00)
    assert (s.group_samples, s.advantage_initial, s.advantage_decay, s.weight_skew_factor) == (
        10,
        0.004,
        0.995,
        2.0,
    )
    with pytest.raises(ValueError, match="group_samples"):
        ScoreSettings(group_samples=0)
    with pytest.raises(ValueError, match="advantage_initial"):
        ScoreSettings(advantage_initial=1.0)


def test_score_competition_without_models():
    result = score_competition([], current_block=1, seed=0)
    assert result.result.n_samples == 0 and dict(result.weights) == {}


# ------------------------------------------------------------------------------------------ properties

loss_value = st.one_of(
    st.floats(min_value=0.0, max_value=1000.0, allow_nan=False), st.just(INF), st.just(NAN)
)


@st.composite
def model_sets(draw, max_models=5, max_samples=12):
    n_models = draw(st.integers(1, max_models))
    n_samples = draw(st.integers(0, max_samples))
    uids = draw(st.lists(st.integers(0, 255), min_size=n_models, max_size=n_models, unique=True))
    blocks = draw(st.lists(st.integers(0, 3), min_size=n_models, max_size=n_models))  # many block ties
    return [
        ModelLosses(uid, block, tuple(draw(st.lists(loss_value, min_size=n_samples, max_size=n_samples))))
        for uid, block in zip(uids, blocks, strict=True)
    ]


@settings(max_examples=150, deadline=None)
@given(model_sets(), st.randoms(use_true_random=False), st.integers(0, 2 * WEEK))
def test_wins_are_invariant_to_the_listing_order(models, rnd, current_block):
    shuffled = list(models)
    rnd.shuffle(shuffled)
    first = compute_wins(models, current_block=current_block)
    assert compute_wins(shuffled, current_block=current_block) == first
    assert sum(first.wins.values()) == first.n_samples
    if first.n_samples:
        assert math.fsum(first.win_rates.values()) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(model_sets(), st.integers(1, 4), st.integers(0, 10**6), st.randoms(use_true_random=False))
def test_score_competition_is_invariant_to_the_listing_order(models, g, seed, rnd):
    shuffled = list(models)
    rnd.shuffle(shuffled)
    s = ScoreSettings(group_samples=g, weight_skew_factor=2.0)
    first = score_competition(models, s, current_block=5, seed=seed)
    again = score_competition(shuffled, s, current_block=5, seed=seed)
    assert again == first
    total = math.fsum(first.weights.values())
    assert total == 0.0 or total == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(model_sets())
def test_nan_is_treated_as_inf(models):
    as_nan = [ModelLosses(m.uid, m.block, tuple(NAN if v == INF else v for v in m.losses)) for m in models]
    assert compute_wins(as_nan, current_block=7) == compute_wins(models, current_block=7)
    raw = [[NAN if v == INF else v for v in m.losses] for m in models]
    expected = group_samples([list(m.losses) for m in models], 2, seed=3)
    np.testing.assert_array_equal(group_samples(raw, 2, seed=3), expected)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True),
    st.integers(0, 100),
    st.lists(st.floats(0, 100), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_exact_ties_always_go_to_the_lowest_uid(uids, block, losses, rnd):
    models = [ModelLosses(uid, block, tuple(losses)) for uid in uids]
    rnd.shuffle(models)
    wins = compute_wins(models, current_block=block + 1000).wins
    assert wins[min(uids)] == len(losses)


@settings(max_examples=100, deadline=None)
@given(model_sets(max_samples=20), st.integers(1, 5), st.integers(0, 100), st.randoms(use_true_random=False))
def test_group_samples_permutes_with_the_model_rows(models, g, seed, rnd):
    mat = np.array([m.losses for m in models], dtype=np.float64).reshape(len(models), -1)
    rows = list(range(len(models)))
    rnd.shuffle(rows)
    grouped = group_samples(mat, g, seed)
    np.testing.assert_array_equal(group_samples(mat[rows], g, seed), grouped[rows])
    finite_cols = np.all(np.isfinite(mat), axis=0)
    if finite_cols.all() and mat.shape[1] % g == 0:
        np.testing.assert_allclose(grouped.sum(axis=1), mat.sum(axis=1), rtol=1e-12)


win_rate_maps = st.dictionaries(st.integers(0, 40), st.floats(0.0, 1.0), max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["c00", "c01", "c02"]), win_rate_maps, min_size=1),
    st.floats(0.5, 4.0),
    st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    st.dictionaries(st.integers(0, 40), st.floats(0.0, 0.3), max_size=3),
)
def test_weights_sum_to_one_and_ignore_the_listing_order(win_rates, skew, rewards, bounties):
    reward = dict(zip(["c00", "c01", "c02"], rewards, strict=True))
    weights = weights_from_win_rates(win_rates, skew, reward, bounties=bounties)
    total = math.fsum(weights.values())
    clearly_positive = any(
        reward[c] > 1e-3 and any(r > 1e-3 for r in wr.values()) for c, wr in win_rates.items()
    )
    if clearly_positive or any(v > 1e-9 for v in bounties.values()):
        assert total == pytest.approx(1.0, abs=1e-12)
    else:
        assert total == 0.0 or total == pytest.approx(1.0, abs=1e-12)
    assert all(w >= 0 for w in weights.values())
    reversed_input = {c: dict(reversed(list(wr.items()))) for c, wr in reversed(list(win_rates.items()))}
    again = weights_from_win_rates(
        reversed_input, skew, reward, bounties=dict(reversed(list(bounties.items())))
    )
    assert again == weights  # bit-identical
    if total > 0 and bounties:
        for key, share in bounties.items():
            assert weights[key] >= share - 1e-12


@settings(max_examples=100, deadline=None)
@given(win_rate_maps, win_rate_maps, st.floats(0.01, 1.0))
def test_ema_is_linear_in_the_totals(old, new, alpha):
    out = ema(old, new, alpha)
    assert set(out) == set(old) | set(new)
    expected = (
        math.fsum(new.values())
        if not old
        else alpha * math.fsum(new.values()) + (1 - alpha) * math.fsum(old.values())
    )
    assert math.fsum(out.values()) == pytest.approx(expected, abs=1e-9)
