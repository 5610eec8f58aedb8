"""The batched loss engine equals the naive batch-size-1 loop (fp32, relative 1e-4)."""

from __future__ import annotations

import math

import pytest
import torch

from sn29_growth.eval import loss as engine
from sn29_growth.eval.loss import (
    EngineSettings,
    bucket_of,
    length_sensitive_threshold,
    plan_batches,
    summed_losses,
)
from sn29_growth.lm import corpus_loss
from sn29_growth.tiny import VARIANTS, build_tiny, tiny_config

LONGROPE = dict(  # a Phi3 longrope model whose RoPE factors switch above 64 positions
    max_position_embeddings=4096,
    original_max_position_embeddings=64,
    rope_parameters={
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "short_factor": [1.0] * 8,
        "long_factor": [4.0] * 8,
        "original_max_position_embeddings": 64,
    },
)
REL = 1e-4  # fp32: batched vs unbatched matmuls differ by ~1e-7 relative; sums of ~300 terms stay far below this


@pytest.fixture(scope="module")
def sequences(corpus, tokenizer):
    """Held-out samples of many lengths (2..~500 ids) plus the short edge cases."""
    texts = [s.text for s in corpus.held_out[:8]]
    texts += [t[:n] for t, n in zip(texts[:6], (3, 17, 40, 90, 160, 300), strict=True)]
    seqs = [tuple(tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]) for t in texts]
    return seqs + [(5, 7), (9,), None]


def reference(model, seqs) -> list[float]:
    out = []
    for s in seqs:
        if s is None:
            out.append(math.inf)
        elif len(s) < 2:
            out.append(0.0)
        else:
            out.append(corpus_loss(model, [torch.tensor(s)]).summed_losses[0])
    return out


def assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if math.isinf(w) or w == 0:
            assert g == w
        else:
            assert abs(g - w) <= REL * abs(w), (g, w)


@pytest.mark.parametrize("variant", VARIANTS)
def test_engine_equals_naive_loop(variant, sequences):
    model = build_tiny(variant, seed=3, init_std=0.3)
    want = reference(model, sequences)
    for mask in (True, False):
        # small batches: several batches per bucket, with right padding inside each
        settings = EngineSettings(
            max_batch_tokens=1200, max_padding=1.0, mask_padding=mask, logits_bytes=4 * 1024 * 37
        )
        got = summed_losses(model, sequences, settings)
        assert_close(got.losses, want)
        assert any(b.padded_tokens > b.tokens for b in got.buckets)  # padding was exercised
    assert got.tokens == sum(len(s) for s in sequences if s is not None and len(s) >= 2)


def test_padding_does_not_leak_into_real_positions(sequences):
    """One short sequence batched with a long one: same loss as alone, with and without the mask."""
    model = build_tiny("llama-gqa", seed=5, init_std=0.3)
    short, long = sequences[8], sequences[0]
    assert len(short) < len(long) // 4
    alone = summed_losses(model, [short], EngineSettings()).losses[0]
    for mask in (True, False):
        settings = EngineSettings(min_bucket=1 << 12, max_padding=100.0, mask_padding=mask)
        together = summed_losses(model, [long, short], settings)
        assert together.buckets[0].sequences == 2
        assert abs(together.losses[1] - alone) <= REL * alone


def test_plan_batches_covers_everything_within_budget():
    lengths = [3, 700, 64, 65, 128, 5, 700, 1000, 33, 2, 257, 400]
    settings = EngineSettings(max_batch_tokens=1500, max_batch_size=3)
    plan = plan_batches(lengths, settings)
    seen = [i for _, batches in plan for b in batches for i in b]
    assert sorted(seen) == list(range(len(lengths)))
    buckets = [bucket for bucket, _ in plan]
    assert buckets == sorted(buckets, reverse=True)
    for bucket, batches in plan:
        for b in batches:
            padded, real = len(b) * max(lengths[i] for i in b), sum(lengths[i] for i in b)
            assert len(b) <= 3
            assert len(b) == 1 or (padded <= 1500 and padded <= 1.25 * real)
            assert all(bucket_of(lengths[i]) == bucket for i in b)
    assert [len(b) for _, batches in plan for b in batches if lengths[b[0]] == 700] == [2]  # 700+700 batched
    solo = plan_batches(lengths, settings, solo_above=300)
    assert all(len(b) == 1 for _, batches in solo for b in batches if max(lengths[i] for i in b) > 300)


def test_length_sensitive_rope_runs_long_sequences_alone():
    assert length_sensitive_threshold(tiny_config("llama-gqa")) is None
    cfg = tiny_config(
        "phi3",
        **LONGROPE,
    )
    assert length_sensitive_threshold(cfg) == 64


def test_longrope_model_equals_naive_loop(sequences):
    """Padding a short sequence past original_max_position_embeddings would switch its RoPE factors."""
    model = build_tiny(
        "phi3",
        seed=2,
        init_std=0.3,
        **LONGROPE,
    )
    seqs = [s for s in sequences if s is not None and len(s) >= 2][:14]
    assert any(len(s) <= 64 for s in seqs) and any(len(s) > 64 for s in seqs)
    got = summed_losses(
        model, seqs, EngineSettings(min_bucket=1 << 12, max_batch_tokens=1 << 16, max_padding=99.0)
    )
    assert_close(got.losses, reference(model, seqs))


def test_nan_losses_become_inf(sequences):
    model = build_tiny("llama-mha", seed=1)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    got = summed_losses(model, sequences[:3] + [(1,)], EngineSettings())
    assert got.losses[:3] == (math.inf,) * 3 and got.losses[3] == 0.0


def test_out_of_memory_splits_the_batch(sequences, monkeypatch):
    model = build_tiny("llama-tied", seed=4, init_std=0.3)
    want = summed_losses(model, sequences, EngineSettings()).losses
    real = engine._batch_losses
    sizes = []

    def flaky(model, seqs, settings):
        sizes.append(len(seqs))
        if len(seqs) > 2:
            raise torch.OutOfMemoryError("fake")
        return real(model, seqs, settings)

    monkeypatch.setattr(engine, "_batch_losses", flaky)
    got = summed_losses(model, sequences, EngineSettings(max_batch_tokens=1 << 16))
    assert max(sizes) > 2
    assert_close(got.losses, want)


def test_stats_and_device_defaults(sequences):
    model = build_tiny("llama-gqa", seed=0)
    got = summed_losses(model, sequences, EngineSettings())
    assert got.seconds > 0 and got.tokens_per_s > 0
    assert sum(b.sequences for b in got.buckets) == sum(1 for s in sequences if s is not None and len(s) >= 2)
    assert all(b.peak_bytes is None or b.peak_bytes > 0 for b in got.buckets)
    assert (
        EngineSettings.for_device("cuda").max_batch_tokens > EngineSettings.for_device("cpu").max_batch_tokens
    )
    with pytest.raises(ValueError, match="max_batch_tokens"):
        EngineSettings(max_batch_tokens=0)
    with pytest.raises(ValueError, match="max_padding"):
        EngineSettings(max_padding=-1)


def test_accelerate_dispatched_model(save_tiny, sequences):
    """Models placed by accelerate (big-model inference: weights offloaded, moved in by hooks) run unchanged."""
    import accelerate

    from sn29_growth.loading import load_model

    path = save_tiny(build_tiny("llama-gqa", seed=6, init_std=0.3))
    plain = load_model(path)
    seqs = sequences[:6]
    want = reference(plain, seqs)
    auto = load_model(path, device=None, device_map="auto")
    assert_close(summed_losses(auto, seqs, EngineSettings()).losses, want)
    offloaded = load_model(path)
    accelerate.cpu_offload(offloaded, execution_device=torch.device("cpu"))
    assert offloaded.get_input_embeddings().weight.device.type == "meta"
    assert_close(summed_losses(offloaded, seqs, EngineSettings()).losses, want)


@pytest.mark.slow
def test_compiled_body_equals_naive_loop(sequences):
    model = build_tiny("llama-gqa", seed=7, init_std=0.3)
    got = summed_losses(model, sequences, EngineSettings(compile=True))
    assert_close(got.losses, reference(model, sequences))
    assert "_sn29_compiled_body" not in dict(model.named_modules())
