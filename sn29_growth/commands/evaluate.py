"""``sn29 evaluate MODEL...``: score models against each other as an SN29 validator would."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate and score models side by side (losses, win rates, weights)",
        description=(
            "Evaluate local checkpoint directories and/or org/name[@revision] Hub models. Each model is "
            "evaluated in the competition that accepts its architecture, one table per competition (models "
            "of mixed architectures, such as Llama and Phi3, get one table each); with --competition, "
            "every model is evaluated there and a model whose architecture it does not accept is refused "
            "before anything is evaluated. Models are aged by argument order: the first is the oldest. "
            "Offline, the dataset defaults to the embedded corpus's held-out part and the models' own "
            "tokenizers. A Hub model whose files cannot be fetched (offline and not completely cached, or "
            "the Hub out of reach) is shown as not evaluated, and the exit code is 1."
        ),
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directory or org/name[@revision]")
    p.add_argument(
        "--competition",
        help="evaluate every model in this competition; models it does not accept are refused up front "
        "(default: each model in the competition of its architecture)",
    )
    p.add_argument("--competitions", metavar="FILE|URL", help="competitions.json (default: the packaged one)")
    p.add_argument(
        "--dataset",
        metavar="local|fineweb|PATH",
        help="samples: embedded held-out corpus, FineWeb-edu, or a .txt/.jsonl file "
        "(default: the competition's dataset when online, local when offline)",
    )
    p.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="number of samples (default: the competition's pages, or all)",
    )
    p.add_argument("--seed", type=int, default=0, help="sample choice and grouping seed")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), help="where models run (default: cuda when available)"
    )
    p.add_argument("--cache-dir", help="loss/tokenization/dataset cache (default: ~/.cache/sn29-growth/eval)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write on-disk caches")
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tokenize, load and score each model in its own worker process, killed after --timeout: a "
        "hostile model that hangs or crashes costs only its own row",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds per model before its worker is killed",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON document with per-sample losses and, per model, the seconds of each stage "
        "(download, checks, tokenize, hash, load, eval) and the share outside the forward passes; a list "
        "of such documents, one per competition, when the models span several",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from sn29_growth.cliutil import model_argument
    from sn29_growth.eval.evaluate import evaluate_by_competition

    for model in args.models:
        model_argument("MODEL", model)
    if args.samples is not None and args.samples < 1:
        raise ValueError("--samples must be >= 1")
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    cache_dir = False if args.no_cache else (args.cache_dir or True)
    results = evaluate_by_competition(
        args.models,
        competition=args.competition,
        competitions=args.competitions,
        dataset=args.dataset,
        samples=args.samples,
        seed=args.seed,
        device=args.device,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
        isolate=args.isolate,
        timeout_s=args.timeout,
    )
    if args.json:
        docs = [r.to_json() for r in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        print("\n\n".join(r.format_table() for r in results))
    for result in results:
        used = len(result.sample_ids)
        if args.samples is not None and used < args.samples:
            print(
                f"sn29 evaluate: --samples {args.samples}: the dataset has {used}; used {used}"
                + (f" (competition {result.competition})" if len(results) > 1 else ""),
                file=sys.stderr,
            )
    missing = [m.name for r in results for m in r.not_evaluated]
    if missing:
        print(
            f"sn29 evaluate: not evaluated (files could not be fetched): {', '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    return 0
