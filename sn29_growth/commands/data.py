"""``sn29 data SOURCE OUT_DIR --tokenizer MODEL_DIR --tokens N``: tokenize training data ahead of training."""

from __future__ import annotations

import json

from sn29_growth.cliutil import parse_bytes, parse_count


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="tokenize training data ahead into a folder that `sn29 train --data` reads memory-mapped",
        description="Read SOURCE shard by shard, tokenize it with MODEL_DIR's tokenizer on the network's own "
        "stack and write N tokens into OUT_DIR (token ids + manifest.json + the tokenizer). A second run "
        "with the same source and tokenizer into a folder holding enough tokens does nothing. Train on "
        "the folder with `sn29 train MODEL_DIR OUT --data OUT_DIR` (or the miner's --data OUT_DIR).",
    )
    p.add_argument(
        "source",
        help="local .parquet/.jsonl/.txt file or folder of them, or a Hub dataset's parquet files: "
        "hf://org/name[/config][@split] (e.g. hf://HuggingFaceFW/fineweb-edu-score-2/CC-MAIN-2024-10@train)",
    )
    p.add_argument("out_dir", help="the prepared folder (written atomically)")
    p.add_argument(
        "--tokenizer", required=True, metavar="MODEL_DIR", help="model folder whose tokenizer to use"
    )
    p.add_argument(
        "--tokens", required=True, type=parse_count, metavar="N", help="tokens to prepare (e.g. 2B, 5e8)"
    )
    p.add_argument("--text-column", default="text", metavar="NAME", help="text field of parquet/jsonl rows")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding other prepared data")
    hub = p.add_argument_group("Hub sources (hf://)")
    hub.add_argument("--revision", default="main", help="branch, tag or commit of the dataset")
    hub.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="where shards are downloaded (default: ~/.cache/sn29-growth/datasets)",
    )
    hub.add_argument(
        "--disk-budget",
        type=parse_bytes,
        default="50GiB",
        metavar="SIZE",
        help="shards kept on disk at once (older ones are deleted first; default: 50GiB)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from sn29_growth.train.prepare import HUB_PREFIX, prepare_tokens

    hub = {}
    if args.source.startswith(HUB_PREFIX):
        hub = {"revision": args.revision, "disk_budget": args.disk_budget}
    result = prepare_tokens(
        args.source,
        args.out_dir,
        args.tokenizer,
        args.tokens,
        text_column=args.text_column,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
        **hub,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "folder": str(result.folder),
                    "tokens": result.tokens,
                    "documents": result.documents,
                    "reused": result.reused,
                }
            )
        )
        return 0
    what = "already prepared" if result.reused else "prepared"
    print(f"{what}: {result.tokens:,} tokens ({result.documents:,} documents) in {result.folder}")
    return 0
