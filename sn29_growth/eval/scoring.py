"""SN29 winning and weights as pure functions (numpy; no torch, no I/O).

Pipeline for one competition (:func:`score_competition`):

1. :func:`group_samples` — NaN → +inf, drop samples on which every model is +inf, shuffle the samples with a
   seeded, library-version-independent order, sum them in groups of ``g``.
2. :func:`compute_wins` — per (grouped) sample, walk the models oldest commit first; the sample passes from
   the current holder W to a newer model only when ``loss_new < loss_W · adv(W)``.
3. :func:`competition_weights` — ``win_rate ** weight_skew_factor``, normalised.

Across competitions :func:`weights_from_win_rates` weighs each competition by its reward and gives the
hall-of-fame bounties (:func:`bounty_shares`) their share; :func:`ema` smooths weights between steps.

Every function is deterministic and invariant to the order in which models (or dict keys) are given:
models are ordered by ``(block, uid)`` and sums run in sorted key order with ``math.fsum``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from sn29_growth.eval.competitions import Bounty, Competition

BLOCKS_PER_EPOCH = 361  # one epoch ≈ 72 minutes of 12-second blocks
ADVANTAGE_INITIAL = 0.004
ADVANTAGE_DECAY = 0.995  # per epoch: the advantage halves in about a week
WEIGHT_SKEW_FACTOR = 1.2  # reference default; the live competitions.json sets 2.0
BOUNTY_DECAY = 0.995  # per epoch; a bounty pays reward·(1 − decay) in its first epoch (reward/200)
BOUNTY_MAX_FRACTION = 1.0  # cap on the total bounty share of miner weight (0.4 before; 1.0 now)
EMA_ALPHA = 0.5

K = TypeVar("K", bound=Hashable)


def mean_finite(losses: Iterable[float]) -> float | None:
    """The mean of the finite losses (a sample's +inf or NaN is left out), None when none is finite: the one
    convention for "a model's mean loss" in tables, the validator's state and the miner's verdict."""
    finite = [v for v in losses if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else None


def _check_fraction(name: str, value: float, *, low_open: bool, high_open: bool) -> float:
    value = float(value)
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (math.isfinite(value) and low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name}: must be in {interval}, got {value}")
    return value


def _check_index(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelLosses:
    """Per-sample summed cross-entropy losses of one model; ``None``/NaN are stored as +inf."""

    uid: int
    block: int
    losses: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_index("uid", self.uid)
        _check_index("block", self.block)
        values = tuple(math.inf if v is None or math.isnan(v) else float(v) for v in self.losses)
        if any(v < 0 for v in values):
            raise ValueError(
                f"losses: uid {self.uid} has a negative loss (losses are sums of cross-entropies)"
            )
        object.__setattr__(self, "uid", int(self.uid))
        object.__setattr__(self, "block", int(self.block))
        object.__setattr__(self, "losses", values)


@dataclass(frozen=True, kw_only=True)
class ScoreSettings:
    """The competition knobs that scoring reads (see :meth:`from_competition`)."""

    group_samples: int = 1
    advantage_initial: float = ADVANTAGE_INITIAL
    advantage_decay: float = ADVANTAGE_DECAY
    weight_skew_factor: float = WEIGHT_SKEW_FACTOR

    def __post_init__(self) -> None:
        if (
            isinstance(self.group_samples, bool)
            or not isinstance(self.group_samples, int)
            or self.group_samples < 1
        ):
            raise ValueError(f"group_samples: must be an integer >= 1, got {self.group_samples!r}")
        _check_fraction("advantage_initial", self.advantage_initial, low_open=False, high_open=True)
        _check_fraction("advantage_decay", self.advantage_decay, low_open=True, high_open=False)
        skew = float(self.weight_skew_factor)
        if not (math.isfinite(skew) and skew > 0):
            raise ValueError(f"weight_skew_factor: must be > 0, got {skew}")

    @classmethod
    def from_competition(cls, competition: Competition) -> ScoreSettings:
        return cls(
            group_samples=competition.group_samples,
            advantage_initial=competition.advantage_initial,
            advantage_decay=competition.advantage_decay,
            weight_skew_factor=competition.weight_skew_factor,
        )


# --------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class WinResult:
    """Outcome of :func:`compute_wins`.

    ``order`` lists uids oldest commit first (ties by uid). ``n_samples`` counts the samples that had a
    winner; ``n_dropped`` those on which every model scored +inf (no winner, not in the win-rate denominator).
    """

    order: tuple[int, ...]
    wins: Mapping[int, int]
    win_rates: Mapping[int, float]
    advantages: Mapping[int, float]
    n_samples: int
    n_dropped: int = 0

    def __post_init__(self) -> None:
        for name in ("wins", "win_rates", "advantages"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class ScoreResult:
    """Outcome of :func:`score_competition`: wins over grouped samples and the competition's own weights.

    ``weights`` sum to 1 within the competition (all 0 when nobody won a sample). ``n_all_inf`` raw samples were
    dropped because every model scored +inf; ``n_remainder`` raw samples were left out of the partial last group.
    """

    result: WinResult
    weights: Mapping[int, float]
    n_raw_samples: int
    n_all_inf: int
    n_remainder: int
    settings: ScoreSettings = field(default_factory=ScoreSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))

    @property
    def wins(self) -> Mapping[int, int]:
        return self.result.wins

    @property
    def win_rates(self) -> Mapping[int, float]:
        return self.result.win_rates


# ----------------------------------------------------------------------------------------------- grouping


def sample_order(n: int, seed: int | str) -> np.ndarray:
    """A seeded permutation of ``range(n)``, identical on every machine and numpy version.

    Index ``i`` is ranked by ``blake2b(f"{seed}:{i}")``; validators that share the seed share the order.
    """
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    prefix = f"{seed}:".encode()
    keys = [hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest() for i in range(n)]
    return np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64)


def _loss_matrix(losses: ArrayLike) -> np.ndarray:
    mat = np.array(losses, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"losses: expected a 2-D array (models × samples), got shape {mat.shape}")
    mat[np.isnan(mat)] = np.inf
    if (mat < 0).any():
        raise ValueError("losses: negative values (losses are sums of cross-entropies)")
    return mat


def _group(mat: np.ndarray, g: int, seed: int | str) -> tuple[np.ndarray, int, int]:
    if isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 1:
        raise ValueError(f"g: group size must be an integer >= 1, got {g!r}")
    keep = ~np.all(np.isposinf(mat), axis=0)
    n_all_inf = int(mat.shape[1] - keep.sum())
    mat = mat[:, keep]
    n_groups = mat.shape[1] // g
    n_remainder = mat.shape[1] - n_groups * g
    order = sample_order(mat.shape[1], seed)[: n_groups * g]
    grouped = mat[:, order].reshape(mat.shape[0], n_groups, g).sum(axis=2)
    return grouped, n_all_inf, n_remainder


def group_samples(losses: ArrayLike, g: int, seed: int | str) -> np.ndarray:
    """Group per-sample losses (models × samples) into per-group sums (models × groups).

    NaN becomes +inf; samples on which every model is +inf are dropped; the rest are put in the order
    :func:`sample_order` gives and summed in consecutive groups of ``g``. A group with a +inf sample sums to
    +inf for that model. The last partial group (``n mod g`` samples) is left out, so every group weighs
    exactly ``g`` samples; because the order is shuffled first, which samples are left out is random (seeded),
    not always the tail. With fewer than ``g`` usable samples the result has no groups.
    """
    return _group(_loss_matrix(losses), g, seed)[0]


# --------------------------------------------------------------------------------------------------- wins


def advantage(
    block_delta: float,
    initial: float = ADVANTAGE_INITIAL,
    decay: float = ADVANTAGE_DECAY,
    *,
    blocks_per_epoch: int = BLOCKS_PER_EPOCH,
) -> float:
    """``1 − initial · decay ** (block_delta / blocks_per_epoch)``: the factor applied to an older model's loss."""
    initial = _check_fraction("initial", initial, low_open=False, high_open=True)
    decay = _check_fraction("decay", decay, low_open=True, high_open=False)
    if not (math.isfinite(block_delta) and block_delta >= 0):
        raise ValueError(f"block_delta: must be >= 0, got {block_delta}")
    return 1.0 - initial * decay ** (block_delta / blocks_per_epoch)


def compute_wins(
    models: Sequence[ModelLosses],
    *,
    current_block: int,
    advantage_initial: float = ADVANTAGE_INITIAL,
    advantage_decay: float = ADVANTAGE_DECAY,
) -> WinResult:
    """Count per-sample wins with the SN29 advantage of older models.

    Rule, defined once:

    - Models are ordered by ``(block, uid)``: oldest commit first, equal blocks by lower uid.
    - Each model ``m`` has ``adv(m) = advantage(current_block − block_m)`` — its age at the current block, as
      the reference validator computed it; a commit after ``current_block`` gets no advantage (factor 1).
    - Per sample, the oldest model holds it; walking newer models in order, model ``n`` takes the sample from
      the current holder ``W`` iff ``loss_n < loss_W · adv(W)`` (strict: an exact tie stays with ``W``). Only
      the holder's advantage applies, and a model's own advantage applies from the moment it holds the sample.
    - NaN is +inf everywhere (``ModelLosses`` stores it so). A sample on which every model is +inf has no
      winner and is dropped from ``n_samples``; otherwise a finite loss always beats +inf.

    ``win_rates[m] = wins[m] / n_samples`` (all 0 when ``n_samples`` is 0).
    """
    current_block = _check_index("current_block", current_block)
    ordered = sorted(models, key=lambda m: (m.block, m.uid))
    uids = tuple(m.uid for m in ordered)
    if len(set(uids)) != len(uids):
        raise ValueError(f"models: duplicate uids in {sorted(uids)}")
    if not ordered:
        return WinResult((), {}, {}, {}, 0, 0)
    lengths = {len(m.losses) for m in ordered}
    if len(lengths) != 1:
        raise ValueError(
            f"models: every model needs the same number of samples, got lengths {sorted(lengths)}"
        )
    adv = np.array(
        [
            advantage(current_block - m.block, advantage_initial, advantage_decay)
            if m.block <= current_block
            else 1.0  # committed after the current block: no advantage, as the reference computes it
            for m in ordered
        ]
    )
    mat = np.array([m.losses for m in ordered], dtype=np.float64).reshape(len(ordered), -1)
    valid = ~np.all(np.isposinf(mat), axis=0)
    mat = mat[:, valid]
    holder = np.zeros(mat.shape[1], dtype=np.int64)
    threshold = mat[0] * adv[0]
    for i in range(1, len(ordered)):
        take = mat[i] < threshold
        holder[take] = i
        threshold[take] = mat[i][take] * adv[i]
    counts = np.bincount(holder, minlength=len(ordered))
    n_samples = int(mat.shape[1])
    wins = {uid: int(counts[i]) for i, uid in enumerate(uids)}
    rates = {uid: (wins[uid] / n_samples if n_samples else 0.0) for uid in uids}
    return WinResult(
        order=uids,
        wins=dict(sorted(wins.items())),
        win_rates=dict(sorted(rates.items())),
        advantages=dict(sorted((uid, float(adv[i])) for i, uid in enumerate(uids))),
        n_samples=n_samples,
        n_dropped=int((~valid).sum()),
    )


# ------------------------------------------------------------------------------------------------ weights


def _normalised(values: Mapping[K, float]) -> dict[K, float]:
    keys = sorted(values)
    total = math.fsum(values[k] for k in keys)
    if total <= 0:
        return {k: 0.0 for k in keys}
    return {k: values[k] / total for k in keys}


def competition_weights(win_rates: Mapping[K, float], skew: float) -> dict[K, float]:
    """``win_rate ** skew`` normalised to sum 1 (all 0 when every win rate is 0)."""
    skew = float(skew)
    if not (math.isfinite(skew) and skew > 0):
        raise ValueError(f"skew: must be > 0, got {skew}")
    for key, rate in win_rates.items():
        if not (math.isfinite(rate) and 0 <= rate <= 1):
            raise ValueError(f"win_rates: {key!r} has win rate {rate}, outside [0, 1]")
    return _normalised({k: float(r) ** skew for k, r in win_rates.items()})


def bounty_shares(
    bounties: Iterable[Bounty],
    current_block: int,
    *,
    max_fraction: float = BOUNTY_MAX_FRACTION,
    decay: float = BOUNTY_DECAY,
    blocks_per_epoch: int = BLOCKS_PER_EPOCH,
) -> dict[str, float]:
    """Share of all miner weight per hotkey this epoch from hall-of-fame bounties.

    Each bounty pays ``reward · (1 − decay) · decay ** ((current_block − block) / blocks_per_epoch)`` —
    ``(reward / 200) · 0.995 ** epochs`` with the defaults, so that it pays ``reward`` in total over time. A
    bounty whose block is still in the future pays nothing yet. When the total exceeds ``max_fraction`` every
    share is scaled down so that they sum to ``max_fraction``. Hotkeys whose share is 0 are left out.
    """
    current_block = _check_index("current_block", current_block)
    max_fraction = _check_fraction("max_fraction", max_fraction, low_open=False, high_open=False)
    decay = _check_fraction("decay", decay, low_open=True, high_open=True)
    per_hotkey: dict[str, list[float]] = {}
    for b in bounties:
        if b.block > current_block:
            continue
        epochs = (current_block - b.block) / blocks_per_epoch
        per_hotkey.setdefault(b.hotkey, []).append(b.reward * (1.0 - decay) * decay**epochs)
    shares = {hk: math.fsum(sorted(parts)) for hk, parts in sorted(per_hotkey.items())}
    shares = {hk: s for hk, s in shares.items() if s > 0}
    total = math.fsum(shares.values())
    if total > max_fraction:
        shares = {hk: s * max_fraction / total for hk, s in shares.items()}
    return shares


def weights_from_win_rates(
    win_rates: Mapping[str, Mapping[K, float]],
    skew: float | Mapping[str, float],
    reward: Mapping[str, float],
    *,
    bounties: Mapping[K, float] | None = None,
) -> dict[K, float]:
    """Combine competitions (and bounty shares) into one weight vector.

    ``win_rates`` maps competition → {key → win rate}; ``skew`` is one factor or one per competition; ``reward``
    maps competition → reward. Within a competition the weights are :func:`competition_weights`; competitions
    are then mixed in proportion to their reward — a competition in which nobody won anything passes its
    reward on to the others. ``bounties`` (keyed like the win rates, e.g. from :func:`bounty_shares` mapped to
    uids) take their share off the top: ``final = (1 − Σ bounties) · competitions + bounties``.

    The result covers every key seen, in sorted order, and sums to 1 whenever anything is positive.
    Keys must be of one kind (uids or hotkeys) so that they sort.
    """
    combined: dict[K, list[float]] = {}
    for name in sorted(win_rates):
        if name not in reward:
            raise ValueError(f"reward: no reward for competition {name!r}")
        c_reward = float(reward[name])
        if not (math.isfinite(c_reward) and c_reward >= 0):
            raise ValueError(f"reward: competition {name!r} has reward {c_reward}")
        c_skew = skew[name] if isinstance(skew, Mapping) else skew
        for key, weight in competition_weights(win_rates[name], c_skew).items():
            combined.setdefault(key, []).append(c_reward * weight)
    comp = _normalised({k: math.fsum(parts) for k, parts in combined.items()})

    bounties = dict(bounties or {})
    for key, share in bounties.items():
        if not (math.isfinite(share) and share >= 0):
            raise ValueError(f"bounties: {key!r} has share {share}")
    bounty_total = math.fsum(bounties[k] for k in sorted(bounties))
    if bounty_total > 1 + 1e-9:
        raise ValueError(f"bounties: shares sum to {bounty_total} > 1")
    scale = max(0.0, 1.0 - bounty_total)
    final = {k: scale * comp.get(k, 0.0) + bounties.get(k, 0.0) for k in set(comp) | set(bounties)}
    return _normalised(final)


def ema(old: Mapping[K, float], new: Mapping[K, float], alpha: float = EMA_ALPHA) -> dict[K, float]:
    """``alpha · new + (1 − alpha) · old`` per key (a missing key counts as 0), in sorted key order.

    With no previous weights (``old`` empty) the new weights are taken as they are.
    """
    alpha = _check_fraction("alpha", alpha, low_open=True, high_open=False)
    for name, values in (("old", old), ("new", new)):
        for key, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"{name}: {key!r} has non-finite value {value}")
    if not old:
        return {k: float(new[k]) for k in sorted(new)}
    keys = sorted(set(old) | set(new))
    return {k: alpha * float(new.get(k, 0.0)) + (1.0 - alpha) * float(old.get(k, 0.0)) for k in keys}


# ------------------------------------------------------------------------------------------------ pipeline


def score_competition(
    models: Sequence[ModelLosses],
    settings: ScoreSettings = ScoreSettings(),
    *,
    current_block: int,
    seed: int | str,
) -> ScoreResult:
    """From per-model per-sample losses to win rates and the competition's weights.

    Groups the samples (:func:`group_samples` with ``settings.group_samples`` and ``seed``), counts wins on
    the grouped sums (:func:`compute_wins`) and turns win rates into weights (:func:`competition_weights`).
    Every model must have been scored on the same samples in the same order.
    """
    ordered = sorted(models, key=lambda m: (m.block, m.uid))
    lengths = {len(m.losses) for m in ordered}
    if len(lengths) > 1:
        raise ValueError(
            f"models: every model needs the same number of samples, got lengths {sorted(lengths)}"
        )
    n_raw = lengths.pop() if lengths else 0
    mat = np.array([m.losses for m in ordered], dtype=np.float64).reshape(len(ordered), n_raw)
    grouped, n_all_inf, n_remainder = _group(mat, settings.group_samples, seed)
    grouped_models = [ModelLosses(m.uid, m.block, tuple(grouped[i].tolist())) for i, m in enumerate(ordered)]
    result = compute_wins(
        grouped_models,
        current_block=current_block,
        advantage_initial=settings.advantage_initial,
        advantage_decay=settings.advantage_decay,
    )
    weights = competition_weights(result.win_rates, settings.weight_skew_factor)
    return ScoreResult(result, weights, n_raw, n_all_inf, n_remainder, settings)
