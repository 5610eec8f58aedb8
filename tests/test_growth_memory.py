"""Streaming is a memory guarantee: peak RSS grows with the shard size, not with the model size."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from sn29_growth.growth.synthetic import llama_config, write_random_checkpoint

MiB = 1 << 20
SHARD = 16 * MiB

# One process grows a tiny checkpoint (its max RSS is the constant: interpreter, torch, our code) and
# then a multi-shard one; the growth of max RSS between the two is what the model size costs.
_RUNNER = """
import json, resource, sys
from sn29_growth.commands.grow import main
out = []
for src, dst, *flags in json.loads(sys.argv[1]):
    rc = main([src, dst, *flags])
    out.append({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
print("RESULT " + json.dumps(out))
"""


def test_peak_rss_is_bounded_by_shards_not_model_size(tmp_path):
    big_cfg = llama_config(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=4096,
    )
    small = write_random_checkpoint(
        tmp_path / "small",
        llama_config(hidden_size=64, num_attention_heads=4, intermediate_size=192),
        dtype=torch.float32,
    )
    big = write_random_checkpoint(tmp_path / "big", big_cfg, dtype=torch.float32, max_shard_bytes=SHARD)
    flags = ["--max-shard-size", str(SHARD)]
    jobs = [
        [
            str(small),
            str(tmp_path / "small-out"),
            "--hidden-size",
            "96",
            "--intermediate-size",
            "288",
            *flags,
        ],
        [
            str(big),
            str(tmp_path / "big-out"),
            "--hidden-size",
            "768",
            "--num-attention-heads",
            "12",
            "--num-key-value-heads",
            "12",
            "--intermediate-size",
            "2304",
            *flags,
        ],
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(jobs)], capture_output=True, text=True, timeout=300
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-2000:]
    (base, peak) = json.loads(line.removeprefix("RESULT "))
    assert base["rc"] == 0 and peak["rc"] == 0, proc.stderr[-2000:]

    in_bytes = sum(p.stat().st_size for p in big.glob("*.safetensors"))
    out_files = list((tmp_path / "big-out").glob("*.safetensors"))
    out_bytes = sum(p.stat().st_size for p in out_files)
    assert len(list(big.glob("*.safetensors"))) >= 8 and len(out_files) >= 16
    assert all(p.stat().st_size <= SHARD + 8 * MiB for p in out_files)  # size-capped output shards
    largest_fp32 = 4096 * 768 * 4  # the grown embedding, computed in fp32
    allowance = 2 * SHARD + 3 * largest_fp32 + 32 * MiB
    grown_by = (peak["maxrss_kib"] - base["maxrss_kib"]) * 1024
    assert allowance < in_bytes < out_bytes  # the cap is far below what holding the model would need
    assert grown_by <= allowance, (
        f"peak RSS grew by {grown_by / MiB:.0f} MiB (allowed {allowance / MiB:.0f} MiB)"
    )
