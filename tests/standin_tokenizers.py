"""Small tokenizers built like real families whose pipeline transformers 5 rebuilds differently from the
network's transformers 4.44 (trained here on the embedded corpus; no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from sn29_growth.corpus import load_corpus

CL100K_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PUNCTUATED = "(hello) (world) [the] It'S 12345 ,and .The"
SPECIALS = ("<unk>", "<s>", "</s>")
"""The special tokens of the Llama-style stand-in."""


def training_texts() -> list[str]:
    return [s.text for s in load_corpus().train[:30]] + [PUNCTUATED] * 30


def write_folder(folder: Path, tokenizer: Tokenizer, config: dict) -> Path:
    """``tokenizer.json`` with merges as ``"a b"`` strings (what tokenizers 0.19 reads) and the config."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(tokenizer.to_str())
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def build_split_regex_folder(folder: Path) -> Path:
    """cl100k-style: a Split regex (digits in groups of 1-3, punctuation joined to letters) then byte level
    without GPT-2's regex; declared GPT2TokenizerFast as ``Xenova/gpt-4`` declares cl100k. transformers 5
    rebuilds it with GPT-2's regex (other ids); the network's 4.44 keeps the file's pipeline."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer)
    config = {
        "tokenizer_class": "GPT2TokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    return write_folder(folder, tok, config)
