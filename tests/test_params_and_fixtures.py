"""Parameter counting on the meta device, and the offline fixtures every feature builds on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from sn29_growth.cli import main
from sn29_growth.params import count_parameters
from sn29_growth.tiny import VARIANTS, build_tiny

CONFIGS = Path(__file__).parent / "data" / "configs"


@pytest.mark.parametrize(
    "name,expected",
    [("llama-3-8b", 8_030_261_248), ("llama-3.2-1b", 1_235_814_400), ("phi-3-mini-4k", 3_821_079_552)],
)
def test_parameter_counts_of_real_shapes(name, expected, capsys):
    assert count_parameters(CONFIGS / f"{name}.json")["parameters"] == expected
    assert main(["params", str(CONFIGS / f"{name}.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_counts_match_instantiated_tiny_models(variant, save_tiny):
    model = build_tiny(variant)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count_parameters(save_tiny(model))["parameters"] == sum(unique.values())


def test_counts_other_architectures():
    cfg = {
        "model_type": "gpt2",
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "vocab_size": 100,
        "n_positions": 64,
    }
    counts = count_parameters(cfg)
    # wte 100x32 + wpe 64x32 + 2 blocks + ln_f; lm_head tied to wte.
    block = 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + 2 * 32 + (32 * 128 + 128) + (128 * 32 + 32)
    assert counts["parameters"] == 100 * 32 + 64 * 32 + 2 * block + 2 * 32


def test_tiny_models_are_fast_and_deterministic():
    build_tiny("llama-gqa")  # warm the import
    for variant in VARIANTS:
        t0 = time.perf_counter()
        a = build_tiny(variant, seed=3)
        assert time.perf_counter() - t0 < 1.0
        b = build_tiny(variant, seed=3)
        assert all(
            torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )
        assert a.config.hidden_size % a.config.num_attention_heads == 0


def test_tokenizer_round_trips_every_corpus_sample_and_adds_no_bos(corpus, tokenizer):
    assert tokenizer.bos_token_id is None and tokenizer.eos_token_id == 0
    for sample in corpus.train + corpus.held_out:
        ids = tokenizer(sample.text)["input_ids"]
        assert ids and ids[0] != tokenizer.eos_token_id
        assert tokenizer.decode(ids) == sample.text


def test_corpus_is_real_text_split_once(corpus):
    assert len(corpus.train) > 300 and len(corpus.held_out) > 50
    train_topics = {s.id.split("#")[0] for s in corpus.train}
    held_topics = {s.id.split("#")[0] for s in corpus.held_out}
    assert not train_topics & held_topics
    assert len({s.id for s in corpus.train + corpus.held_out}) == len(corpus.train) + len(corpus.held_out)
    assert "statement" in " ".join(s.text for s in corpus.train[:50])
