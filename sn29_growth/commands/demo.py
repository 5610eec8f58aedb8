"""``sn29 demo``: run the whole product on the embedded default (local models, embedded corpus)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="show everything working offline: tiny models, embedded corpus, CPU")
    p.add_argument("--out", default="demo-output", help="working directory (default: ./demo-output)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from sn29_growth.demo import run_demo

    run_demo(args.out, seed=args.seed)
    return 0
