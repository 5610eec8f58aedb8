"""What per-model worker isolation costs: ``evaluate_models`` in-process vs one worker process per model.

Both runs score the same models on the same samples with every cache off, in one invocation, so the
difference is the price of the isolation (a fresh process per model forked by the warm worker factory,
its tokenizer worker, re-reading the tokenizer and the weights in each worker). The factory is started
before the isolated run, as a running validator has it; its one-time start is printed apart
(``factory_start_s``). ``--cold`` turns the factory off (``SN29_WORKER_FACTORY=0``): every worker
imports torch and transformers itself, as before the factory. Prints one JSON line per variant and the
ratio.

    .venv/bin/python scripts/bench_isolation.py --models 3 --samples 32
    .venv/bin/python scripts/bench_isolation.py --device cuda --hidden 2048 --layers 16 --samples 400
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    p.add_argument("--cold", action="store_true", help="no worker factory: every worker starts cold")
    p.add_argument(
        "--repeat", type=int, default=1, help="alternate the two variants N times; medians reported"
    )
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
        factory_s = None
        if args.cold:
            os.environ["SN29_WORKER_FACTORY"] = "0"
        else:
            from sn29_growth.eval import worker

            t0 = time.perf_counter()
            worker.warm_factory()
            worker._FACTORY.wait_ready()
            factory_s = round(time.perf_counter() - t0, 2)
        isolated = timed(paths, args, isolate=True)
        runs = {False: [inline["seconds"]], True: [isolated["seconds"]]}
        for _ in range(args.repeat - 1):  # alternated: a busy moment of the host hits both alike
            for isolate in (False, True):
                runs[isolate].append(timed(paths, args, isolate)["seconds"])
        inline["seconds"], isolated["seconds"] = statistics.median(runs[False]), statistics.median(runs[True])
        inline["runs"], isolated["runs"] = runs[False], runs[True]
        isolated["factory_start_s"] = factory_s
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
        f"{overhead:.2f} s per model; losses equal: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
