"""Config keys whose handling differs between transformers 4.44 (the network) and 5 (ours), on the
published Llama and Phi3 configs: where the network computes the same thing, our scoring reading must
too, and our rules must accept what 4.44 loads (docs/network-semantics.md lists every key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.loss import EngineSettings, summed_losses
from sn29_growth.loading import load_config, load_model
from sn29_growth.network.rules import config_findings
from sn29_growth.tiny import VOCAB_SIZE, build_tiny

CONFIGS = Path(__file__).parent / "data" / "configs"
PHI3_128K = dict(  # Phi-3-mini-128k's long-context keys (its head_dim is 96: 48 factors)
    max_position_embeddings=131072,
    original_max_position_embeddings=4096,
    rope_scaling={"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [2.0] * 48},
)
TINY_LONGROPE = dict(
    max_position_embeddings=4096,
    original_max_position_embeddings=16,
    rope_scaling={"type": "longrope", "short_factor": [1.0] * 8, "long_factor": [3.0] * 8},
)


def published(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def losses(path, sequences) -> tuple[float, ...]:
    return summed_losses(load_model(path, network=True), sequences, EngineSettings(max_batch_size=1)).losses


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def sequences():
    gen = torch.Generator().manual_seed(5)
    return [tuple(torch.randint(1, VOCAB_SIZE, (n,), generator=gen).tolist()) for n in (5, 12, 40)]


@pytest.mark.parametrize("old_name", ["su", "yarn"])
def test_phi3_old_longrope_names_are_longrope(old_name, sequences, tmp_path):
    """4.44's Phi3Config renames rope_scaling type ``su``/``yarn`` to ``longrope`` (Phi-3-mini-128k was
    published with ``su``); transformers 5 does too, so the rules accept them and the scores agree."""
    real = dict(published("phi-3-mini-4k"), **PHI3_128K)
    renamed = dict(real, rope_scaling={**real["rope_scaling"], "type": old_name})
    assert config_findings(real) == []
    assert config_findings(renamed) == []

    save_model(build_tiny("phi3", seed=3, init_std=0.3, **TINY_LONGROPE), tmp_path / "longrope")
    save_model(build_tiny("phi3", seed=3, init_std=0.3, **TINY_LONGROPE), tmp_path / "old")
    scaling = json.loads((tmp_path / "old" / "config.json").read_text())["rope_scaling"]
    edit_config(tmp_path / "old", rope_scaling={**scaling, "type": old_name})
    assert load_config(tmp_path / "old", network=True).rope_parameters["rope_type"] == "longrope"
    assert losses(tmp_path / "old", sequences) == losses(tmp_path / "longrope", sequences)


def test_phi3_old_longrope_name_in_the_wrong_shape_is_still_refused():
    real = published("phi-3-mini-4k")
    assert [f.code for f in config_findings(dict(real, rope_scaling={"type": "yarn", "factor": 2.0}))] == [
        "rope"
    ]


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "llama-3.2-1b"])
def test_llama_ignores_window_and_tensor_parallel_keys(name, sequences, tmp_path):
    """``sliding_window`` is no Llama key in 4.44 (its attention never reads it) nor in 5, and
    ``pretraining_tp`` only splits 4.44's matmuls into slices (the same sums): a published Llama config
    carrying them scores as without them."""
    keep = {k: published(name)[k] for k in ("rms_norm_eps", "rope_theta", "tie_word_embeddings")}
    save_model(build_tiny("llama-gqa", seed=2, init_std=0.3, **keep), tmp_path / "plain")
    save_model(build_tiny("llama-gqa", seed=2, init_std=0.3, **keep), tmp_path / "keys")
    edit_config(tmp_path / "keys", sliding_window=4, pretraining_tp=2)
    assert config_findings(dict(published(name), sliding_window=4, pretraining_tp=2)) == []
    assert losses(tmp_path / "keys", sequences) == losses(tmp_path / "plain", sequences)
