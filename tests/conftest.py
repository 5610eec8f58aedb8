"""Shared test set-up: offline Hugging Face, temp caches, tiny models and the embedded corpus."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="sn29-test-home-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", os.path.join(_HOME, "hf"))
os.environ.setdefault("BTCLI_TOKEN_SYMBOLS_CACHE", os.path.join(_HOME, "bt-token-symbols.json"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402

from sn29_growth.checkpoint import save_model  # noqa: E402

# One intra-op thread: tiny models gain nothing from more, and contended OpenMP threads (a test's
# subprocesses, a busy CI box) were measured 5-30x slower than one.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def corpus():
    from sn29_growth.corpus import load_corpus

    return load_corpus()


@pytest.fixture(scope="session")
def tokenizer():
    from sn29_growth.tokenizer import embedded_tokenizer

    return embedded_tokenizer()


@pytest.fixture(scope="session")
def held_out_ids(corpus, tokenizer):
    """A fixed subset of held-out samples, tokenized (EOS appended), for exactness checks."""
    from sn29_growth.lm import encode

    return encode(tokenizer, [s.text for s in corpus.held_out[:12]], max_len=256)


@pytest.fixture
def save_tiny(tmp_path, tokenizer):
    """Save a tiny model (and the embedded tokenizer) to a fresh directory; returns the path."""

    def _save(model, name="model"):
        path = tmp_path / name
        save_model(model, path, tokenizer=tokenizer)
        return path

    return _save
