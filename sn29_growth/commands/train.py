"""``sn29 train MODEL_DIR OUT_DIR``: train a (grown) checkpoint; under torchrun, one process per GPU.

Multi-process: ``torchrun --nproc_per_node=N -m sn29_growth.train MODEL_DIR OUT_DIR [flags]`` (the same
flags; FSDP2 over NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sn29_growth.cliutil import (
    add_setting,
    add_training_arguments,
    model_argument,
    train_config_from_args,
)


def register(sub) -> None:
    from sn29_growth.train.config import CheckpointConfig, TrainConfig

    p = sub.add_parser(
        "train",
        help="train a checkpoint (re-warming the slices a growth recipe marks new); FSDP2 under torchrun",
        description="Train MODEL_DIR on the embedded corpus, a Hub dataset's parquet shards or a folder of text "
        "files (tokenized while training), a folder `sn29 data` prepared, or a text/jsonl file, and write the "
        "trained "
        "checkpoint, train_log.jsonl, loss_curve.png, summary.json and a model card (README.md) into OUT_DIR. "
        "New parameter slices "
        "listed in MODEL_DIR/growth_recipe.json get their own learning-rate warm-up (--new-lr-warmup) and can "
        "be trained alone first (--new-only-steps). Launch with `torchrun --nproc_per_node=N -m "
        "sn29_growth.train ...` for several processes.",
    )
    p.add_argument("model_dir", help="checkpoint directory (config, safetensors, tokenizer)")
    p.add_argument("out_dir", help="output directory (the final model, logs, checkpoints)")
    add_training_arguments(p, tool="train")
    r = p.add_argument_group("this run (sn29 train only)")
    add_setting(r, TrainConfig, "stop_after")
    add_setting(r, CheckpointConfig, "resume")
    r.add_argument(
        "--val-data",
        default=None,
        metavar="FILE",
        help="validation .txt/.jsonl (default: the embedded corpus's held-out part)",
    )
    r.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where --data hf://… or a folder of text files is tokenized (one folder per source and "
        "tokenizer, reused by later runs and on resume; Hub shards in DIR/shards; default: OUT_DIR/data)",
    )
    add_setting(r, TrainConfig, "device")
    add_setting(r, TrainConfig, "seed")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def config_from_args(args):
    """The TrainConfig of ``sn29 train``'s flags (the training flags are mapped by the same function as the
    miner's: :func:`sn29_growth.cliutil.train_config_from_args`)."""
    from sn29_growth.cliutil import field_default
    from sn29_growth.train.config import TrainConfig

    return train_config_from_args(
        args,
        eval_every=field_default(TrainConfig, "eval_every"),
        device=args.device,
        resume=args.resume,
        seed=args.seed,
        progress=not args.no_progress,
        stop_after=args.stop_after,
    )


def run(args) -> int:
    from sn29_growth.train import train
    from sn29_growth.train.data import FileTexts, source_from_arg

    model_argument("MODEL_DIR", args.model_dir, hub=False, tokenizer=True)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    config = config_from_args(args)
    validation = FileTexts(args.val_data) if args.val_data else None
    result = train(
        args.model_dir,
        args.out_dir,
        config,
        data=source_from_arg(args.data or "local", data_dir=args.data_dir or Path(args.out_dir) / "data"),
        validation=validation,
    )
    if rank != 0:
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    state = "done" if result.complete else "stopped (resume with --resume)"
    print(
        f"{state}: {result.steps} steps, {result.tokens:,} tokens in {result.train_time_s:.1f} s "
        f"({result.tokens_per_s:,.0f} tokens/s, {result.world_size} process(es) on {result.device}, "
        f"{result.compute_dtype})"
    )
    if result.initial_val_loss is not None:
        print(f"  held-out loss {result.initial_val_loss:.4f} -> {result.final_val_loss:.4f}")
    if result.final_train_loss is not None:
        print(f"  final train loss {result.final_train_loss:.4f}")
    if result.new_elements:
        print(f"  new elements (growth recipe): {result.new_elements:,} of {result.parameters:,}")
    print(
        f"  output: {result.out_dir}" + (f"  (checkpoint {result.checkpoint})" if result.checkpoint else "")
    )
    return 0
