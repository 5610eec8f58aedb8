"""Summaries of a study run: per-arm statistics over seeds, paired gaps, JSON/CSV/Markdown and plots.

Files written into the report directory:

- ``study.json``: the config, the data, every base and arm record (with its held-out loss curve) and the
  per-arm summary;
- ``runs.csv``: one row per seed × arm; ``curves.csv``: one row per validation point;
- ``summary.csv`` and ``summary.md``: per arm, mean ± std over seeds, and the gap to the best arm;
- ``tokens_saved.csv`` and ``tokens_saved.md``: per arm, the tokens to beat the base and to reach
  scratch's final loss, and the speed-ups over scratch (:mod:`sn29_growth.study.speedup`); the
  Markdown table is also appended to ``summary.md``;
- ``loss_vs_tokens.png``, ``loss_vs_total_tokens.png`` and ``final_loss.png`` (see
  :mod:`sn29_growth.study.plot`).

Gaps are paired by seed (every arm of a seed grows the same base model and sees the same windows): the
gap of an arm is the mean over seeds of (its loss − the best arm's loss). It *exceeds the seed spread*
when every seed's difference has the same sign and the mean gap is larger than the larger of the two
arms' standard deviations over seeds. That is strict: seeds move every arm together (each seed has its
own base model), so a gap can be consistent on every seed (``same_sign_all_seeds``, with a small paired
standard deviation) and still be smaller than the spread between seeds; both are reported.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json, atomic_write_text
from sn29_growth.study.runner import StudyRun
from sn29_growth.study.speedup import (
    METRICS,
    jsonable,
    long_scratch_reached,
    markdown_tokens_table,
    study_metrics,
    summarize_metrics,
)

RUN_FIELDS = (
    "arm",
    "label",
    "kind",
    "seed",
    "parameters",
    "new_elements",
    "base_loss",
    "loss_after_growth",
    "delta_after_growth",
    "starts_at_base",
    "final_loss",
    "steps",
    "tokens",
    "epochs",
    "epochs_total",
    "train_time_s",
    "wall_s",
    "flops",
    "flops_total",
)
SUMMARY_FIELDS = (
    "arm",
    "label",
    "kind",
    "preserving",
    "parameters",
    "seeds",
    "tokens",
    "epochs",
    "epochs_total",
    "after_growth_mean",
    "max_abs_delta_after_growth",
    "final_mean",
    "final_std",
    "gap_to_best",
    "gap_std",
    "exceeds_seed_spread",
    "same_sign_all_seeds",
    "wall_s_mean",
    "flops_total",
)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    label: str
    kind: str
    preserving: bool
    parameters: int
    seeds: int
    tokens: int
    epochs: float
    epochs_total: float
    after_growth_mean: float
    max_abs_delta_after_growth: float
    final_mean: float
    final_std: float
    gap_to_best: float
    gap_std: float
    exceeds_seed_spread: bool
    same_sign_all_seeds: bool
    wall_s_mean: float
    flops_total: float
    budget_losses: dict[int, tuple[float, float]]  # tokens → (mean, std) held-out loss

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in SUMMARY_FIELDS}
        d["budget_losses"] = {str(t): {"mean": m, "std": s} for t, (m, s) in self.budget_losses.items()}
        return d


def by_arm(records: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for r in records:
        out.setdefault(r["arm"], {})[r["seed"]] = r
    return out


def budget_points(records: list[dict], count: int = 4) -> list[int]:
    """Token budgets to compare arms at: ``count`` validation points spread to the last one."""
    tokens = sorted({p["tokens"] for p in records[0]["curve"] if p["tokens"] > 0})
    if not tokens:
        return []
    picks = {tokens[max(0, round(len(tokens) * (i + 1) / count) - 1)] for i in range(count)}
    return sorted(picks)


def _loss_at(record: dict, tokens: int) -> float | None:
    for p in record["curve"]:
        if p["tokens"] == tokens:
            return p["val_loss"]
    return None


def summarize(records: list[dict]) -> list[ArmSummary]:
    """Per-arm statistics over seeds, sorted by mean final held-out loss (best first)."""
    arms = by_arm(records)
    finals = {a: {s: r["final_loss"] for s, r in runs.items()} for a, runs in arms.items()}
    best = min(finals, key=lambda a: mean(list(finals[a].values())))
    budgets = budget_points(records)
    out = []
    for name, runs in arms.items():
        rs = list(runs.values())
        f = [r["final_loss"] for r in rs]
        common = sorted(set(runs) & set(finals[best]))
        diffs = [finals[name][s] - finals[best][s] for s in common]
        gap = mean(diffs) if diffs else float("nan")
        spread = max(std(f), std(list(finals[best].values())))
        same_sign = bool(diffs) and (all(d > 0 for d in diffs) or all(d < 0 for d in diffs))
        starts = [r["loss_after_growth"] for r in rs]
        deltas = [abs(r["delta_after_growth"]) for r in rs]
        bl = {}
        for t in budgets:
            vals = [v for v in (_loss_at(r, t) for r in rs) if v is not None]
            if vals:
                bl[t] = (mean(vals), std(vals))
        out.append(
            ArmSummary(
                arm=name,
                label=rs[0]["label"],
                kind=rs[0]["kind"],
                preserving=bool(rs[0]["preserving"]),
                parameters=rs[0]["parameters"],
                seeds=len(rs),
                tokens=rs[0]["tokens"],
                epochs=rs[0]["epochs"],
                epochs_total=rs[0]["epochs_total"],
                after_growth_mean=mean(starts),
                max_abs_delta_after_growth=max(deltas),
                final_mean=mean(f),
                final_std=std(f),
                gap_to_best=gap,
                gap_std=std(diffs) if diffs else 0.0,
                exceeds_seed_spread=name != best and same_sign and abs(gap) > spread,
                same_sign_all_seeds=name != best and same_sign,
                wall_s_mean=mean([r["wall_s"] for r in rs]),
                flops_total=rs[0]["flops_total"],
                budget_losses=bl,
            )
        )
    return sorted(out, key=lambda s: s.final_mean)


def _csv(rows: list[dict], columns: tuple[str, ...] | list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buffer.getvalue()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def markdown_table(summaries: list[ArmSummary]) -> str:
    """The per-arm table (mean ± std over seeds) as Markdown."""
    budgets = sorted({t for s in summaries for t in s.budget_losses})
    head = [
        "arm",
        "strategy",
        "params",
        "loss after growth",
        "max abs Δ vs base",
        *[f"loss @ {t / 1000:g}k tok" for t in budgets[:-1]],
        "final loss",
        "gap to best (paired)",
        "gap > seed spread",
        "same sign, all seeds",
        "epochs (run / total)",
        "wall s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [
            f"`{s.arm}`",
            s.label,
            f"{s.parameters:,}",
            f"{s.after_growth_mean:.4f}",
            f"{s.max_abs_delta_after_growth:.1e}",
            *[
                f"{s.budget_losses[t][0]:.3f} ± {s.budget_losses[t][1]:.3f}" if t in s.budget_losses else "–"
                for t in budgets[:-1]
            ],
            f"**{s.final_mean:.4f}** ± {s.final_std:.4f}",
            "best" if s.gap_to_best == 0 else f"{s.gap_to_best:+.4f} ± {s.gap_std:.4f}",
            "–" if s.gap_to_best == 0 else ("yes" if s.exceeds_seed_spread else "no"),
            "–" if s.gap_to_best == 0 else ("yes" if s.same_sign_all_seeds else "no"),
            f"{s.epochs:.2f} / {s.epochs_total:.2f}",
            f"{s.wall_s_mean:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_run(path: str | Path) -> StudyRun:
    """A :class:`StudyRun` back from a ``study.json`` (to re-render a report without training)."""
    from sn29_growth.study.config import study_from_dict
    from sn29_growth.study.runner import DataInfo

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    d = doc["data"]
    info = DataInfo(d["name"], d["tokens"], d["windows_per_epoch"], d["seq_len"])
    return StudyRun(study_from_dict(doc["config"]), info, doc["bases"], doc["runs"], doc["wall_s"])


def write_report(run: StudyRun, report_dir: str | Path) -> dict[str, Path]:
    """Write every report file of ``run`` into ``report_dir``; returns name → path."""
    from sn29_growth.study.plot import plot_curves, plot_finals, plot_total_tokens

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(run.arms)
    paths = {
        name: out / name
        for name in (
            "study.json",
            "runs.csv",
            "curves.csv",
            "summary.csv",
            "summary.md",
            "loss_vs_tokens.png",
            "final_loss.png",
            "tokens_saved.csv",
            "tokens_saved.md",
            "loss_vs_total_tokens.png",
        )
    }
    per_run = study_metrics(run.arms, run.bases, run.config.beat_margin)
    saved = summarize_metrics(per_run)
    runs = [
        {**r, "metrics": {k: jsonable(v) for k, v in per_run[(r["arm"], r["seed"])].items()}}
        for r in run.arms
    ]
    bases = {b["seed"]: b for b in run.bases}
    document = {
        "config": run.config.to_dict(),
        "data": run.data.to_dict(),
        "wall_s": run.wall_s,
        "bases": run.bases,
        "summary": [s.to_dict() for s in summaries],
        "tokens_saved": {arm: {k: st.to_dict() for k, st in m.items()} for arm, m in saved.items()},
        "runs": runs,
    }
    atomic_write_json(paths["study.json"], document)
    atomic_write_text(paths["runs.csv"], _csv([{**r, **r["metrics"]} for r in runs], (*RUN_FIELDS, *METRICS)))
    saved_rows = [
        {"arm": arm, **{f"{k}_{part}": st.to_dict()[part] for k, st in m.items() for part in ("mean", "std")}}
        for arm, m in saved.items()
    ]
    saved_columns = ["arm", *(f"{k}_{part}" for k in METRICS for part in ("mean", "std"))]
    reached = {arm: m["tokens_to_scratch"] for arm, m in saved.items()}
    for row in saved_rows:
        row["seeds_reaching_scratch"] = reached[row["arm"]].reached
    atomic_write_text(paths["tokens_saved.csv"], _csv(saved_rows, [*saved_columns, "seeds_reaching_scratch"]))
    labels = {s.arm: s.label for s in summaries}
    tokens_md = markdown_tokens_table(saved, run.bases[0]["tokens"], labels, long_scratch_reached(per_run))
    atomic_write_text(paths["tokens_saved.md"], tokens_md)
    curve_rows = [
        {"arm": "base", "seed": b["seed"], "phase": "base", **p} for b in run.bases for p in b["curve"]
    ] + [
        {"arm": r["arm"], "seed": r["seed"], "phase": "after-growth", **p}
        for r in run.arms
        for p in r["curve"]
    ]
    atomic_write_text(
        paths["curves.csv"], _csv(curve_rows, ("arm", "seed", "phase", "step", "tokens", "val_loss"))
    )
    atomic_write_text(paths["summary.csv"], _csv([s.to_dict() for s in summaries], SUMMARY_FIELDS))
    base_losses = [b["loss"] for b in bases.values()]
    header = (
        f"Base model: held-out loss {mean(base_losses):.4f} ± {std(base_losses):.4f} over "
        f"{len(base_losses)} seeds after {run.bases[0]['tokens']:,} tokens "
        f"({run.data.epochs(run.bases[0]['tokens']):.2f} epochs). Every arm then trains "
        f"{summaries[0].tokens:,} tokens ({summaries[0].epochs:.2f} epochs of {run.data.tokens_per_epoch:,} "
        f"tokens).\n\n"
    )
    atomic_write_text(
        paths["summary.md"],
        header + markdown_table(summaries) + "\nTokens saved (mean ± std over seeds):\n\n" + tokens_md,
    )
    plot_curves(run.arms, run.bases, paths["loss_vs_tokens.png"], title=run.config.name)
    plot_finals(summaries, mean(base_losses), paths["final_loss.png"], title=run.config.name)
    plot_total_tokens(run.arms, run.bases, paths["loss_vs_total_tokens.png"], title=run.config.name)
    return paths
