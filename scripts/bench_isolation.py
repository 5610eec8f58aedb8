"""What per-model worker isolation costs: ``evaluate_models`` in-process vs one worker process per model.

Both runs score the same models on the same samples with every cache off, in one invocation, so the
difference is the price of the isolation (a process start, imports, re-reading the tokenizer and the
weights in each worker). Prints one JSON line per variant and the ratio.

    .venv/bin/python scripts/bench_isolation.py --models 3 --samples 32
    .venv/bin/python scripts/bench_isolation.py --device cuda --hidden 2048 --layers 16 --samples 400
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=3, help="models to score (default 3)")
    p.add_argument("--samples", type=int, default=32, help="held-out samples of the embedded corpus")
    p.add_argument("--hidden", type=int, default=64, help="hidden size of each model (default: tiny)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def build_models(root: Path, n: int, hidden: int, layers: int) -> list[Path]:
    from sn29_growth.checkpoint import save_model
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer

    paths = []
    for i in range(n):
        heads = max(1, hidden // 64)
        model = build_tiny(
            "llama-mha",
            seed=i,
            hidden_size=hidden,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=hidden // heads,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
        )
        save_model(model, root / f"m{i}", tokenizer=embedded_tokenizer())
        paths.append(root / f"m{i}")
    return paths


def timed(paths, args, isolate: bool) -> dict:
    from sn29_growth.eval.evaluate import evaluate_models

    t0 = time.perf_counter()
    result = evaluate_models(
        [str(p) for p in paths],
        dataset="local",
        samples=args.samples,
        cache_dir=False,
        device=args.device,
        isolate=isolate,
    )
    seconds = time.perf_counter() - t0
    assert all(m.rejection is None for m in result.models), [m.rejection for m in result.models]
    return {"isolate": isolate, "seconds": round(seconds, 2), "losses": [m.losses for m in result.models]}


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        paths = build_models(Path(tmp), args.models, args.hidden, args.layers)
        inline = timed(paths, args, isolate=False)
        isolated = timed(paths, args, isolate=True)
    same = all(
        abs(a - b) <= 1e-4 * max(1.0, abs(a))
        for la, lb in zip(inline.pop("losses"), isolated.pop("losses"), strict=True)
        for a, b in zip(la, lb, strict=True)
    )
    for row in (inline, isolated):
        print(json.dumps({**row, "models": args.models, "samples": args.samples, "device": args.device}))
    overhead = (isolated["seconds"] - inline["seconds"]) / args.models
    print(
        f"isolated / in-process: {isolated['seconds'] / inline['seconds']:.2f}x; "
        f"{overhead:.1f} s per model; losses equal: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
