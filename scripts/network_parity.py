#!/usr/bin/env python
"""Check that the network's stack (transformers 4.44 / tokenizers 0.19) scores model folders as we do.

    python scripts/network_parity.py MODEL_DIR... [--venv PATH] [--samples N] [--reading R] [--json]

The texts are the first N held-out samples of the embedded corpus plus a few texts with spaces before
punctuation (4.44 cleans those up when decoding unless the tokenizer says not to). The side venv is
built on first use (cached; ``--venv`` or ``$SN29_NETWORK_VENV`` chooses where). Exit status 0 when
every model agrees, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

SPACED_TEXTS = ("Hello , world", "It is n't here ; is it ?", "Prices rose ( again ) .")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="MODEL_DIR", help="local model folders")
    p.add_argument("--venv", help="the side venv (default: $SN29_NETWORK_VENV or ~/.cache/sn29-growth/...)")
    p.add_argument("--samples", type=int, default=16, help="held-out samples to score (default 16)")
    p.add_argument(
        "--reading",
        choices=("network", "ours", "both"),
        default="network",
        help="our reading of config.json: as the network reads it (default), as our tools mean it, or both",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds for the transformers 4.44 run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    if args.samples < 0:
        p.error("--samples must be >= 0")
    return args


def texts(samples: int) -> list[str]:
    from sn29_growth.corpus import load_corpus

    return [s.text for s in load_corpus().held_out[:samples]] + list(SPACED_TEXTS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sn29_growth.network.parity import NetworkVenvError, compare

    readings = ("network", "ours") if args.reading == "both" else (args.reading,)
    try:
        report = compare(args.models, texts(args.samples), args.venv, readings=readings, timeout=args.timeout)
    except NetworkVenvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
