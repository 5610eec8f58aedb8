"""The rows and the table of an evaluation: what ``sn29 evaluate`` prints and a worker returns."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sn29_growth.eval.scoring import mean_finite
from sn29_growth.eval.timing import StageTimes
from sn29_growth.reasons import bound_reason


@dataclass(frozen=True)
class ModelResult:
    """One row of the scoring table. ``losses`` is empty for a rejected model; +inf marks a failed sample."""

    name: str
    block: int
    architecture: str | None = None
    losses: tuple[float, ...] = ()
    rejection: str | None = None
    note: str | None = None
    tokenizer: str | None = None
    content_hash: str | None = None
    win_rate: float = 0.0
    wins: int = 0
    weight: float = 0.0
    failed: bool = False  # the evaluation itself crashed or timed out: no verdict on the files
    network: str | None = None  # the network-compatibility summary (``sn29 check``)
    stages: StageTimes | None = None  # seconds per stage (hash, checks, load, eval, ...)
    unavailable: bool = (
        False  # its files could not be fetched (the Hub offline or out of reach): not evaluated
    )

    def __post_init__(self) -> None:  # the one bound on what a row says (a worker's answer included)
        object.__setattr__(self, "rejection", bound_reason(self.rejection))
        object.__setattr__(self, "note", bound_reason(self.note))

    @property
    def n_inf(self) -> int:
        return sum(1 for v in self.losses if math.isinf(v))

    @property
    def mean_loss(self) -> float | None:
        """Mean summed loss over this model's finite samples (None when it has none)."""
        return mean_finite(self.losses)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "block": self.block,
            "architecture": self.architecture,
            "tokenizer": self.tokenizer,
            "content_hash": self.content_hash,
            "rejection": self.rejection,
            "note": self.note,
            "mean_summed_loss": self.mean_loss,
            "samples_inf": self.n_inf if not self.rejection else None,
            "losses": None if self.rejection else [v if math.isfinite(v) else None for v in self.losses],
            "wins": self.wins,
            "win_rate": self.win_rate,
            "weight": self.weight,
            "failed": self.failed,
            "not_evaluated": self.unavailable,
            "network": self.network,
            "stages": self.stages.to_json() if self.stages else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, name: str, block: int) -> ModelResult:
        """A row from :meth:`to_json` (a worker's answer), relabelled for the caller's table."""
        rejection = data.get("rejection")
        losses = (
            () if rejection else tuple(math.inf if v is None else float(v) for v in data.get("losses") or ())
        )
        return cls(
            name=name,
            block=block,
            architecture=data.get("architecture"),
            losses=losses,
            rejection=rejection,
            note=data.get("note"),
            tokenizer=data.get("tokenizer"),
            content_hash=data.get("content_hash"),
            failed=bool(data.get("failed")),
            unavailable=bool(data.get("not_evaluated")),
            network=data.get("network"),
            stages=StageTimes.from_json(data.get("stages")),
        )


@dataclass(frozen=True)
class EvaluationFailed:
    """No verdict on a model: its evaluation crashed, timed out or answered nothing (``reason`` says which).
    Not a rejection: the files may be fine, so the model is tried again later."""

    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", bound_reason(self.reason))


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation produced; :meth:`format_table` and :meth:`to_json` present it."""

    competition: str
    dataset: str
    dataset_note: str | None
    seed: int
    sample_ids: tuple[str, ...]
    models: tuple[ModelResult, ...]
    device: str
    dtype: str
    group_samples: int
    scored_groups: int
    tokenizer_note: str | None = None

    @property
    def not_evaluated(self) -> tuple[ModelResult, ...]:
        """The rows of models whose files could not be fetched."""
        return tuple(m for m in self.models if m.unavailable)

    def model(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def format_table(self) -> str:
        head = [
            f"competition {self.competition} · dataset: {self.dataset}"
            + (f" ({self.dataset_note})" if self.dataset_note else ""),
            f"{len(self.sample_ids)} samples, seed {self.seed}, groups of {self.group_samples} "
            f"({self.scored_groups} scored) · {self.device} {self.dtype}"
            + (f" · {self.tokenizer_note}" if self.tokenizer_note else ""),
        ]
        width = max([len("model"), *(len(m.name) for m in self.models)])
        rows = [
            f"{'#':>2}  {'model':<{width}}  {'mean summed loss':>16}  {'+inf':>5}  {'win rate':>8}  {'weight':>7}  "
            f"{'network':<10}  status"
        ]
        for i, m in enumerate(self.models, start=1):
            net = (m.network or "-")[:10]
            if m.rejection:
                verdict = "not evaluated" if m.unavailable else "failed" if m.failed else "rejected"
                rows.append(
                    f"{i:>2}  {m.name:<{width}}  {'-':>16}  {'-':>5}  {'-':>8}  {'-':>7}  {net:<10}  "
                    f"{verdict}: {m.rejection}"
                )
                continue
            loss = "-" if m.mean_loss is None else f"{m.mean_loss:.4f}"
            rows.append(
                f"{i:>2}  {m.name:<{width}}  {loss:>16}  {m.n_inf:>5}  {m.win_rate:>8.3f}  {m.weight:>7.3f}  "
                f"{net:<10}  " + (m.note or "ok")
            )
        return "\n".join([*head, *rows])

    def to_json(self) -> dict[str, Any]:
        return {
            "competition": self.competition,
            "dataset": self.dataset,
            "dataset_note": self.dataset_note,
            "tokenizer_note": self.tokenizer_note,
            "seed": self.seed,
            "device": self.device,
            "dtype": self.dtype,
            "group_samples": self.group_samples,
            "scored_groups": self.scored_groups,
            "samples": list(self.sample_ids),
            "losses_note": "per-sample summed cross-entropy; null = +inf",
            "models": [m.to_json() for m in self.models],
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)
