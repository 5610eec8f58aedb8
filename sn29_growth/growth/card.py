"""The README model card written beside every grown checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sn29_growth.growth.execute import GrowthReport

_FIELDS = (
    ("hidden_size", "hidden size"),
    ("intermediate_size", "MLP width"),
    ("num_hidden_layers", "layers"),
    ("num_attention_heads", "attention heads"),
    ("num_key_value_heads", "kv heads"),
    ("head_dim", "head_dim"),
    ("vocab_size", "vocabulary"),
    ("norm_divisor", "norm_divisor"),
)


def model_card(report: GrowthReport) -> str:
    plan = report.plan
    src, dst = plan.summary()["source"], plan.summary()["target"]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [sn29, grown-model]",
        "---",
        "",
        f"# Grown {plan.arch.class_name}",
        "",
        f"Grown from `{report.source.ref}`"
        + (f" at revision `{report.source.revision}`" if report.source.revision else "")
        + " with `sn29 grow` (sn29-growth). The growth is function-preserving: the new model starts at "
        "the source's loss, and every new parameter path has exactly one zero factor so that it trains.",
        "",
        "| | source | grown |",
        "|---|---:|---:|",
        f"| parameters | {report.parameters_before:,} | {report.parameters_after:,} |",
    ]
    for key, label in _FIELDS:
        lines.append(f"| {label} | {src[key]} | {dst[key]} |")
    lines += ["", f"dtype: `{plan.dtype}`, seed: {plan.spec.seed}.", "", "## Steps", ""]
    for sp in plan.steps:
        s = sp.summary()
        lines.append(
            f"- step {s['step']}: hidden method `{s['hidden_method']}`, init `{s['init']}`, "
            f"stages {', '.join(s['stages']) or 'depth only'}"
            + (f", inserted blocks at {s['inserted_layers']}" if s["inserted_layers"] else "")
        )
    if plan.target.norm_divisor is not None:
        lines += [
            "",
            "## Loading",
            "",
            f"This checkpoint uses `norm_divisor = {plan.target.norm_divisor}` in its RMSNorms. Load it "
            "after `import transformers_llama` (or `transformers_phi3`) so that the patched classes run it; "
            "stock transformers would silently compute a different function. `sn29 convert --to-stock` "
            "folds the divisor into the norm gains.",
        ]
    if report.verification is not None:
        lines += [
            "",
            "## Verification (embedded corpus)",
            "",
            "| dtype | loss before | loss after | Δloss | max abs Δlogit |",
        ]
        lines.append("|---|---:|---:|---:|---:|")
        for c in report.verification.checks:
            lines.append(
                f"| {c.dtype} | {c.loss_source:.6f} | {c.loss_grown:.6f} | {c.loss_delta:+.2e} | "
                f"{c.max_abs_logit_diff:.2e} |"
            )
    lines += ["", "The full recipe is in `growth_recipe.json`.", ""]
    return "\n".join(lines)
