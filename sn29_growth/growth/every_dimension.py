"""Grow a (small) checkpoint in every dimension at once and report the loss before and after (used by ``sn29 demo``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.checkpoint import read_model_config
from sn29_growth.growth.execute import GrowthReport, grow_checkpoint
from sn29_growth.growth.spec import GrowthSpec, GrowthStep


@dataclass(frozen=True)
class EveryDimensionGrowth:
    out_dir: Path
    loss_before: float
    loss_after: float
    parameters_before: int
    parameters_after: int
    stuck_slices: int
    report: GrowthReport

    @property
    def loss_delta(self) -> float:
        return self.loss_after - self.loss_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "loss_delta": self.loss_delta,
            "parameters_before": self.parameters_before,
            "parameters_after": self.parameters_after,
            "stuck_slices": self.stuck_slices,
        }


def default_targets(config: dict[str, Any]) -> dict[str, int]:
    """Double the width (hidden, heads, kv heads, MLP) and add one block: every dimension but vocab."""
    return {
        "hidden_size": 2 * int(config["hidden_size"]),
        "num_attention_heads": 2 * int(config["num_attention_heads"]),
        "num_key_value_heads": 2 * int(config.get("num_key_value_heads") or config["num_attention_heads"]),
        "intermediate_size": 2 * int(config["intermediate_size"]),
        "num_hidden_layers": int(config["num_hidden_layers"]) + 1,
    }


def grow_every_dimension(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    targets: dict[str, int] | None = None,
    hidden_method: str = "divisor",
    seed: int = 0,
) -> EveryDimensionGrowth:
    """Grow ``src_dir`` into ``out_dir`` (default: :func:`default_targets`), verified and probed.

    The loss is the fp32 mean token loss on the embedded corpus's held-out samples; the probe's two
    training steps confirm that no new parameter is stuck.
    """
    targets = targets or default_targets(read_model_config(src_dir))
    spec = GrowthSpec((GrowthStep(hidden_method=hidden_method, **targets),), seed=seed)
    report = grow_checkpoint(src_dir, out_dir, spec, verify=True, probe=True)
    fp32 = next(c for c in report.verification.checks if c.dtype == "float32")
    return EveryDimensionGrowth(
        Path(out_dir),
        fp32.loss_source,
        fp32.loss_grown,
        report.parameters_before,
        report.parameters_after,
        len(report.probe.stuck),
        report,
    )
