"""``sn29 demo``: run the whole product on the embedded default (local models, embedded corpus)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="show everything working offline: patched classes, growth, training, mining, validating (CPU)",
    )
    p.add_argument("--out", default="demo-output", metavar="DIR", help="working directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the models and of training")
    p.add_argument(
        "--base-steps",
        type=int,
        default=60,
        metavar="STEPS",
        help="training steps of the published base model",
    )
    p.add_argument(
        "--train-steps",
        type=int,
        default=120,
        metavar="STEPS",
        help="training steps of the miner's grown model",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from sn29_growth.demo import run_demo

    if not args.verbose:  # the demo narrates; library logs only when something is wrong
        logging.getLogger().setLevel(logging.WARNING)

    run_demo(args.out, seed=args.seed, base_steps=args.base_steps, train_steps=args.train_steps)
    return 0
