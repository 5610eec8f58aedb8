"""Benchmark growth verification: whole-model (before) against streaming (after), peak RSS and time.

A synthetic bf16 Llama source is written and grown with ``sn29 grow`` (no verify; neither is timed).
Then each verification runs in its own fresh process, so that peak RSS (the kernel's ``wait4`` rusage of
that child) is per variant:

1. ``in-memory`` — :func:`~sn29_growth.growth.verify.verify_in_memory`, what ``sn29 grow --verify`` did:
   both models loaded whole, in fp32 and then in the output dtype;
2. ``streaming`` — :func:`~sn29_growth.growth.streaming_verify.verify_streaming`, what it does now:
   one decoder block of each model at a time, the output head in vocabulary chunks;
3. ``probe`` (only with ``--variants``) — ``sn29 grow --probe``'s bounded trainability probe
   (:func:`~sn29_growth.growth.streaming_verify.probe_checkpoint`) with its up-front memory estimate.

    python scripts/bench_verify.py --size small            # ≈0.3B → ≈0.9B (untied, vocab 32000)
    python scripts/bench_verify.py --size llama-3.2-1b     # Llama-3.2-1B shape → ≈3.2B (tied, 128k vocab)
    python scripts/bench_verify.py --size tiny             # seconds, for a quick check of the script

Prints JSON (and writes it with ``--json FILE``): per variant wall time, peak RSS, the RSS after imports,
and the verification itself (both variants must report the same losses), plus the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import finish, run_child

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (source, target); shape = hidden, intermediate, layers, heads, kv heads, vocab, tied
SIZES = {
    "tiny": ((256, 704, 4, 4, 2, 4096, False), (384, 1056, 6, 6, 3, 4096, False)),
    "small": ((1024, 2816, 20, 16, 4, 32000, False), (1536, 4224, 32, 24, 6, 32000, False)),
    "llama-3.2-1b": (None, (3072, 8192, 28, 48, 12, 128256, True)),
}
LLAMA_32_1B = ROOT / "tests" / "data" / "configs" / "llama-3.2-1b.json"
FLAGS = (
    "--hidden-size",
    "--intermediate-size",
    "--num-layers",
    "--num-attention-heads",
    "--num-key-value-heads",
)

RUNNER = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import torch
if args["threads"]:
    torch.set_num_threads(args["threads"])
from sn29_growth.growth.resolve import resolve_plan
from sn29_growth.growth.spec import GrowthSpec
from sn29_growth.growth.streaming_verify import layer_map, verify_streaming
from sn29_growth.growth.verify import verify_in_memory
from sn29_growth.checkpoint import read_model_config
recipe = json.load(open(args["grown"] + "/growth_recipe.json"))
plan = resolve_plan(GrowthSpec.from_dict(recipe["spec"]), read_model_config(args["src"]))
kw = dict(dtypes=args["dtypes"], samples=args["samples"], max_len=args["max_len"],
          exact_storage=plan.exact_storage)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if args["variant"] == "probe":
    from sn29_growth.growth.streaming_verify import check_probe_memory, probe_checkpoint
    from sn29_growth.growth.verify import corpus_sequences, tokenizer_for
    need = check_probe_memory(plan)
    seqs = corpus_sequences(tokenizer_for(args["src"]), split="train", samples=4, max_len=128)
    p = probe_checkpoint(args["grown"], plan, seqs)
    out = {"probe": dict(p.to_dict(), stuck=len(p.stuck), summary=p.summary), "estimate_bytes": need}
elif args["variant"] == "in-memory":
    out = {"verification": verify_in_memory(args["src"], args["grown"], **kw).to_dict()}
else:
    v = verify_streaming(args["src"], args["grown"], layers=layer_map(plan), device=args["device"], **kw)
    out = {"verification": v.to_dict()}
seconds = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": round(seconds, 2), "rss_after_imports_mib": round(base / 1024, 1),
                              **out}))
"""


def shape_config(shape) -> dict:
    """A Llama config of ``(hidden, intermediate, layers, heads, kv_heads, vocab, tied)``."""
    from sn29_growth.growth.synthetic import llama_config

    hidden, inter, layers, heads, kv, vocab, tied = shape
    return llama_config(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
    )


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh process: wall time, peak RSS (``wait4``) and its ``RESULT`` line."""
    result, code, stdout, stderr = run_child(cmd)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if code or line is None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        result["error"] = f"exit {code}: {last}"
        return result
    result.update(json.loads(line.removeprefix("RESULT ")))
    return result


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--samples", type=int, default=8, help="corpus samples (sn29 grow --verify: 8)")
    parser.add_argument(
        "--max-len", type=int, default=256, help="tokens per sample (sn29 grow --verify: 256)"
    )
    parser.add_argument(
        "--dtypes", default="float32,bfloat16", help="as sn29 grow: fp32 and the output dtype"
    )
    parser.add_argument(
        "--variants",
        default="in-memory,streaming",
        help="any of in-memory, streaming, probe (sn29 grow --probe's bounded trainability probe)",
    )
    parser.add_argument("--device", default="cpu", help="where the streaming blocks run (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each child (0: default)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    # The parent stays small (no torch): a forked child's peak RSS starts from its parent's RSS.

    from sn29_growth.arch import Shape
    from sn29_growth.growth.fit import count_params

    src_shape, dst_shape = SIZES[args.size]
    src_cfg = json.loads(LLAMA_32_1B.read_text()) if src_shape is None else shape_config(src_shape)
    src_cfg.pop("torch_dtype", None)
    dst_cfg = shape_config(dst_shape)
    params = [count_params(Shape.from_config(c)) for c in (src_cfg, dst_cfg)]
    work = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=args.workdir))
    results: dict = {"size": args.size, "parameters": {"source": params[0], "target": params[1]}}
    try:
        print(f"source {params[0]:,} parameters -> target {params[1]:,} (bf16); workdir {work}", flush=True)
        src, grown = work / "src", work / "grown"
        write = (
            "import json, sys, torch; from sn29_growth.growth.synthetic import write_random_checkpoint; "
            "write_random_checkpoint(sys.argv[1], json.loads(sys.argv[2]), dtype=torch.bfloat16)"
        )
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", write, str(src), json.dumps(src_cfg)], check=True)
        grow = [sys.executable, "-m", "sn29_growth.commands.grow", str(src), str(grown)]
        for flag, value in zip(FLAGS, dst_shape[:5], strict=True):
            grow += [flag, str(value)]
        subprocess.run(grow, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(
            f"wrote source ({dir_bytes(src) / 1e9:.2f} GB) and grown ({dir_bytes(grown) / 1e9:.2f} GB) in "
            f"{time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        results["bytes"] = {"source": dir_bytes(src), "grown": dir_bytes(grown)}
        results["fp32_bytes_both_models"] = 4 * (params[0] + params[1])
        child = {
            "src": str(src),
            "grown": str(grown),
            "dtypes": args.dtypes.split(","),
            "samples": args.samples,
            "max_len": args.max_len,
            "device": args.device,
            "threads": args.threads,
        }
        for variant in args.variants.split(","):
            os.sync()
            cmd = [sys.executable, "-c", RUNNER, json.dumps(dict(child, variant=variant))]
            results[variant] = run_measured(cmd)
            shown = {k: v for k, v in results[variant].items() if k not in ("verification", "probe")}
            print(f"{variant:<10} {shown}", flush=True)
        old, new = results.get("in-memory", {}), results.get("streaming", {})
        if "peak_rss_mib" in old and "peak_rss_mib" in new and "error" not in new:
            results["ratios"] = {
                "in_memory_over_streaming_rss": round(old["peak_rss_mib"] / new["peak_rss_mib"], 2),
                "in_memory_over_streaming_time": round(old["wall_s"] / new["wall_s"], 2),
            }
            if "verification" in old:
                pairs = zip(old["verification"]["checks"], new["verification"]["checks"], strict=True)
                results["max_relative_loss_difference"] = max(
                    abs(a[k] - b[k]) / abs(a[k]) for a, b in pairs for k in ("loss_source", "loss_grown")
                )
        finish(results, "bench_verify.py", argv if argv is not None else sys.argv[1:], args.json)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
