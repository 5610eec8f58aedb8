"""Benchmark ``sn29 grow`` (streaming) against the naive in-memory growth, with ``cp -r`` as the I/O floor.

A synthetic multi-shard Llama with random bf16 weights is written first (not timed). Then, each in its
own process so that peak RSS is per method:

1. ``sn29 grow SRC OUT`` — one source shard open, tensors grown one at a time, shards streamed out;
2. naive — ``from_pretrained`` the source, ``from_config`` the bigger model, copy the old weights into
   the leading slices, ``save_pretrained`` (the approach ``sn29 grow`` replaces; not even exact);
3. ``cp -r OUT COPY`` — copying the grown checkpoint: the least any growth must spend on I/O.

    python scripts/bench_grow.py --size full     # ≈1.03B → ≈2.6B (issue #3 shapes); ~7 GB of disk
    python scripts/bench_grow.py --size small    # a quarter-size run for quick checks

Wall time and peak RSS (``wait4`` rusage of each child) are printed with the ratios, and with
``--json FILE`` written as JSON. ``cp -r`` is timed without and with the final ``sync`` (``sn29 grow``
fsyncs every shard before renaming its output into place); with ``--repeats N`` the fastest of N runs
is reported, since the development machines are shared.
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

# name: (source shape, target shape); shape = hidden, intermediate, layers, heads, kv heads, vocab
SIZES = {
    "full": ((2048, 5632, 20, 32, 8, 32000), (3072, 8448, 24, 48, 12, 32000)),
    "small": ((1024, 2816, 10, 16, 4, 32000), (1536, 4224, 12, 24, 6, 32000)),
    "tiny": ((256, 704, 4, 4, 2, 4096), (384, 1056, 5, 6, 3, 4096)),
}

FLAGS = (
    "--hidden-size",
    "--intermediate-size",
    "--num-layers",
    "--num-attention-heads",
    "--num-key-value-heads",
)

NAIVE = r"""
import sys, torch
import transformers_llama  # noqa: F401
from transformers import AutoConfig, AutoModelForCausalLM
src, dst, shard = sys.argv[1], sys.argv[2], sys.argv[3]
hidden, inter, layers, heads, kv = map(int, sys.argv[4:9])
small = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
cfg = AutoConfig.from_pretrained(src)
cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = hidden, inter, layers
cfg.num_attention_heads, cfg.num_key_value_heads, cfg.norm_divisor = heads, kv, small.config.hidden_size
big = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
old = small.state_dict()
with torch.no_grad():
    for name, p in big.state_dict().items():
        if name in old:
            p.zero_()
            p[tuple(slice(0, s) for s in old[name].shape)] = old[name]
del small, old
big.save_pretrained(dst, max_shard_size=int(shard))
"""


def shape_config(shape) -> dict:
    hidden, inter, layers, heads, kv, vocab = shape
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hidden // heads,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def run_measured(cmd: list[str], *, sync: bool = False) -> dict:
    """Run ``cmd``; its wall time and peak RSS (from the kernel's rusage of that child).

    Dirty pages are flushed first, so every run starts from the same state; with ``sync`` the flush of
    what the command wrote is part of its time (``sn29 grow`` fsyncs its own shards).
    """
    measured, code, _, err = run_child(cmd, sync=sync)
    if code:
        raise RuntimeError(f"{cmd[2] if len(cmd) > 2 else cmd[0]}... failed ({code}):\n{err[-3000:]}")
    return measured


def best_of(runs: list[dict]) -> dict:
    """The fastest wall time (the machine is shared: slower runs also measure other jobs), the peak RSS."""
    return {
        "wall_s": min(r["wall_s"] for r in runs),
        "wall_s_runs": [r["wall_s"] for r in runs],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--shard-size", default="1GB", help="source and output shard cap (default 1GB)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method; the fastest is reported")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    # The parent stays small (no torch): a forked child's peak RSS starts from its parent's RSS.

    from sn29_growth.commands.grow import parse_bytes
    from sn29_growth.growth.fit import count_params

    src_shape, dst_shape = SIZES[args.size]
    shard = parse_bytes(args.shard_size)
    work = Path(tempfile.mkdtemp(prefix="bench-grow-", dir=args.workdir))
    try:
        from sn29_growth.arch import Shape

        src_cfg, dst_cfg = shape_config(src_shape), shape_config(dst_shape)
        params = [count_params(Shape.from_config(c)) for c in (src_cfg, dst_cfg)]
        print(f"source {params[0]:,} parameters -> target {params[1]:,} (bf16); workdir {work}", flush=True)
        t0 = time.perf_counter()
        src = work / "src"
        write = (
            "import json, sys, torch; from sn29_growth.growth.synthetic import write_random_checkpoint; "
            "write_random_checkpoint(sys.argv[1], json.loads(sys.argv[2]), dtype=torch.bfloat16, "
            "max_shard_bytes=int(sys.argv[3]))"
        )
        subprocess.run([sys.executable, "-c", write, str(src), json.dumps(src_cfg), str(shard)], check=True)
        os.sync()
        print(f"wrote source ({dir_bytes(src) / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f}s", flush=True)

        hidden, inter, layers, heads, kv, _ = dst_shape
        targets = [str(v) for v in (hidden, inter, layers, heads, kv)]
        grow_cmd = [sys.executable, "-m", "sn29_growth.commands.grow", str(src), str(work / "grown")]
        for flag, value in zip(FLAGS, targets, strict=True):
            grow_cmd += [flag, value]
        grow_cmd += ["--max-shard-size", str(shard)]
        results: dict = {"size": args.size, "parameters": {"source": params[0], "target": params[1]}}
        runs: dict[str, list[dict]] = {"stream": [], "naive": [], "copy": [], "copy_sync": []}
        for _ in range(args.repeats):
            shutil.rmtree(work / "grown", ignore_errors=True)
            runs["stream"].append(run_measured(grow_cmd))
            print(f"sn29 grow:    {runs['stream'][-1]}", flush=True)
            results["output_gb"] = round(dir_bytes(work / "grown") / 1e9, 3)
            for key, sync in (("copy", False), ("copy_sync", True)):
                shutil.rmtree(work / "copy", ignore_errors=True)
                runs[key].append(
                    run_measured(["cp", "-r", str(work / "grown"), str(work / "copy")], sync=sync)
                )
                print(f"{'cp -r + sync' if sync else 'cp -r':<13} {runs[key][-1]}", flush=True)
            shutil.rmtree(work / "copy", ignore_errors=True)
            if not args.skip_naive:
                naive_cmd = [sys.executable, "-c", NAIVE, str(src), str(work / "naive"), str(shard), *targets]
                runs["naive"].append(run_measured(naive_cmd))
                print(f"naive:        {runs['naive'][-1]}", flush=True)
                shutil.rmtree(work / "naive", ignore_errors=True)
        results.update({k: best_of(v) for k, v in runs.items() if v})
        s = results["stream"]
        ratios = {
            "stream_over_copy_time": round(s["wall_s"] / results["copy"]["wall_s"], 2),
            "stream_over_copy_sync_time": round(s["wall_s"] / results["copy_sync"]["wall_s"], 2),
        }
        if "naive" in results:
            n = results["naive"]
            ratios["naive_over_stream_time"] = round(n["wall_s"] / s["wall_s"], 2)
            ratios["naive_over_stream_rss"] = round(n["peak_rss_mib"] / s["peak_rss_mib"], 2)
        results["ratios"] = ratios
        finish(results, "bench_grow.py", argv if argv is not None else sys.argv[1:], args.json)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
