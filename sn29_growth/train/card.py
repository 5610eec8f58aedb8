"""The README model card ``sn29 train`` writes beside the trained checkpoint (never part of the model hash)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sn29_growth.train.loop import TrainResult


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def trained_model_card(
    result: TrainResult, model_dir: Path, architecture: str | None, data: str, config: dict[str, Any]
) -> str:
    """The card of a finished run: where the model comes from, on what data, for how long, and its losses."""
    lines = [
        "---",
        "library_name: transformers",
        "tags: [sn29, trained-model]",
        "---",
        "",
        f"# Trained {architecture or 'model'}",
        "",
        f"Trained from `{model_dir}` with `sn29 train` (sn29-growth) on `{data}`.",
        "",
        "| | |",
        "|---|---:|",
        f"| parameters | {result.parameters:,} |",
        f"| steps | {result.steps:,} |",
        f"| tokens | {result.tokens:,} |",
        f"| held-out loss before | {_loss(result.initial_val_loss)} |",
        f"| held-out loss after | {_loss(result.final_val_loss)} |",
        f"| final train loss | {_loss(result.final_train_loss)} |",
        f"| processes | {result.world_size} on {result.device}, {result.compute_dtype} |",
    ]
    if result.new_elements:
        lines.append(f"| new elements (growth recipe) | {result.new_elements:,} |")
    optimizer, schedule, batch = (config.get(k) or {} for k in ("optimizer", "schedule", "batch"))
    lines += [
        "",
        f"Learning rate {optimizer.get('lr')} ({schedule.get('kind')} schedule, "
        f"{schedule.get('warmup_steps')} warm-up steps), batches of {batch.get('batch_size')} x "
        f"{batch.get('seq_len')} tokens, seed {config.get('seed')}.",
    ]
    lines += ["", "The run's settings and losses are in `summary.json` and `train_log.jsonl`.", ""]
    return "\n".join(lines)
