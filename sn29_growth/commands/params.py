"""``sn29 params PATH|CONFIG``: exact parameter count on the meta device."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("params", help="exact parameter count of a config or checkpoint (no weights loaded)")
    p.add_argument("path", help="checkpoint directory or config.json")
    p.add_argument("--json", action="store_true", help="print a JSON document")
    p.set_defaults(func=run)


def run(args) -> int:
    from sn29_growth.cliutil import model_argument
    from sn29_growth.params import count_parameters

    model_argument("PATH", args.path, hub=False, weights=False, config_file=True)
    counts = count_parameters(args.path)
    if args.json:
        print(json.dumps(counts))
    else:
        for k, v in counts.items():
            print(f"{k:>14}: {v:,}")
    return 0
