"""Options that change how a step runs, not what it computes: FSDP2 in one process and compiled layers.

FSDP2 in one process is the code path of N processes (process group, sharded parameters as DTensors,
reduce-scatter of gradients, gathered checkpoints) with nothing to reduce: the losses equal the plain
run's up to float32 summation order. A compiled decoder layer computes the same function with fused
kernels: losses agree to float32 rounding, amplified a little by 4 steps of training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_train_loop import records, small_config

from sn29_growth.tiny import build_tiny
from sn29_growth.train import TrainConfig, train
from sn29_growth.train.distributed import init_distributed, shutdown

LOSS_TOL = 1e-5  # nats, as between 2 processes and 1 (tests/test_train_distributed.py)


@pytest.fixture
def base(save_tiny):
    return save_tiny(build_tiny("llama-gqa", seed=0), "base")


def test_fsdp_in_one_process_matches_the_plain_run(base, tmp_path):
    config = small_config(steps=4, eval_every=2, checkpoint=small_config().checkpoint)
    plain = train(base, tmp_path / "plain", config)
    sharded = train(base, tmp_path / "fsdp", TrainConfig(**{**config.__dict__, "fsdp": True}))
    assert sharded.world_size == 1 and sharded.complete
    losses = [r["loss"] for r in records(tmp_path / "fsdp", "train")]
    assert losses == pytest.approx([r["loss"] for r in records(tmp_path / "plain", "train")], abs=LOSS_TOL)
    assert sharded.final_val_loss == pytest.approx(plain.final_val_loss, abs=LOSS_TOL)
    assert not torch.distributed.is_initialized()  # the group it started is torn down


def test_fsdp_context_uses_gloo_on_cpu():
    ctx = init_distributed("cpu", fsdp=True)
    try:
        assert ctx.distributed and ctx.backend == "gloo" and ctx.world_size == 1 and ctx.owns_group
    finally:
        shutdown(ctx)
    plain = init_distributed("cpu")
    assert not plain.distributed and plain.backend is None


@pytest.mark.slow  # compiling takes minutes on a shared CPU
def test_compiled_layers_give_the_same_losses(base, tmp_path):
    config = small_config(steps=3)
    eager = train(base, tmp_path / "eager", config)
    compiled = train(base, tmp_path / "compiled", TrainConfig(**{**config.__dict__, "compile": "on"}))
    losses = [r["loss"] for r in records(tmp_path / "compiled", "train")]
    assert losses == pytest.approx([r["loss"] for r in records(tmp_path / "eager", "train")], abs=1e-4)
    assert compiled.final_train_loss == pytest.approx(eager.final_train_loss, abs=1e-4)


def test_compile_auto_is_off():
    from sn29_growth.train.loop import compile_enabled

    for device in ("cpu", "cuda"):
        assert not compile_enabled(TrainConfig(), torch.device(device))
    assert compile_enabled(TrainConfig(compile="on"), torch.device("cpu"))
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")


@pytest.mark.gpu
def test_fsdp_under_torchrun_on_one_gpu_matches_the_plain_run(base, tmp_path):
    """torchrun --nproc_per_node 1 --fsdp: NCCL, FSDP2 over a 1-GPU mesh; bf16 autocast in both runs."""
    out = tmp_path / "fsdp"
    flags = ["--steps", "6", "--batch-size", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "2",
             "--eval-every", "0", "--save-every", "0", "--device", "cuda", "--no-progress", "--json"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "sn29_growth.train", str(base), str(out), *flags, "--fsdp"]  # fmt: skip
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 1 and result["device"].startswith("cuda")
    plain = train(base, tmp_path / "plain", small_config(device="cuda"))
    assert plain.compute_dtype == "bfloat16"
    losses = [r["loss"] for r in records(out, "train")]
    assert losses == pytest.approx([r["loss"] for r in records(tmp_path / "plain", "train")], abs=2e-3)


def test_cpu_offload_needs_fsdp_and_keeps_the_losses(base, tmp_path):
    config = small_config(steps=3)
    with pytest.raises(ValueError, match="cpu_offload: needs FSDP2"):
        train(base, tmp_path / "refused", TrainConfig(**{**config.__dict__, "cpu_offload": True}))
    plain = train(base, tmp_path / "plain", config)
    offload = train(
        base, tmp_path / "offload", TrainConfig(**{**config.__dict__, "fsdp": True, "cpu_offload": True})
    )
    assert offload.final_train_loss == pytest.approx(plain.final_train_loss, abs=LOSS_TOL)
