"""Study plots (matplotlib, Agg): held-out loss against tokens, and final loss per arm."""

from __future__ import annotations

import io
import os

from sn29_growth.atomic import atomic_write_bytes


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _mean_curve(records: list[dict]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Tokens, mean, min and max held-out loss over seeds at the validation points all runs share."""
    common = set.intersection(*({p["tokens"] for p in r["curve"]} for r in records))
    tokens = sorted(common)
    per = [[next(p["val_loss"] for p in r["curve"] if p["tokens"] == t) for r in records] for t in tokens]
    return tokens, [sum(v) / len(v) for v in per], [min(v) for v in per], [max(v) for v in per]


def plot_curves(arms: list[dict], bases: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Held-out loss vs tokens trained after growth: one line per arm (mean over seeds, band = min..max).

    Left: the whole run; right: the second half, zoomed. The base model's loss at the growth point is
    the dashed horizontal line; from-scratch is black, continue-training grey.
    """
    fig = _figure(12, 4.6)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    names = list(dict.fromkeys(r["arm"] for r in arms))
    base_loss = sum(b["loss"] for b in bases) / len(bases)
    zoom_lo, zoom_hi = float("inf"), float("-inf")
    for i, name in enumerate(names):
        records = [r for r in arms if r["arm"] == name]
        tokens, mid, lo, hi = _mean_curve(records)
        kind = records[0]["kind"]
        style = {"color": f"C{i}", "linewidth": 1.5}
        if kind == "scratch":
            style = {"color": "black", "linewidth": 2.0, "linestyle": "--"}
        elif kind == "continue":
            style = {"color": "grey", "linewidth": 2.0, "linestyle": "-."}
        half = len(tokens) // 2
        for j, ax in enumerate(axes):
            sl = slice(half, None) if j else slice(None)
            ax.plot(tokens[sl], mid[sl], label=f"{name} ({records[0]['label']})", **style)
            ax.fill_between(tokens[sl], lo[sl], hi[sl], color=style["color"], alpha=0.12, linewidth=0)
        zoom_lo, zoom_hi = min(zoom_lo, min(lo[half:])), max(zoom_hi, max(hi[half:]))
    for ax in axes:
        ax.axhline(base_loss, color="tab:red", linestyle=":", linewidth=1.2, label="base model at growth")
        ax.set_xlabel("tokens trained after growth")
        ax.set_ylabel("held-out loss (nats / token)")
        ax.grid(True, alpha=0.3)
    pad = 0.05 * (zoom_hi - zoom_lo or 1.0)
    axes[1].set_ylim(zoom_lo - pad, zoom_hi + pad)
    axes[1].set_title("second half (zoom)", fontsize=9)
    axes[0].set_title(
        f"{title}: mean over {len({r['seed'] for r in arms})} seeds, band = min..max", fontsize=9
    )
    axes[0].legend(fontsize=7, loc="upper right")
    _save(fig, path)


def plot_finals(summaries, base_loss: float, path: str | os.PathLike, title: str = "") -> None:
    """Final held-out loss per arm (mean ± std over seeds), best first."""
    fig = _figure(8, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    names = [s.arm for s in summaries]
    colors = ["black" if s.kind == "scratch" else "grey" if s.kind == "continue" else "C0" for s in summaries]
    ax.bar(
        names,
        [s.final_mean for s in summaries],
        yerr=[s.final_std for s in summaries],
        color=colors,
        capsize=4,
    )
    ax.axhline(base_loss, color="tab:red", linestyle=":", linewidth=1.2, label="base model at growth")
    lo = min(s.final_mean - s.final_std for s in summaries)
    hi = max(max(s.final_mean + s.final_std for s in summaries), base_loss)
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylabel("final held-out loss")
    ax.set_title(f"{title}: final held-out loss (mean ± std over seeds)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_total_tokens(arms: list[dict], bases: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Held-out loss vs all tokens spent: the base model's training, then each grown arm from where the
    base stopped; scratch starts at zero (the view of the "× fewer tokens than scratch" anchors)."""
    fig = _figure(8, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    tokens, mid, lo, hi = _mean_curve(bases)
    ax.plot(tokens, mid, color="tab:red", linewidth=1.5, label="base model")
    ax.fill_between(tokens, lo, hi, color="tab:red", alpha=0.12, linewidth=0)
    offset = bases[0]["tokens"]
    for i, name in enumerate(dict.fromkeys(r["arm"] for r in arms)):
        records = [r for r in arms if r["arm"] == name]
        tokens, mid, lo, hi = _mean_curve(records)
        scratch = records[0]["kind"] == "scratch"
        shift = 0 if scratch else offset
        style = {"color": "black", "linewidth": 2.0, "linestyle": "--"} if scratch else {"color": f"C{i}"}
        xs = [t + shift for t in tokens]
        ax.plot(xs, mid, label=name, **style)
        ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.1, linewidth=0)
    ax.axvline(offset, color="grey", linestyle=":", linewidth=1.0)
    ax.set_xlabel("tokens trained in total (base model + after growth)")
    ax.set_ylabel("held-out loss (nats / token)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{title}: mean over {len(bases)} seeds, band = min..max", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    _save(fig, path)
