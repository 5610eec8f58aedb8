"""``sn29 convert --to-stock|--to-divisor D|--to-network SRC DST``; the first two report the loss change
they cause (fp32, a few embedded held-out samples)."""

from __future__ import annotations

import json

LOSS_SAMPLES = 8
LOSS_MAX_TOKENS = 256
MEMORY_HEADROOM = 1.5  # fp32 weights times this must fit in the available memory


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
    mode.add_argument(
        "--to-divisor", type=float, metavar="D", help="express the model with norm_divisor D (a hidden size)"
    )
    mode.add_argument(
        "--to-network",
        action="store_true",
        help="config.json and tokenizer files in the network's format (rope_theta/rope_scaling, torch_dtype, "
        "a tokenizer class and merges tokenizers 0.19 reads); weights unchanged",
    )
    p.add_argument("src", help="source checkpoint directory")
    p.add_argument("dst", help="new output directory (must not exist)")
    p.add_argument(
        "--no-loss-check",
        action="store_true",
        help=f"skip the loss check of --to-stock/--to-divisor (mean summed loss per sample on "
        f"{LOSS_SAMPLES} embedded held-out samples, fp32, before and after; needs a tokenizer in SRC)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _available_memory() -> int | None:
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def loss_check(src, dst, samples: int = LOSS_SAMPLES) -> dict:
    """Mean summed loss per sample (the validator's measure) of SRC and DST on the first ``samples``
    held-out samples of the embedded corpus, fp32, one model in memory at a time; ``{"skipped": why}``
    when SRC has no tokenizer or the fp32 weights would not fit in memory."""
    from pathlib import Path

    import torch

    from sn29_growth.checkpoint import TOKENIZER_FILES
    from sn29_growth.params import count_parameters

    if not any((Path(src) / n).is_file() for n in TOKENIZER_FILES):
        return {"skipped": "SRC has no tokenizer"}
    parameters = count_parameters(src)["parameters"]
    available = _available_memory()
    if available is not None and parameters * 4 * MEMORY_HEADROOM > available:
        return {
            "skipped": f"{parameters:,} parameters in fp32 need more than the {available / 2**30:.1f} GiB "
            "of memory available"
        }
    from sn29_growth.checkpoint import load_tokenizer
    from sn29_growth.corpus import load_corpus
    from sn29_growth.lm import corpus_loss, encode
    from sn29_growth.loading import load_model

    tokenizer = load_tokenizer(src)
    texts = [s.text for s in load_corpus().held_out[:samples]]
    sequences = encode(tokenizer, texts, max_len=LOSS_MAX_TOKENS)
    losses = []
    for path in (src, dst):
        model = load_model(path, dtype=torch.float32)
        result = corpus_loss(model, sequences)
        del model
        losses.append(sum(result.summed_losses) / len(result.summed_losses))
    before, after = losses
    return {
        "samples": len(sequences),
        "tokens": result.tokens,
        "dtype": "float32",
        "before": before,
        "after": after,
        "delta": after - before,
    }


def run(args) -> int:
    from sn29_growth.cliutil import model_argument
    from sn29_growth.convert import to_divisor, to_network, to_stock

    model_argument("SRC", args.src, hub=False)
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
    check = {"skipped": "--no-loss-check"} if args.no_loss_check else loss_check(args.src, args.dst)
    if args.json:
        print(json.dumps(dict(report.to_dict(), loss_check=check)))
    else:
        print(f"{report.direction}: {args.src} -> {args.dst}")
        print(f"  hidden_size={report.hidden_size} norm_divisor={report.norm_divisor:g}")
        print(
            f"  gains x{report.gain_factor:.6g} on {report.norm_tensors} norm tensors, rms_norm_eps={report.rms_norm_eps:.6g}"
        )
        print(
            f"  {report.dtype} rounding of the rescaled gains: max relative error {report.max_relative_rounding_error:.3g}"
        )
        if "skipped" in check:
            print(f"  loss check skipped: {check['skipped']}")
        else:
            print(
                f"  loss per sample {check['before']:.6f} -> {check['after']:.6f} (Δ {check['delta']:+.3g}) "
                f"on {check['samples']} held-out samples, fp32"
            )
    return 0
