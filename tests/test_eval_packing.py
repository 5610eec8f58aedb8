"""Padding-free packing equals the batch-size-1 loop (fp32, relative 1e-4), on Llama and Phi3."""

from __future__ import annotations

import math

import pytest
import torch
from test_eval_loss import LONGROPE, assert_close, reference

from sn29_growth.eval import loss as engine
from sn29_growth.eval.loss import EngineSettings, plan_packed, summed_losses
from sn29_growth.eval.packing import batch_rows, build_batch, pack_rows
from sn29_growth.tiny import VARIANTS, build_tiny


@pytest.fixture(scope="module")
def sequences(corpus, tokenizer):
    """Held-out samples of very different lengths, one far longer than the rest, and the edge cases:
    two-id, single-id and id-less (+inf) samples."""
    texts = [s.text for s in corpus.held_out[:8]]
    texts += [t[:n] for t, n in zip(texts[:6], (3, 17, 40, 90, 160, 300), strict=True)]
    texts.append("\n\n".join(s.text for s in corpus.held_out[8:14]))  # the long one
    seqs = [tuple(tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]) for t in texts]
    return seqs + [(5, 7), (9,), None, (11, 3, 5)]


def packed(**overrides) -> EngineSettings:
    base = dict(
        packing=True, row_tokens=600, max_batch_tokens=1800, max_padding=1.0, logits_bytes=4 * 1024 * 37
    )
    base.update(overrides)
    return EngineSettings(**base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_equals_naive_loop(variant, sequences):
    model = build_tiny(variant, seed=3, init_std=0.3)
    want = reference(model, sequences)
    got = summed_losses(model, sequences, packed())
    assert_close(got.losses, want)
    assert got.tokens == sum(len(s) for s in sequences if s is not None and len(s) >= 2)
    lengths = [len(s) for s in sequences if s is not None and len(s) >= 2]
    assert max(lengths) > 600  # one sample is longer than a row: it fills a row alone
    plan = plan_packed(lengths, packed())
    assert any(len(row) > 1 for _, batches in plan for batch in batches for row in batch)  # packing happened


def test_packed_norm_divisor_model(sequences):
    """SN29's norm_divisor models (our patched classes) pack the same way."""
    for variant in ("llama-gqa", "phi3"):
        model = build_tiny(variant, seed=8, init_std=0.3, norm_divisor=40)
        assert model.config.norm_divisor == 40
        assert_close(summed_losses(model, sequences, packed()).losses, reference(model, sequences))
    assert_close(summed_losses(model, sequences, packed()).losses, reference(model, sequences))


def test_packed_rows_in_every_layout(sequences):
    """Many rows per batch, one row per batch, a row per sample: the same losses."""
    model = build_tiny("llama-gqa", seed=5, init_std=0.3)
    want = reference(model, sequences)
    for settings in (
        packed(row_tokens=4096, max_batch_tokens=1 << 16),
        packed(row_tokens=64, max_batch_tokens=256, max_batch_size=2),
        packed(row_tokens=1),
    ):
        assert_close(summed_losses(model, sequences, settings).losses, want)


def test_packed_longrope_keeps_short_rope(sequences):
    """A longrope model: samples above original_max_position_embeddings run alone, the rest pack into rows
    that never reach it (padding included), so no sample switches to the long factors."""
    model = build_tiny("phi3", seed=2, init_std=0.3, **LONGROPE)
    seqs = [s for s in sequences if s is not None and len(s) >= 2]
    assert any(len(s) <= 64 for s in seqs) and any(len(s) > 64 for s in seqs)
    settings = packed(row_tokens=4096, max_batch_tokens=1 << 16, max_padding=99.0)
    plan = plan_packed([len(s) for s in seqs], settings, solo_above=64)
    for _, batches in plan:
        for batch in batches:
            width = max(sum(len(seqs[i]) for i in row) for row in batch)
            assert width <= 64 or (len(batch) == 1 and len(batch[0]) == 1)
    assert_close(summed_losses(model, seqs, settings).losses, reference(model, seqs))


def test_packed_out_of_memory_splits_rows(sequences, monkeypatch):
    model = build_tiny("llama-tied", seed=4, init_std=0.3)
    want = reference(model, sequences)
    real = engine._packed_losses
    sizes = []

    def flaky(model, rows, settings):
        sizes.append(len(rows))
        if len(rows) > 1:
            raise torch.OutOfMemoryError("fake")
        return real(model, rows, settings)

    monkeypatch.setattr(engine, "_packed_losses", flaky)
    got = summed_losses(model, sequences, packed(row_tokens=128, max_batch_tokens=1 << 16))
    assert max(sizes) > 1
    assert_close(got.losses, want)


def test_pack_rows_first_fit_decreasing():
    lengths = [300, 50, 700, 200, 100, 250, 3]
    rows = pack_rows(lengths, 512)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    used = [sum(lengths[i] for i in row) for row in rows]
    assert used == sorted(used, reverse=True)
    assert all(u <= 512 or len(row) == 1 for u, row in zip(used, rows, strict=True))
    assert rows[0] == [2]  # 700 > 512 fills a row alone
    assert len(rows) == 3  # 300+200 | 250+100+50+3 (first fit decreasing)
    with pytest.raises(ValueError, match="row_tokens"):
        pack_rows([1], 0)
    batches = batch_rows(rows, lengths, max_batch_tokens=1024, max_batch_size=8, max_padding=1.0)
    assert [len(b) for b in batches] == [1, 2]  # 700 alone (1024 // 700 = 1), then 500 + 403


def test_build_batch_layout():
    batch = build_batch([[(1, 2, 3), (4, 5)], [(6, 7)]])
    assert batch.ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert batch.positions.tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]  # the tail is a document of its own
    assert batch.owner.tolist() == [[0, 0, 0, 1, 1], [2, 2, -1, -1, -1]]
    assert batch.predicts.tolist() == [[True, True, False, True, False], [True, False, False, False, False]]
    assert batch.targets[batch.predicts].tolist() == [2, 3, 5, 7]
    assert batch.samples == 3 and batch.packed
    single = build_batch([[(1, 2, 3)], [(4, 5)]])
    assert not single.packed
    assert single.positions.tolist() == [[0, 1, 2], [0, 1, 2]]  # one sample per row: plain causal batch


def test_settings_validation():
    with pytest.raises(ValueError, match="row_tokens"):
        EngineSettings(row_tokens=0)
    with pytest.raises(ValueError, match="packing"):
        EngineSettings(packing=1)
    with pytest.raises(ValueError, match="attention"):
        EngineSettings(attention="flash")


def test_attention_setting_is_restored(sequences):
    model = build_tiny("llama-gqa", seed=9, init_std=0.3)
    want = reference(model, sequences[:6])
    got = summed_losses(model, sequences[:6], packed(attention="eager"))
    assert_close(got.losses, want)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_packed_flex_attention_equals_naive_loop(sequences):
    """flex_attention's document BlockMask (compiled; ~20 s on a CPU)."""
    model = build_tiny("llama-gqa", seed=7, init_std=0.3)
    want = reference(model, sequences)
    got = summed_losses(model, sequences, packed(attention="flex_attention"))
    assert_close(got.losses, want)
    assert not any(math.isinf(x) for x, w in zip(got.losses, want, strict=True) if math.isfinite(w))


@pytest.mark.slow
def test_packed_compiled_body_equals_naive_loop(sequences):
    model = build_tiny("phi3", seed=7, init_std=0.3)
    got = summed_losses(model, sequences, packed(compile=True))
    assert_close(got.losses, reference(model, sequences))


def test_packed_sliding_window_phi3(sequences):
    """Phi-3-mini's config has a sliding window (2047): the window counts positions inside each sample."""
    model = build_tiny("phi3", seed=6, init_std=0.3, sliding_window=32)
    assert model.config.sliding_window == 32
    assert_close(summed_losses(model, sequences, packed()).losses, reference(model, sequences))


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["sdpa", "flex_attention"])
def test_packed_on_cuda_equals_naive_loop(sequences, attention):
    """The same packed path on a GPU (fp32, so the CPU tolerance applies), SDPA and flex document masks."""
    model = build_tiny("llama-gqa", seed=3, init_std=0.3).cuda()
    want = reference(model, sequences)
    got = summed_losses(model, sequences, packed(attention=attention))
    assert_close(got.losses, want)
