"""Random Llama/Phi3 checkpoints of any size, written shard by shard (for benchmarks and memory tests).

No transformers model is instantiated: each tensor is drawn from a seeded generator and streamed into
size-capped shards, so writing a 1B-parameter checkpoint needs memory for one tensor only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sn29_growth.arch import Shape, architecture_for
from sn29_growth.checkpoint import write_config
from sn29_growth.growth import ops
from sn29_growth.io import PlannedTensor, ShardWriter


def llama_config(**overrides: Any) -> dict[str, Any]:
    """A Llama ``config.json`` dict (head_dim pinned) with keyword overrides."""
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1024,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": 0,
    }
    cfg.update(overrides)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg


def write_random_checkpoint(
    directory: str | os.PathLike,
    config: dict[str, Any],
    *,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_bytes: int = 1 << 30,
    seed: int = 0,
) -> Path:
    """Write ``config.json`` and random weights (std ``initializer_range``, norms 1) into a new directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=False)
    shape = Shape.from_config(config)
    arch = architecture_for(shape.model_type)
    shapes = arch.expected_shapes(shape)
    writer = ShardWriter(directory, [PlannedTensor(n, dtype, s) for n, s in shapes.items()], max_shard_bytes)
    for name, s in shapes.items():
        entry, _ = arch.lookup(name)
        if entry.kind == "norm":
            t = torch.ones(s, dtype=dtype)
        elif entry.kind == "bias":
            t = torch.zeros(s, dtype=dtype)
        else:
            t = torch.randn(s, generator=ops.generator(seed, name)).mul_(shape.initializer_range).to(dtype)
        writer.write(name, t)
        del t
    writer.close()
    write_config(directory, dict(config, dtype=str(dtype).removeprefix("torch.")))
    return directory
