"""``sn29 plan SRC --max-params N``: GPU-friendly growth shapes that fill a parameter/byte limit."""

from __future__ import annotations

import json
from pathlib import Path

from sn29_growth.commands.grow import parse_bytes, parse_count


def register(sub) -> None:
    p = sub.add_parser("plan", help="propose growth shapes that use as much of a parameter limit as possible")
    p.add_argument("src", metavar="SRC", help="checkpoint directory, config.json, or Hub repo id")
    p.add_argument("--max-params", type=parse_count, metavar="N", help="parameter limit, e.g. 20.1B")
    p.add_argument("--max-bytes", type=parse_bytes, metavar="B", help="byte limit for the weights, e.g. 42e9")
    p.add_argument(
        "--dtype", default=None, help="dtype for --max-bytes (default: the source's, else bfloat16)"
    )
    p.add_argument("--hidden-method", choices=("divisor", "stock", "clone"), default="divisor")
    p.add_argument("--json", action="store_true", help="print a JSON document")
    p.set_defaults(func=run)


def _config(src: str) -> dict:
    from sn29_growth.loading import read_config

    p = Path(src)
    if p.is_file():
        return read_config(p.parent) if p.name == "config.json" else json.loads(p.read_text(encoding="utf-8"))
    if p.is_dir():
        return read_config(p)
    from sn29_growth.growth.execute import resolve_source

    return read_config(resolve_source(src).path)


def run(args) -> int:
    from sn29_growth.arch import Shape
    from sn29_growth.growth.plan import config_dtype
    from sn29_growth.growth.planner import count_params, effective_limit, plan_options
    from sn29_growth.growth.spec import normalize_dtype

    config = _config(args.src)
    dtype = normalize_dtype(args.dtype) or config_dtype(config) or "bfloat16"
    limit = effective_limit(args.max_params, args.max_bytes, 4 if dtype == "float32" else 2)
    source = Shape.from_config(config)
    options = plan_options(source, limit, clone_only=args.hidden_method == "clone")
    if args.json:
        doc = {
            "source": {"parameters": count_params(source), "config": args.src},
            "limit": limit,
            "dtype": dtype,
            "recommended": options[0].to_dict() if options else None,
            "options": [o.to_dict() for o in options],
        }
        print(json.dumps(doc, indent=2))
        return 0 if options else 1
    print(f"source: {count_params(source):,} parameters; limit {limit:,} ({dtype})")
    head = f"{'option':<10} {'hidden':>7} {'heads':>7} {'inter':>7} {'layers':>6} {'params':>16} {'usage':>7}"
    print(head)
    print("-" * len(head))
    for i, o in enumerate(options):
        t = o.targets()
        heads = f"{t['num_attention_heads']}/{t['num_key_value_heads']}"
        mark = " *" if i == 0 else ""
        print(
            f"{o.name:<10} {t['hidden_size']:>7} {heads:>7} {t['intermediate_size']:>7} "
            f"{t['num_hidden_layers']:>6} {o.parameters:>16,} {o.usage:>7.2%}{mark}"
        )
    if options:
        print("* recommended: `sn29 grow SRC DST --max-params ...` applies it")
    return 0 if options else 1
