"""``sn29 convert --to-stock|--to-divisor D SRC DST``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="fold norm_divisor into RMSNorm gains/eps (a stock checkpoint) or back; or rewrite in the network's format",
        description="Convert a norm_divisor checkpoint to a stock one that any transformers runtime scores "
        "identically (--to-stock), a stock checkpoint to the norm_divisor form (--to-divisor D), or a "
        "checkpoint saved by transformers 5 into the files the network's validators (transformers 4.44) "
        "load and score alike (--to-network; weights unchanged).",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to-stock", action="store_true", help="fold norm_divisor into gains and eps")
    mode.add_argument("--to-divisor", type=float, metavar="D", help="express the model with norm_divisor D")
    mode.add_argument(
        "--to-network",
        action="store_true",
        help="config.json and tokenizer files in the network's format (rope_theta/rope_scaling, torch_dtype, "
        "a tokenizer class and merges tokenizers 0.19 reads); weights unchanged",
    )
    p.add_argument("src", help="source checkpoint directory")
    p.add_argument("dst", help="new output directory (must not exist)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from sn29_growth.convert import to_divisor, to_network, to_stock

    if args.to_network:
        result = to_network(args.src, args.dst)
        if args.json:
            print(json.dumps(result.to_dict()))
            return 0 if result.ok else 1
        print(f"to-network: {args.src} -> {args.dst}")
        print(f"  rewritten: {', '.join(result.changed) or 'nothing (already in the network format)'}")
        for line in result.after:
            print(f"  still: {line}")
        print(f"  network check: {'loads and scores alike' if result.ok else 'NOT compatible (see above)'}")
        return 0 if result.ok else 1
    if args.to_stock:
        report = to_stock(args.src, args.dst)
    else:
        d = args.to_divisor
        report = to_divisor(args.src, args.dst, int(d) if float(d).is_integer() else d)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{report.direction}: {args.src} -> {args.dst}")
        print(f"  hidden_size={report.hidden_size} norm_divisor={report.norm_divisor:g}")
        print(
            f"  gains x{report.gain_factor:.6g} on {report.norm_tensors} norm tensors, rms_norm_eps={report.rms_norm_eps:.6g}"
        )
        print(
            f"  {report.dtype} rounding of the rescaled gains: max relative error {report.max_relative_rounding_error:.3g}"
        )
    return 0
