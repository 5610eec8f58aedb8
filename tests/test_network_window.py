"""Phi3's sliding window scores as the network's flash attention applies it: query q attends keys
q - w ... q (w + 1 keys), not transformers 5's w keys. Checked against a forward with an explicit 4D mask
built here, for every CPU kernel and both loss engines, at the boundaries (w, w + 1, w + 2 tokens)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.loss import EngineSettings, plan_packed, summed_losses
from sn29_growth.loading import load_model
from sn29_growth.network.config import as_network_reads, scoring_sliding_window
from sn29_growth.tiny import VOCAB_SIZE, build_tiny

W = 6
LENGTHS = (2, W - 1, W, W + 1, W + 2, 2 * W + 1, 5 * W, 9)
CONFIGS = sorted((Path(__file__).parent / "data" / "configs").glob("*.json"))


def network_rule(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """flash-attn's causal ``window_size=(W, W)``, as transformers 4.44's Phi3 applies it."""
    return (k <= q) & (k >= q - W)


def v5_rule(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """transformers 5's sliding window of W keys."""
    return (k <= q) & (k > q - W)


def masked_losses(model, sequences, rule) -> list[float]:
    """Summed CE per sequence, one at a time, with the attention pattern ``rule(q, k)`` as a 4D mask
    (the model's config carries no window: the mask alone decides what each query sees)."""
    assert model.config.sliding_window is None
    out = []
    with torch.no_grad():
        for seq in sequences:
            n = len(seq)
            pos = torch.arange(n)
            keep = rule(pos[:, None], pos[None, :])
            mask = torch.zeros(n, n).masked_fill(~keep, torch.finfo(torch.float32).min)[None, None]
            ids = torch.tensor([seq])
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0].float()
            out.append(float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum")))
    return out


def close(a, b, tol=1e-5) -> bool:
    return all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def sequences():
    gen = torch.Generator().manual_seed(11)
    return [tuple(torch.randint(1, VOCAB_SIZE, (n,), generator=gen).tolist()) for n in LENGTHS]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("phi3-window") / "model"
    save_model(build_tiny("phi3", seed=4, init_std=0.3, sliding_window=W), path)
    return path


@pytest.fixture(scope="module")
def expected(sequences):
    """Losses under the network's rule and under transformers 5's, from a window-free copy of the model."""
    plain = build_tiny("phi3", seed=4, init_std=0.3)
    plain.set_attn_implementation("eager")
    return masked_losses(plain, sequences, network_rule), masked_losses(plain, sequences, v5_rule)


ENGINES = {
    "padded": EngineSettings(max_batch_tokens=256, max_padding=10.0),
    "padded-unmasked": EngineSettings(max_batch_tokens=256, max_padding=10.0, mask_padding=False),
    "batch-1": EngineSettings(max_batch_size=1),
    "packed": EngineSettings(packing=True, row_tokens=40, max_batch_tokens=120, max_padding=10.0),
    "packed-one-row": EngineSettings(packing=True, row_tokens=4096, max_batch_tokens=4096),
}


def test_reference_rules_differ_exactly_past_the_window(expected):
    """The rules differ for queries q >= W; the last position predicts nothing, so a sample of W + 1 ids
    scores the same under both and every longer one differs."""
    network, v5 = expected
    for n, a, b in zip(LENGTHS, network, v5, strict=True):
        if n <= W + 1:
            assert a == pytest.approx(b, rel=1e-6), n
        else:
            assert abs(a - b) > 1e-3 * abs(a), n


def test_packed_settings_pack_several_samples_per_row():
    plan = plan_packed([n for n in LENGTHS], ENGINES["packed"])
    assert any(len(row) > 1 for _, batches in plan for batch in batches for row in batch)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_scoring_uses_the_networks_window(folder, sequences, expected, attention, engine):
    network, v5 = expected
    model = load_model(folder, network=True, attn_implementation=attention)
    assert model.config.sliding_window == W + 1
    got = summed_losses(model, sequences, ENGINES[engine]).losses
    assert close(got, network), (got, network)
    assert not close(got, v5)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_our_reading_keeps_transformers_5_window(folder, sequences, expected, attention):
    """What training and growth verification load: the config's window as transformers 5 applies it."""
    _, v5 = expected
    model = load_model(folder, attn_implementation=attention)
    assert model.config.sliding_window == W
    assert close(summed_losses(model, sequences, ENGINES["padded"]).losses, v5)


@pytest.mark.slow
def test_scoring_with_flex_attention(folder, sequences, expected):
    """flex_attention's document BlockMask (compiled; slow on a CPU)."""
    model = load_model(folder, network=True)
    settings = EngineSettings(packing=True, row_tokens=40, attention="flex_attention")
    assert close(summed_losses(model, sequences, settings).losses, expected[0])


@pytest.mark.gpu
def test_scoring_with_flash_attention_on_cuda(folder, sequences, expected):
    """flash_attention_2 in bf16, as the network runs it: nearer the network's rule than transformers 5's."""
    pytest.importorskip("flash_attn")
    network, v5 = expected
    model = load_model(
        folder, network=True, dtype=torch.bfloat16, device="cuda", attn_implementation="flash_attention_2"
    )
    for engine in ("batch-1", "packed"):
        got = summed_losses(model, sequences, ENGINES[engine]).losses
        for n, g, a, b in zip(LENGTHS, got, network, v5, strict=True):
            assert abs(g - a) < 2e-2 * abs(a), (engine, n)
            if n > W:
                assert abs(g - a) < abs(g - b), (engine, n)


def test_saved_config_keeps_the_published_window(folder, tmp_path):
    assert json.loads((folder / "config.json").read_text())["sliding_window"] == W
    save_model(load_model(folder), tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["sliding_window"] == W


def test_scoring_window_rule():
    assert scoring_sliding_window("phi3", 2047) == 2048
    assert scoring_sliding_window("phi3", 0) == 1  # flash-attn's (0, 0): each query sees itself only
    assert scoring_sliding_window("phi3", -1) is None  # flash-attn's "no window"
    assert scoring_sliding_window("phi3", None) is None
    assert scoring_sliding_window("llama", 2047) == 2047  # Llama has no window in either stack


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_published_configs(path):
    raw = json.loads(path.read_text())
    before = json.loads(path.read_text())
    seen = as_network_reads(raw)
    assert raw == before
    if raw["model_type"] == "phi3":
        assert raw["sliding_window"] == 2047 and seen["sliding_window"] == 2048
    else:
        assert seen.get("sliding_window") == raw.get("sliding_window")
