"""``sn29 study``: compare growth strategies on one base model and one target shape (see docs/growth-study.md)."""

from __future__ import annotations

import json
import sys


def _seeds(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds: expected comma-separated integers, got {text!r}"
        ) from None


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="grow one base model with every growth strategy and compare held-out loss on equal tokens",
        description="Train a base model per seed on the embedded corpus, grow it to one target shape with "
        "each strategy of the study config (plus continue-training and from-scratch baselines), train every "
        "arm on the same tokens, and write study.json, runs.csv, curves.csv, summary.csv/.md and PNG plots. "
        "Without --config the packaged CPU study runs (about 15 minutes on one core). Finished arms under "
        "--out are reused, so an interrupted study resumes.",
    )
    p.add_argument("--config", default=None, metavar="STUDY.yaml", help="study config (default: packaged)")
    p.add_argument("--out", default="sn29-study", metavar="DIR", help="run directory")
    p.add_argument(
        "--report-dir", default=None, metavar="DIR", help="where the report files go (default: --out)"
    )
    p.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,2", help="override the config's seeds")
    p.add_argument(
        "--steps", type=int, default=None, metavar="STEPS", help="override train.steps of every arm"
    )
    p.add_argument(
        "--print-config",
        choices=("default", "gpu"),
        default=None,
        help="print a packaged study config (default CPU study, or the GPU one) and exit",
    )
    p.add_argument(
        "--from-json",
        default=None,
        metavar="study.json",
        help="re-render the report of a finished study from its study.json (no training)",
    )
    p.add_argument("--json", action="store_true", help="print the per-arm summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from sn29_growth.study import load_study_config, run_study, summarize, write_report
    from sn29_growth.study.config import DEFAULT_CONFIG, GPU_CONFIG, packaged_config_text
    from sn29_growth.study.report import read_run

    if args.print_config:
        sys.stdout.write(
            packaged_config_text(DEFAULT_CONFIG if args.print_config == "default" else GPU_CONFIG)
        )
        return 0
    if args.from_json:
        result = read_run(args.from_json)
        config = result.config
    else:
        config = load_study_config(args.config)
        if args.seeds:
            config = replace(config, seeds=args.seeds)
        if args.steps is not None:
            config = replace(config, train=replace(config.train, steps=args.steps))
        result = run_study(config, args.out)
    paths = write_report(result, args.report_dir or args.out)
    summaries = summarize(result.arms)
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return 0
    print(f"study {config.name}: {len(config.arms)} arms × {len(config.seeds)} seeds in {result.wall_s:.0f}s")
    for s in summaries:
        gap = "best" if s.gap_to_best == 0 else f"{s.gap_to_best:+.4f}"
        print(
            f"  {s.arm:<16} after growth {s.after_growth_mean:.4f}  final {s.final_mean:.4f} ± "
            f"{s.final_std:.4f}  ({gap})"
        )
    print(f"report: {paths['summary.md'].parent}")
    return 0
