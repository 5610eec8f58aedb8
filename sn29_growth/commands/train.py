"""``sn29 train MODEL_DIR OUT_DIR``: train a (grown) checkpoint; under torchrun, one process per GPU.

Multi-process: ``torchrun --nproc_per_node=N -m sn29_growth.train MODEL_DIR OUT_DIR [flags]`` (the same
flags; FSDP2 over NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import logging
import os


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a checkpoint (re-warming the slices a growth recipe marks new); FSDP2 under torchrun",
        description="Train MODEL_DIR on the embedded corpus (or a text/jsonl file) and write the trained "
        "checkpoint, train_log.jsonl, loss_curve.png and summary.json into OUT_DIR. New parameter slices "
        "listed in MODEL_DIR/growth_recipe.json get their own learning-rate warm-up (--new-lr-warmup) and can "
        "be trained alone first (--new-only-steps). Launch with `torchrun --nproc_per_node=N -m "
        "sn29_growth.train ...` for several processes.",
    )
    p.add_argument("model_dir", help="checkpoint directory (config, safetensors, tokenizer)")
    p.add_argument("out_dir", help="output directory (the final model, logs, checkpoints)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    p.add_argument(
        "--stop-after", type=int, default=None, metavar="N", help="stop with a checkpoint after N steps"
    )
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of matrices (default 0.1)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 = off (default 1)")
    p.add_argument("--schedule", choices=("cosine", "linear", "constant"), default="cosine")
    p.add_argument("--warmup", type=int, default=10, metavar="STEPS", help="warm-up steps (default 10)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / peak lr (default 0.1)")
    p.add_argument(
        "--new-lr-warmup", type=int, default=0, metavar="STEPS", help="extra warm-up of new slices"
    )
    p.add_argument("--new-only-steps", type=int, default=0, metavar="N", help="train only new slices first")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch per process")
    p.add_argument("--seq-len", type=int, default=256, help="tokens predicted per sequence (default 256)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="compute dtype (autocast); auto = bfloat16 on cuda, float32 on cpu",
    )
    p.add_argument(
        "--save-dtype",
        choices=("source", "float32", "bfloat16", "float16"),
        default="source",
        help="dtype of the final model (default: what MODEL_DIR declares)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--data", default="local", help="'local' (embedded corpus, train part) or a .txt/.jsonl file"
    )
    p.add_argument(
        "--val-data",
        default=None,
        metavar="PATH",
        help="validation .txt/.jsonl (default: the embedded corpus's held-out part)",
    )
    p.add_argument(
        "--eval-every", type=int, default=50, metavar="N", help="validate every N steps (0 = never)"
    )
    p.add_argument("--eval-windows", type=int, default=64, help="held-out windows per validation (0 = all)")
    p.add_argument(
        "--save-every", type=int, default=100, metavar="N", help="checkpoint every N steps (0 = never)"
    )
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def config_from_args(args):
    from sn29_growth.train import BatchConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig

    return TrainConfig(
        steps=args.steps,
        stop_after=args.stop_after,
        eval_every=args.eval_every,
        optimizer=OptimizerConfig(lr=args.lr, weight_decay=args.weight_decay, grad_clip=args.grad_clip),
        schedule=ScheduleConfig(
            kind=args.schedule,
            warmup_steps=args.warmup,
            min_lr_ratio=args.min_lr_ratio,
            new_lr_warmup=args.new_lr_warmup,
            new_only_steps=args.new_only_steps,
        ),
        batch=BatchConfig(
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            grad_accum=args.grad_accum,
            eval_windows=args.eval_windows,
        ),
        checkpoint=CheckpointConfig(
            save_every=args.save_every, keep=args.keep_checkpoints, resume=args.resume
        ),
        device=args.device,
        dtype=args.dtype,
        save_dtype=args.save_dtype,
        grad_checkpointing=args.grad_checkpointing,
        seed=args.seed,
        progress=not args.no_progress,
    )


def run(args) -> int:
    from sn29_growth.train import train
    from sn29_growth.train.data import FileTexts, source_from_arg

    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    config = config_from_args(args)
    validation = FileTexts(args.val_data) if args.val_data else None
    result = train(
        args.model_dir, args.out_dir, config, data=source_from_arg(args.data), validation=validation
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
