"""What a model's evaluation may cost at most: the per-model time budget, and the token-inflating
tokenizer measured against the plain one, side by side in one run.

1. The device's matmul throughput (:func:`sn29_growth.eval.budget.measure_flops`, as the validator
   measures it) and the budget (:func:`~sn29_growth.eval.budget.model_budget`, default margin) of
   models at the published sizes on c00's samples: ``--samples`` texts of at most ``max_sequence_len``
   (4096) tokens each, weights in bf16.
2. The worst tokenizer the network still scores: the embedded tokenizer with a normalizer that turns
   every space into ``--inflate`` spaces and a decoder that turns them back (the round trip passes,
   the tokens multiply), against the same tokenizer without it, both through the exact path on the
   same ``--texts`` texts: seconds and tokens, and the ratio.

    python scripts/bench_budget.py --json bench-budget.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tokenize import bench_texts  # noqa: E402
from benchlib import finish  # noqa: E402

from sn29_growth.eval.budget import BudgetSettings, measure_flops, model_budget  # noqa: E402
from sn29_growth.eval.tokenize import TokenizeSettings, tokenize_samples  # noqa: E402
from sn29_growth.network import exact  # noqa: E402

SIZES = {"1B": 1_000_000_000, "8B": 8_030_000_000, "20.1B (c00 limit)": 20_100_000_000}


def write_tokenizers(root: Path, inflate: int) -> dict[str, Path]:
    from tokenizers import Tokenizer, decoders, normalizers

    from sn29_growth.network.tokenizer import network_tokenizer_json
    from sn29_growth.tokenizer import embedded_tokenizer

    base = embedded_tokenizer().backend_tokenizer.to_str()
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    config["clean_up_tokenization_spaces"] = False
    out = {}
    for name in ("plain", "inflating"):
        tok = Tokenizer.from_str(base)
        if name == "inflating":
            tok.normalizer = normalizers.Replace(" ", " " * inflate)
            tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(" " * inflate, " ")])
        folder = root / name
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(network_tokenizer_json(json.loads(tok.to_str()))))
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        out[name] = folder
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--samples", type=int, default=1500, help="samples per evaluation (c00: 1500)")
    p.add_argument("--max-sequence-len", type=int, default=4096)
    p.add_argument("--texts", type=int, default=200, help="texts tokenized in part 2")
    p.add_argument("--max-chars", type=int, default=17500, help="c00's cap_sample_len")
    p.add_argument("--inflate", type=int, default=30)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    flops = measure_flops(args.device)
    settings = BudgetSettings()
    sample_bytes = [args.max_chars] * args.samples  # every sample at the cap: the largest budget
    budgets = {
        name: model_budget(
            settings,
            flops_per_s=flops,
            parameters=n,
            weight_bytes=2 * n,
            sample_bytes=sample_bytes,
            max_sequence_len=args.max_sequence_len,
        ).explanation
        for name, n in SIZES.items()
    }
    for name, text in budgets.items():
        print(f"{name:>18}: {text}")

    texts = bench_texts(args.texts, args.max_chars, seed=0)
    wide = TokenizeSettings(0, 0)
    limited = TokenizeSettings(0, args.max_sequence_len)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in write_tokenizers(Path(tmp), args.inflate).items():
            tok = exact.load_network_tokenizer(folder)
            start = time.perf_counter()
            tokens = tokenize_samples(tok, texts, wide)
            seconds = time.perf_counter() - start
            kept = tokenize_samples(tok, texts, limited)
            rows[name] = {
                "seconds": seconds,
                "tokens": sum(len(t.ids) for t in tokens.items if t.ids),
                "round_trip_failures": tokens.decode_failures,
                "forward_tokens_within_limit": sum(len(t.ids) for t in kept.items if t.ids),
                "too_long": sum(t.failure == "too_long" for t in kept.items),
            }
    ratio = rows["inflating"]["seconds"] / rows["plain"]["seconds"]
    token_ratio = rows["inflating"]["tokens"] / rows["plain"]["tokens"]
    chars = sum(len(t.text) for t in texts)
    for name, row in rows.items():
        print(f"{name:>10}: {row['seconds']:.2f} s, {row['tokens']:,} tokens, {row['too_long']} too long")
    print(
        f"inflating / plain: {ratio:.2f}x time, {token_ratio:.2f}x tokens on {len(texts)} texts ({chars:,} chars)"
    )
    results = {
        "device": args.device,
        "flops_per_s": flops,
        "budget_settings": {"factor": settings.factor, "floor_s": settings.floor_s},
        "budgets": budgets,
        "texts": len(texts),
        "chars": chars,
        "tokenize": rows,
        "time_ratio": ratio,
        "token_ratio": token_ratio,
    }
    finish(
        results,
        "bench_budget.py",
        sys.argv[1:] if argv is None else argv,
        Path(args.json) if args.json else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
