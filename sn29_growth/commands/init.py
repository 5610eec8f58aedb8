"""``sn29 init CONFIG.json DIR``: a checkpoint with seeded random weights for a Llama/Phi3 config."""

from __future__ import annotations

import json

from sn29_growth.cliutil import parse_bytes


def register(sub) -> None:
    p = sub.add_parser(
        "init",
        help="make a checkpoint from a config.json: seeded random weights, the network's format",
        description="Write DIR (which must not exist) with random weights drawn from --seed (normal, std "
        "initializer_range; norms 1) for the Llama/Phi3 CONFIG, streamed into safetensors shards of at most "
        "--max-shard-size, config.json in the keys the network's transformers 4.44 reads, and the tokenizer "
        "files of --tokenizer. Everything is written to a temporary folder and renamed into place. Warns when "
        "the config's bos/eos/pad token ids do not exist in the tokenizer.",
    )
    p.add_argument(
        "config", metavar="CONFIG.json", help="a Llama or Phi3 config.json (or a folder holding one)"
    )
    p.add_argument("dir", metavar="DIR", help="new checkpoint directory (must not exist)")
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        default=None,
        help="dtype of the weights (default: the config's torch_dtype, else bfloat16)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="PATH|ORG/NAME|embedded",
        help="copy the tokenizer files of a local folder or of a Hub model (fetched only when online), or "
        "write this package's embedded tokenizer (default: no tokenizer files)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument(
        "--max-shard-size",
        type=parse_bytes,
        default="2GB",
        metavar="BYTES",
        help="size cap of each weight shard",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from sn29_growth.init import init_checkpoint

    report = init_checkpoint(
        args.config,
        args.dir,
        dtype=args.dtype,
        tokenizer=args.tokenizer,
        seed=args.seed,
        max_shard_bytes=args.max_shard_size,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"init: {args.config} -> {report.path}")
    print(
        f"  {report.model_type}, {report.parameters:,} parameters, {report.dtype}, seed {report.seed}: "
        f"{report.shards} shard(s), {report.weight_bytes:,} bytes"
    )
    if report.tokenizer is None:
        print("  tokenizer: none (only a competition tokenizer can score it)")
    else:
        print(
            f"  tokenizer: {report.tokenizer} ({', '.join(report.tokenizer_files)}"
            + (f"; {report.tokenizer_size:,} tokens)" if report.tokenizer_size is not None else ")")
        )
    for w in report.warnings:
        print(f"  warning: {w}")
    verdict = "loads and scores alike" if report.network_ok else "NOT network-compatible"
    print(f"  network (transformers 4.44 validators): {verdict}")
    for f in report.network.get("findings", []):
        print(f"    {f['severity']}: {f['file']}: {f['message']}")
    return 0
