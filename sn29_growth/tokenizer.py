"""The embedded tokenizer: a byte-level BPE trained on the corpus's train part.

It adds no BOS token, appends nothing by itself, and decodes every corpus text back exactly, so it
passes SN29's per-sample round-trip rule. ``<|endoftext|>`` (id 0) is the EOS token. The trained
``tokenizer.json`` ships with the package; :func:`train_tokenizer` rebuilds it.
"""

from __future__ import annotations

import functools
from importlib import resources

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
VOCAB_SIZE = 1024


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


@functools.cache
def _embedded_json() -> str:
    return resources.files("sn29_growth").joinpath("data/tokenizer.json").read_text(encoding="utf-8")


def embedded_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer object for the embedded corpus (vocabulary of :data:`VOCAB_SIZE`)."""
    return wrap(Tokenizer.from_str(_embedded_json()))
