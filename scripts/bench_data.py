"""Training-data throughput: ``sn29 data``'s exact-path tokenization and the memory-mapped window reader.

Tokenization: ``--texts`` texts (the embedded corpus's train part, repeated) in a jsonl file are prepared
with :func:`sn29_growth.train.prepare.prepare_tokens` (the tokenizer of ``--tokenizer``: default a tiny
model folder with the embedded tokenizer) into a temporary folder, end to end (read, tokenize in the
network-stack worker, write); tokens/s of the best of ``--repeats``. The tokenizer worker is one process
on one core, so the figure is per core.

Reader: a folder of ``--reader-tokens`` ids (uint32), read by :class:`sn29_growth.train.data.MappedWindows`
in steps of ``--batch`` windows of ``--seq-len`` tokens; windows/s and tokens/s over ``--reader-steps``.

    .venv/bin/python scripts/bench_data.py
    .venv/bin/python scripts/bench_data.py --tokenizer path/to/model --texts 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default=None, help="model folder (default: a tiny one, embedded tokenizer)")
    p.add_argument("--texts", type=int, default=5000, help="texts to tokenize (default 5000)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reader-tokens", type=int, default=256 * 2**20, help="ids in the reader's folder")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=64, help="windows per step")
    p.add_argument("--reader-steps", type=int, default=200)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_tokenize(args, tmp: Path) -> dict:
    from sn29_growth.corpus import load_corpus
    from sn29_growth.eval.tokenizers import load_tokenizer
    from sn29_growth.train.prepare import prepare_tokens

    tokenizer_dir = args.tokenizer
    if tokenizer_dir is None:
        from sn29_growth.checkpoint import save_model
        from sn29_growth.tiny import build_tiny
        from sn29_growth.tokenizer import embedded_tokenizer

        tokenizer_dir = tmp / "model"
        save_model(build_tiny("llama-gqa", seed=0), tokenizer_dir, tokenizer=embedded_tokenizer())
    texts = [s.text for s in load_corpus().train]
    src = tmp / "texts.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(args.texts):
            f.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
    tokenizer = load_tokenizer(tokenizer_dir)
    best = None
    for r in range(args.repeats):
        started = time.perf_counter()
        result = prepare_tokens(
            str(src), tmp / f"tok{r}", tokenizer_dir, 10**12, progress=False, tokenizer=tokenizer
        )
        seconds = time.perf_counter() - started
        if best is None or seconds < best[0]:
            best = (seconds, result.tokens, result.documents)
    seconds, tokens, docs = best
    chars = sum(len(texts[i % len(texts)]) for i in range(args.texts))
    return {
        "tokenizer": str(getattr(tokenizer, "engine", type(tokenizer).__name__)),
        "tokenizer_class": getattr(tokenizer, "class_name", ""),
        "documents": docs,
        "tokens": tokens,
        "chars_per_token": chars / tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
    }


def bench_reader(args, tmp: Path) -> dict:
    from sn29_growth.train.data import DataPosition, MappedWindows, PreparedTokens
    from sn29_growth.train.tokens import write_token_corpus

    (tmp / "tokenizer.json").write_text("{}")
    chunk = 2**22

    def documents():
        for start in range(0, args.reader_tokens, chunk):
            n = min(chunk, args.reader_tokens - start) - 1
            yield np.arange(start + 1, start + 1 + n, dtype=np.int64) % 128_000 + 1

    write_token_corpus(
        tmp / "reader", tmp / "tokenizer.json", {"train": documents()}, eos_id=0, vocab_size=128_256
    )
    reader = MappedWindows(PreparedTokens(tmp / "reader"), args.seq_len, seed=0)
    position = DataPosition()
    _, position = reader.take(position, args.batch)
    started = time.perf_counter()
    for _ in range(args.reader_steps):
        _, position = reader.take(position, args.batch)
    seconds = time.perf_counter() - started
    windows = args.reader_steps * args.batch
    return {
        "folder_tokens": args.reader_tokens,
        "seq_len": args.seq_len,
        "batch": args.batch,
        "windows": windows,
        "seconds": seconds,
        "windows_per_s": windows / seconds,
        "tokens_per_s": windows * args.seq_len / seconds,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as d:
        tmp = Path(d)
        out = {
            "machine": {"nproc": os.cpu_count(), "cpu": cpu_model()},
            "tokenize": bench_tokenize(args, tmp),
            "reader": bench_reader(args, tmp),
        }
    # a 1B model on one H100 at 40 % MFU of 989 TFLOP/s bf16: 6 · N · tokens/s = 0.4 · 989e12
    out["h100_1b_train_tokens_per_s_estimate"] = 0.4 * 989e12 / (6 * 1e9)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        t, r, need = out["tokenize"], out["reader"], out["h100_1b_train_tokens_per_s_estimate"]
        print(f"machine: {out['machine']['nproc']} cores, {out['machine']['cpu']}")
        print(
            f"tokenize ({t['tokenizer']}): {t['tokens_per_s']:,.0f} tokens/s per core ({t['tokens']:,} tokens)"
        )
        print(
            f"reader: {r['windows_per_s']:,.0f} windows/s of {r['seq_len']} = {r['tokens_per_s']:,.0f} tokens/s"
        )
        print(
            f"1B on one H100 at 40% MFU: {need:,.0f} tokens/s; reader / that = {r['tokens_per_s'] / need:,.0f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
