"""Forward FLOPs of scoring samples with a Llama/Phi3-shaped model, and model FLOP utilisation (MFU).

Counted work, the same for every way of computing the losses (so MFU ratios equal throughput ratios):

- matrix products: 2 FLOPs per weight per token — attention projections and the MLP for every token,
  ``lm_head`` for the positions that predict a next id (``n - 1`` of a sample of ``n`` ids); embeddings,
  norms, biases and softmax are not counted;
- attention: the causal part only, ``QKᵀ`` and ``AV`` at 2 FLOPs per multiply-add each, over
  ``n (n + 1) / 2`` query-key pairs per head and layer — work a kernel spends on masked-out blocks
  (padding, other samples of a packed row, the upper triangle) is not useful work and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable

H100_H200_BF16_DENSE = 989e12  # FLOP/s: NVIDIA H100/H200 SXM dense bf16 tensor-core peak


def _shape(config) -> tuple[int, int, int, int, int, int, int]:
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return (
        hidden,
        int(config.intermediate_size),
        int(config.num_hidden_layers),
        heads,
        kv,
        head_dim,
        int(config.vocab_size),
    )


def body_matmul_params(config) -> int:
    """Weights of the decoder's matrix products (q, k, v, o and the gated MLP of every layer)."""
    hidden, inter, layers, heads, kv, head_dim, _ = _shape(config)
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * hidden * inter
    return layers * (attention + mlp)


def head_params(config) -> int:
    hidden, *_, vocab = _shape(config)
    return hidden * vocab


def matmul_params(config) -> int:
    """All weights used in matrix products: the decoder's plus ``lm_head`` (tied or not)."""
    return body_matmul_params(config) + head_params(config)


def attention_flops(config, length: int) -> int:
    """Causal attention FLOPs (``QKᵀ`` + ``AV``) of one sample of ``length`` ids, all layers."""
    _, _, layers, heads, _, head_dim, _ = _shape(config)
    pairs = length * (length + 1) // 2
    return layers * heads * head_dim * pairs * 4


def forward_flops(config, lengths: Iterable[int]) -> int:
    """Useful forward FLOPs of scoring samples of these lengths (see the module docstring)."""
    body, head = body_matmul_params(config), head_params(config)
    total = 0
    for n in lengths:
        if n < 2:
            continue
        total += 2 * body * n + 2 * head * (n - 1) + attention_flops(config, n)
    return total


def mfu(flops: float, seconds: float, peak: float = H100_H200_BF16_DENSE) -> float:
    """Model FLOP utilisation: achieved FLOP/s over the device's peak."""
    if seconds <= 0 or peak <= 0:
        raise ValueError(f"seconds and peak must be > 0, got {seconds!r} and {peak!r}")
    return flops / seconds / peak
