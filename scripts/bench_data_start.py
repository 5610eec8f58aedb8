"""Time to the first training step: data tokenized while training (the background producer) against
everything prepared first.

A tiny model folder (the embedded tokenizer, or ``--tokenizer``'s files are not used: the model's own) is
trained on a folder of ``--texts`` texts (the embedded corpus's train part, repeated, in jsonl files) with
``--steps`` steps of ``--batch`` windows of ``--seq-len`` tokens: the run asks for steps × batch ×
(seq_len + 1) ids plus the margin. Each mode starts from an empty data folder (nothing prepared yet) and
measures the wall time from calling :func:`sn29_growth.train.train` to the end of its first optimizer step
(tokenizer worker start, model load, the tokenization the first step waits for, the step); the run is then
stopped. Best of ``--repeats`` per mode, the modes alternating.

    .venv/bin/python scripts/bench_data_start.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_data import cpu_model


class FirstStep(Exception):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=30_000, help="texts in the source folder (default 30000)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8, help="windows per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def first_step_s(model: Path, src: Path, data_dir: Path, args, background: bool) -> float:
    from sn29_growth.train import TrainConfig, train
    from sn29_growth.train.config import BatchConfig, CheckpointConfig
    from sn29_growth.train.data import source_from_arg
    from sn29_growth.train.loop import TrainingRun

    original = TrainingRun.train_one_step

    def once(self, bar):
        original(self, bar)
        raise FirstStep

    config = TrainConfig(
        steps=args.steps,
        eval_every=0,
        batch=BatchConfig(batch_size=args.batch, seq_len=args.seq_len),
        checkpoint=CheckpointConfig(save_every=0),
        progress=False,
    )
    TrainingRun.train_one_step = once
    started = time.perf_counter()
    try:
        train(
            model, data_dir / "out", config, data=source_from_arg(str(src), data_dir, background=background)
        )
    except FirstStep:
        return time.perf_counter() - started
    finally:
        TrainingRun.train_one_step = original
    raise AssertionError("the run ended before its first step")


def main(argv=None) -> int:
    args = parse_args(argv)
    from sn29_growth.checkpoint import save_model
    from sn29_growth.corpus import load_corpus
    from sn29_growth.tiny import build_tiny
    from sn29_growth.tokenizer import embedded_tokenizer
    from sn29_growth.train.stream import run_tokens

    with tempfile.TemporaryDirectory(prefix="bench-data-start-") as d:
        tmp = Path(d)
        model = tmp / "model"
        save_model(build_tiny("llama-gqa", seed=0), model, tokenizer=embedded_tokenizer())
        texts = [s.text for s in load_corpus().train]
        src = tmp / "src"
        src.mkdir()
        per_file = 5000
        for start in range(0, args.texts, per_file):
            with open(src / f"part-{start // per_file:04d}.jsonl", "w", encoding="utf-8") as f:
                for i in range(start, min(start + per_file, args.texts)):
                    f.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
        times: dict[str, list[float]] = {"background": [], "prepare_first": []}
        for r in range(args.repeats):
            for mode in times:
                data_dir = tmp / f"{mode}-{r}"
                times[mode].append(first_step_s(model, src, data_dir, args, mode == "background"))
    out = {
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model()},
        "run": {"steps": args.steps, "batch": args.batch, "seq_len": args.seq_len},
        "run_tokens": run_tokens(args.steps, args.batch, args.seq_len),
        "first_step_s": {mode: min(t) for mode, t in times.items()},
        "all_s": times,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        f = out["first_step_s"]
        print(f"machine: {out['machine']['nproc']} cores, {out['machine']['cpu']}")
        print(f"run: {args.steps} steps x {args.batch} x {args.seq_len} -> {out['run_tokens']:,} ids")
        print(f"first step: background {f['background']:.2f} s, prepare first {f['prepare_first']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
