"""Bytes that one training forward keeps for backward, per token and decoder layer (docs/memory-plan.md).

    .venv/bin/python scripts/bench_activation_memory.py                     # the four fits of the plan
    .venv/bin/python scripts/bench_activation_memory.py --shape 512,1792,8,2 --seq-len 256

A small Llama (fp32 master weights, bf16 autocast, SDPA, as ``sn29 train`` runs) does one forward and
the loss; a saved-tensors hook adds up the distinct storages autograd keeps (parameters excluded). Two
depths (2 and 4 layers) and two sequence lengths separate what grows per token and layer, what is fixed
per layer (the bf16 copies of the weights autocast keeps for backward) and what lies outside the layers
(logits, loss). With ``--checkpointing`` each layer keeps only its input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn29_growth.tiny import tiny_config  # noqa: E402

SHAPES = ["512,1024,8,2", "512,1792,8,2", "512,1024,8,4", "256,1024,4,1"]  # hidden, intermediate, heads, kv


def saved_bytes(
    layers: int, hidden: int, inter: int, heads: int, kv: int, seq_len: int, checkpointing: bool
) -> int:
    from transformers import AutoModelForCausalLM

    vocab = 4000
    config = tiny_config(
        "llama-gqa",
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        vocab_size=vocab,
        max_position_embeddings=max(4096, seq_len),
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    ids = torch.randint(vocab, (1, seq_len + 1), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids[:, :-1]).logits
        torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), ids[:, 1:].reshape(-1))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


def per_token_per_layer(shape: str, seq_len: int, checkpointing: bool) -> dict:
    hidden, inter, heads, kv = (int(x) for x in shape.split(","))
    kv_dim = kv * hidden // heads
    layer_params = 2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * inter
    two, four = (saved_bytes(n, hidden, inter, heads, kv, seq_len, checkpointing) for n in (2, 4))
    per_layer = (four - two) / 2
    weights = 0 if checkpointing else 2 * layer_params  # bf16 weight copies, per layer, any seq_len
    return {
        "shape": dict(hidden=hidden, intermediate=inter, heads=heads, kv_dim=kv_dim),
        "seq_len": seq_len,
        "checkpointing": checkpointing,
        "bytes_per_token_per_layer": (per_layer - weights) / seq_len,
        "fit_30h_8i_4kv": 4 * hidden if checkpointing else 30 * hidden + 8 * inter + 4 * kv_dim,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", action="append", default=None, help="hidden,intermediate,heads,kv_heads")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--checkpointing", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for shape in args.shape or SHAPES:
        print(json.dumps(per_token_per_layer(shape, args.seq_len, args.checkpointing)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
