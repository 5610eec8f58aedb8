"""The loss curve: training and validation loss against tokens trained, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from sn29_growth.atomic import atomic_write_bytes


def plot_losses(records: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Draw the ``train`` (loss) and ``eval`` (val_loss) records of a training log to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["tokens"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["tokens"], r["val_loss"]) for r in records if r.get("kind") == "eval"]
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.0, alpha=0.8)
    if val:
        ax.plot(*zip(*val, strict=True), label="validation loss (held out)", marker="o", markersize=3)
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    if train or val:
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
