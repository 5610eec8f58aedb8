"""CPU ratios of the validator pipeline: concurrent vs one-thread hashing, direct vs from_pretrained loading.

Hashing: ``--hash-files`` files of ``--hash-mib`` MiB of random bytes in a temporary folder (deleted at
the end), read once to sit in the page cache, then hashed by a one-thread ``hashlib`` loop and by
:func:`sn29_growth.digest.sha256_files`; best of ``--repeats``, digests compared.

Loading: a random bf16 Llama checkpoint of ``--hidden``/``--layers``/``--vocab`` (a few hundred MB) is
loaded in a fresh process per run by ``load_model(direct=True)`` (safetensors straight to the device) and
by ``load_model(direct=False)`` (``from_pretrained``'s default path), in bf16 and fp32: load seconds
(imports excluded), the RSS the load added, and the child's peak RSS.

    .venv/bin/python scripts/bench_pipeline.py
    .venv/bin/python scripts/bench_pipeline.py --hash-files 4 --hash-mib 256 --hidden 1024 --layers 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hash-files", type=int, default=4, help="files to hash (default 4)")
    p.add_argument("--hash-mib", type=int, default=256, help="MiB per file (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant; the best counts")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--shard-mib", type=int, default=128, help="shard size of the load checkpoint")
    p.add_argument("--skip-hash", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child-load", nargs=3, metavar=("PATH", "MODE", "DTYPE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_load(path: str, mode: str, dtype_name: str) -> None:
    import torch
    from bench_gpu_pipeline import PeakRss, timed_load, warm_imports

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    warm_imports(Path(path))
    before = PeakRss.now_mib()
    model, seconds, peak = timed_load(Path(path), "cpu", direct=mode == "direct", dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"load_s": seconds, "added_rss_mib": peak - before, "parameters": n}))


def bench_hash(args, tmp: Path) -> dict:
    from bench_gpu_pipeline import time_hashes

    paths = []
    for i in range(args.hash_files):
        p = tmp / f"shard-{i}.safetensors"
        with open(p, "wb") as f:
            for _ in range(args.hash_mib // 16):
                f.write(os.urandom(16 << 20))
        paths.append(p)
    try:
        time_hashes(paths[:1])  # page cache warm for every file below
        for p in paths:
            p.read_bytes()
        base, fast = time_hashes(paths, repeats=args.repeats)
    finally:
        for p in paths:
            p.unlink()
    return {
        "files": args.hash_files,
        "mib_each": args.hash_mib,
        "one_thread_s": round(base, 3),
        "concurrent_s": round(fast, 3),
        "speedup": round(base / fast, 2),
        "one_thread_gb_s": round(args.hash_files * args.hash_mib * 2**20 / base / 1e9, 2),
        "concurrent_gb_s": round(args.hash_files * args.hash_mib * 2**20 / fast / 1e9, 2),
    }


def bench_load(args, tmp: Path) -> dict:
    from bench_gpu_pipeline import write_snapshot
    from benchlib import run_child

    from sn29_growth.growth.synthetic import llama_config

    heads = max(1, args.hidden // 64)
    config = llama_config(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=args.vocab,
    )
    snap = write_snapshot(tmp, config, device="cpu", shard_bytes=args.shard_mib << 20)
    size = sum(p.stat().st_size for p in snap.iterdir())
    out: dict = {"checkpoint_mb": round(size / 1e6, 1), "shards": len(list(snap.glob("*.safetensors")))}
    for dtype in ("bf16", "fp32"):
        runs: dict[str, dict] = {}
        for _ in range(args.repeats):
            for mode in ("stock", "direct"):
                cmd = [sys.executable, __file__, "--child-load", str(snap), mode, dtype]
                measured, code, stdout, stderr = run_child(cmd)
                if code != 0:
                    raise RuntimeError(f"{mode} {dtype} load failed: {stderr[-2000:]}")
                got = json.loads(stdout.strip().splitlines()[-1])
                best = runs.get(mode)
                if best is None or got["load_s"] < best["load_s"]:
                    runs[mode] = {**got, "child_peak_rss_mib": measured["peak_rss_mib"]}
        s, d = runs["stock"], runs["direct"]
        out["parameters"] = d["parameters"]
        out[dtype] = {
            "from_pretrained": {k: round(v, 3) for k, v in s.items() if k != "parameters"},
            "direct": {k: round(v, 3) for k, v in d.items() if k != "parameters"},
            "time_ratio": round(s["load_s"] / d["load_s"], 2),
            "added_rss_ratio": round(s["added_rss_mib"] / max(d["added_rss_mib"], 1.0), 2),
            "peak_rss_ratio": round(s["child_peak_rss_mib"] / d["child_peak_rss_mib"], 2),
        }
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_load:
        child_load(*args.child_load)
        return 0
    from benchlib import finish

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="sn29-bench-pipeline-", dir="/tmp") as tmp:
        if not args.skip_hash:
            results["hash"] = bench_hash(args, Path(tmp))
        if not args.skip_load:
            results["load"] = bench_load(args, Path(tmp))
    finish(results, "bench_pipeline.py", sys.argv[1:] if argv is None else argv, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
