"""Grow the base within the competition's limits, and prove the loss did not change before training.

``auto`` asks the growth planner for the recommended shape under both limits of the competition: its
``parameters`` and its ``model_size`` in bytes (the weights at the checkpoint's dtype, after the
non-weight files and a margin for safetensors headers). A recipe file is used as written. Either way
the growth engine writes the checkpoint with its own verification (same loss and logits on the
embedded corpus, fp32 and the checkpoint dtype; nothing is written when it fails), and the result is
checked against the competition exactly as a validator checks it before download.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.arch import Shape
from sn29_growth.atomic import atomic_write_json
from sn29_growth.checkpoint import (
    BYTES_PER_DTYPE,
    RECIPE_FILE,
    checkpoint_dtype,
    read_model_config,
    read_recipe,
)
from sn29_growth.eval import checks
from sn29_growth.eval.competitions import Competition
from sn29_growth.growth.fit import count_params, effective_limit, plan_options, recommended
from sn29_growth.growth.spec import GrowthSpec, GrowthStep, load_recipe
from sn29_growth.hub.policy import upload_paths

log = logging.getLogger(__name__)

HEADER_MARGIN = 0.01  # fraction of the byte budget kept for safetensors headers and index
SUMMARY_FILE = "miner_growth.json"  # the miner's record of the growth, beside the engine's recipe


class LimitExceeded(ValueError):
    """The base, or the grown model, is over a competition limit."""


class NoRoomToGrow(LimitExceeded):
    """The base already fills the competition's limit: no growth option fits."""


@dataclass(frozen=True)
class Growth:
    """What the growth step produced. ``spec`` is None when the base is trained as it is."""

    path: Path
    option: str  # planner option name, "recipe" or "none"
    spec: GrowthSpec | None
    parameters_before: int
    parameters_after: int
    loss_before: float | None = None  # mean token loss on the embedded corpus's held-out part
    loss_after: float | None = None
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "option": self.option,
            "spec": self.spec.to_dict() if self.spec else None,
            "parameters_before": self.parameters_before,
            "parameters_after": self.parameters_after,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "reused": self.reused,
        }


def parameter_limit(competition: Competition, base_dir: Path, dtype: str) -> int:
    """The most parameters a model may have in ``competition``: its parameter limit, and its byte
    limit less the base's non-weight files and a header margin, at ``dtype``."""
    other = sum(
        (base_dir / n).stat().st_size for n in upload_paths(base_dir) if not n.endswith(".safetensors")
    )
    weight_bytes = int(competition.model_size * (1 - HEADER_MARGIN)) - other
    if weight_bytes <= 0:
        raise LimitExceeded(
            f"{competition.name}: model_size {competition.model_size:,} leaves no room for weights"
        )
    return effective_limit(competition.parameters, weight_bytes, BYTES_PER_DTYPE[dtype])


def auto_spec(base_dir: Path, competition: Competition, *, seed: int = 0) -> tuple[GrowthSpec, str, int]:
    """The planner's recommended growth of ``base_dir`` within ``competition``: (spec, option, limit)."""
    config = read_model_config(base_dir)
    shape = Shape.from_config(config)
    limit = parameter_limit(competition, base_dir, checkpoint_dtype(config))
    if count_params(shape) > limit:
        raise LimitExceeded(
            f"the base has {count_params(shape):,} parameters, above {competition.name}'s limit of {limit:,}"
        )
    options = [o for o in plan_options(shape, limit) if o.shape != shape]
    if not options:
        raise NoRoomToGrow(f"no growth of the base fits {competition.name}'s limit of {limit:,} parameters")
    best = recommended(options)
    log.info(
        "growth plan: %s -> %s (%s of %s parameters)",
        best.name,
        best.targets(),
        f"{best.parameters:,}",
        f"{limit:,}",
    )
    return GrowthSpec(steps=(GrowthStep(**best.targets()),), seed=seed), best.name, limit


def check_spec(spec: GrowthSpec, base_dir: Path, competition: Competition) -> None:
    """Refuse a growth whose result would be over the competition's limits, before writing anything."""
    from sn29_growth.growth.resolve import resolve_plan

    config = read_model_config(base_dir)
    plan = resolve_plan(spec, config, source_dtype=checkpoint_dtype(config))
    limit = parameter_limit(competition, base_dir, plan.dtype)
    after = count_params(plan.target)
    if after > limit:
        raise LimitExceeded(
            f"the growth would give {after:,} parameters, above the limit of {limit:,} in {competition.name} "
            f"(parameters {competition.parameters:,}, model_size {competition.model_size:,} bytes)"
        )


def check_within(path: Path, competition: Competition) -> None:
    """The validator's pre-download checks on the files a miner uploads; LimitExceeded names the limit."""
    names = upload_paths(path)
    files = {n: (path / n).stat().st_size for n in names}
    reason = checks.precheck(read_model_config(path), files, competition)
    if reason:
        raise LimitExceeded(f"{path}: {reason}")


def grow_base(base_dir: Path, out_dir: Path, competition: Competition, grow: str, *, seed: int = 0) -> Growth:
    """Grow ``base_dir`` into ``out_dir`` (``grow``: ``auto``, ``none`` or a recipe path).

    ``auto`` with no room left under the limits trains the base as it is. A complete ``out_dir`` from an
    earlier run (it holds the growth recipe) is reused, not grown again.
    """
    from sn29_growth.growth.execute import grow_checkpoint

    before = count_params(Shape.from_config(read_model_config(base_dir)))
    if grow == "none":
        check_within(base_dir, competition)
        return Growth(base_dir, "none", None, before, before)
    if (out_dir / RECIPE_FILE).is_file():
        growth = _reused(out_dir, before)
        check_within(out_dir, competition)
        return growth
    if grow == "auto":
        try:
            spec, option, _ = auto_spec(base_dir, competition, seed=seed)
        except NoRoomToGrow as e:
            log.warning("%s; training the base as it is", e)
            check_within(base_dir, competition)
            return Growth(base_dir, "none", None, before, before)
    else:
        spec, option = load_recipe(grow), "recipe"
    check_spec(spec, base_dir, competition)
    report = grow_checkpoint(base_dir, out_dir, spec, verify=True)
    check_within(out_dir, competition)
    fp32 = report.verification.checks[0] if report.verification else None
    growth = Growth(
        out_dir,
        option,
        spec,
        report.parameters_before,
        report.parameters_after,
        loss_before=fp32.loss_source if fp32 else None,
        loss_after=fp32.loss_grown if fp32 else None,
    )
    atomic_write_json(out_dir / SUMMARY_FILE, growth.to_dict())
    log.info(
        "grew %s -> %s: %s -> %s parameters, held-out loss %s -> %s",
        base_dir,
        out_dir,
        f"{growth.parameters_before:,}",
        f"{growth.parameters_after:,}",
        growth.loss_before,
        growth.loss_after,
    )
    return growth


def _reused(out_dir: Path, before: int) -> Growth:
    log.info("reusing the grown checkpoint %s", out_dir)
    summary = out_dir / SUMMARY_FILE
    if summary.is_file():
        d = json.loads(summary.read_text(encoding="utf-8"))
        spec = GrowthSpec.from_dict(d["spec"]) if d.get("spec") else None
        return Growth(
            out_dir,
            d["option"],
            spec,
            d["parameters_before"],
            d["parameters_after"],
            loss_before=d.get("loss_before"),
            loss_after=d.get("loss_after"),
            reused=True,
        )
    recipe = read_recipe(out_dir) or {}
    checks_ = ((recipe.get("verification") or {}).get("checks")) or [{}]
    spec = GrowthSpec.from_dict(recipe["spec"]) if recipe.get("spec") else None
    return Growth(
        out_dir,
        "recipe",
        spec,
        before,
        count_params(Shape.from_config(read_model_config(out_dir))),
        loss_before=checks_[0].get("loss_source"),
        loss_after=checks_[0].get("loss_grown"),
        reused=True,
    )
