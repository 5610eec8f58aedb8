"""``sn29 grow SRC DST``: grow a Llama/Phi3 checkpoint (or Hub model) into a new directory."""

from __future__ import annotations

import argparse
import json
import os
import sys

from sn29_growth.cliutil import ArgumentParser, parse_bytes, parse_count
from sn29_growth.growth.spec import HIDDEN_METHODS, INITS, PLACEMENTS

# Growth allocates and frees many large tensors: with transparent huge pages torch's CPU allocator takes
# ~500× fewer page faults (effective when set before torch's first allocation in this process).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

TARGET_FLAGS = (
    ("--hidden-size", "hidden_size"),
    ("--intermediate-size", "intermediate_size"),
    ("--num-layers", "num_hidden_layers"),
    ("--num-attention-heads", "num_attention_heads"),
    ("--num-key-value-heads", "num_key_value_heads"),
    ("--vocab-size", "vocab_size"),
)

TARGET_HELP = {
    "hidden_size": "new hidden size (adds the query heads that keep hidden = heads x head_dim)",
    "intermediate_size": "new MLP width",
    "num_hidden_layers": "new number of decoder layers",
    "num_attention_heads": "new number of query heads (inside their kv groups)",
    "num_key_value_heads": "new number of key/value heads",
    "vocab_size": "new vocabulary size (tokens; the only growth that changes the loss, within log(1 + k/V))",
}


def _positions(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layer-positions: expected comma-separated integers, got {text!r}"
        ) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="checkpoint directory or Hub repo id namespace/name[@revision]")
    p.add_argument("dst", metavar="DST", help="new output directory (must not exist)")
    g = p.add_argument_group("targets (any combination; omitted dimensions are kept)")
    for flag, dest in TARGET_FLAGS:
        g.add_argument(flag, dest=dest, type=int, metavar="N", help=TARGET_HELP[dest])
    g.add_argument(
        "--layer-placement",
        choices=PLACEMENTS,
        default=None,
        help="where new blocks go (default: interleaved; positions when --layer-positions is given)",
    )
    g.add_argument(
        "--layer-positions", type=_positions, default=None, metavar="I,J", help="output indices of new blocks"
    )
    g.add_argument(
        "--max-params",
        type=parse_count,
        metavar="N",
        help="parameter limit (e.g. 20.1B): grow to the planner's recommended shape (see sn29 plan)",
    )
    g.add_argument(
        "--max-bytes",
        type=parse_bytes,
        metavar="BYTES",
        help="byte limit of the weights for the planner (e.g. 42e9, 40GB)",
    )
    m = p.add_argument_group("method")
    m.add_argument(
        "--hidden-method", choices=HIDDEN_METHODS, default="divisor", help="how the hidden size grows"
    )
    m.add_argument("--init", choices=INITS, default="trainable", help="values of the new weights")
    m.add_argument(
        "--noise",
        type=float,
        default=None,
        help="symmetry-breaking noise of clone growth (default: 0.01 for clone, else 0)",
    )
    m.add_argument(
        "--allow-off-network-shapes",
        dest="off_network",
        action="store_true",
        help="allow hidden_size != heads x head_dim: the result will NOT load on the network's "
        "validators (transformers 4.44); for experiments only",
    )
    m.add_argument(
        "--recipe",
        metavar="FILE.yaml",
        help="multi-step growth recipe, a 'steps' list (instead of target flags; format: docs/formats.md)",
    )
    m.add_argument("--seed", type=int, default=None, help="random seed (default: 0, or the recipe's)")
    m.add_argument(
        "--dtype", default=None, help="output dtype: bfloat16, float16, float32 (default: the source's)"
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--max-shard-size",
        type=parse_bytes,
        default="2GB",
        metavar="BYTES",
        help="size cap of each output shard",
    )
    o.add_argument("--verify", action="store_true", help="compare loss and logits of source and result")
    o.add_argument(
        "--probe", action="store_true", help="run two training steps and report stuck new parameters"
    )
    o.add_argument("--json", action="store_true", help="print a machine-readable report")


def register(sub) -> None:
    p = sub.add_parser("grow", help="grow a checkpoint (hidden, MLP, layers, heads, vocab), loss-preserving")
    add_arguments(p)
    p.set_defaults(func=run)


def build_spec(args, source_path=None):
    """The :class:`GrowthSpec` the flags describe (planner options resolved against the source)."""
    from sn29_growth.growth.spec import GrowthSpec, GrowthStep, load_recipe

    targets = {dest: getattr(args, dest) for _, dest in TARGET_FLAGS if getattr(args, dest) is not None}
    placement = args.layer_placement or ("positions" if args.layer_positions else "interleaved")
    method = dict(
        hidden_method=args.hidden_method,
        init=args.init,
        noise=args.noise,
        layer_placement=placement,
        layer_positions=args.layer_positions or (),
    )
    planned = args.max_params is not None or args.max_bytes is not None
    if args.recipe:
        if targets or planned:
            raise ValueError("--recipe cannot be combined with target flags or --max-params/--max-bytes")
        spec = load_recipe(args.recipe)
        return GrowthSpec(
            spec.steps,
            seed=spec.seed if args.seed is None else args.seed,
            dtype=args.dtype or spec.dtype,
            off_network=args.off_network or spec.off_network,
        )
    if planned:
        if targets:
            raise ValueError(
                f"--max-params/--max-bytes choose every size; drop {', '.join(f for f, d in TARGET_FLAGS if d in targets)}"
            )
        option = plan_for(
            source_path, args.max_params, args.max_bytes, args.dtype, args.hidden_method, args.off_network
        )
        targets = option.targets()
    if not targets:
        raise ValueError("nothing to grow: give target flags (--hidden-size ...), --max-params or --recipe")
    return GrowthSpec(
        (GrowthStep(**targets, **method),),
        seed=args.seed or 0,
        dtype=args.dtype,
        off_network=args.off_network,
    )


def plan_for(source_path, max_params, max_bytes, dtype, hidden_method="divisor", off_network=False):
    from sn29_growth.arch import Shape
    from sn29_growth.checkpoint import declared_dtype, read_model_config
    from sn29_growth.growth.fit import effective_limit, plan_options, recommended
    from sn29_growth.growth.spec import normalize_dtype

    config = read_model_config(source_path)
    out_dtype = normalize_dtype(dtype) or declared_dtype(config) or "bfloat16"
    limit = effective_limit(max_params, max_bytes, 4 if out_dtype == "float32" else 2)
    shape = Shape.from_config(config)
    return recommended(
        plan_options(shape, limit, clone_only=hidden_method == "clone", off_network=off_network)
    )


def _print_human(report) -> None:
    d = report.to_dict()
    src, dst = d["plan"]["source"], d["plan"]["target"]
    print(f"grew {d['source']['ref']} -> {d['destination']} in {d['seconds']:.1f}s")
    print(f"  parameters {d['parameters']['before']:,} -> {d['parameters']['after']:,} ({report.plan.dtype})")
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "norm_divisor",
    ):
        if src[key] != dst[key]:
            print(f"  {key:<20} {src[key]} -> {dst[key]}")
    if report.verification:
        for c in report.verification.checks:
            print(
                f"  verify {c.dtype:<9} loss {c.loss_source:.6f} -> {c.loss_grown:.6f} (Δ {c.loss_delta:+.2e}), "
                f"max |Δlogit| {c.max_abs_logit_diff:.2e}: {'ok' if c.ok else 'MISMATCH'}"
            )
    if report.probe:
        print(f"  probe: {report.probe.summary}")
        for s in report.probe.stuck[:10]:
            print(f"    {s}")
    if report.network:
        verdict = "loads and scores alike" if report.network.ok else "NOT network-compatible"
        print(f"  network (transformers 4.44 validators): {verdict}")
        for finding in report.network.findings:
            print(f"    {finding.format()}")
    if report.plan.spec.off_network and report.network and not report.network.ok:
        print("  warning: --allow-off-network-shapes: this model will not load on the network's validators")


def run(args) -> int:
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    import torch

    threads = torch.get_num_threads()
    # Growth is copies and random draws on large tensors, overlapped with a writer thread: one compute
    # thread is as fast and does not stall on a busy machine (OMP_NUM_THREADS overrides).
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> int:
    from sn29_growth.cliutil import model_argument, offline_as_argument_error
    from sn29_growth.growth.execute import GrowthVerificationError, grow_checkpoint, resolve_source

    model_argument("SRC", args.src)

    def fetch():
        return offline_as_argument_error(args.src, lambda: resolve_source(args.src), "SRC")

    if (args.max_params is not None or args.max_bytes is not None) and not args.recipe:
        source = fetch()
        spec = build_spec(args, source.path)
    else:
        spec = build_spec(args)
        source = fetch()
    try:
        report = grow_checkpoint(
            source, args.dst, spec, verify=args.verify, probe=args.probe, max_shard_bytes=args.max_shard_size
        )
    except GrowthVerificationError as e:
        if args.json:
            print(json.dumps(e.report.to_dict(), indent=2))
        else:
            _print_human(e.report)
        print(f"sn29 grow: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_human(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``grow`` on its own (``python -m sn29_growth.commands.grow``), as the ``sn29`` CLI would."""
    import logging

    parser = ArgumentParser(prog="sn29 grow")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"sn29 grow: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
