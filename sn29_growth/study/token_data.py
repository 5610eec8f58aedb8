"""Study data from a token corpus folder (:mod:`sn29_growth.train.tokens`): single-epoch slices of token ids.

The base model reads the first ``N`` tokens of the train split; every arm after growth reads the same next
``M`` tokens, starting one token past the base's last prediction target, so no arm is ever trained on a
token the base model predicted. Validation reads the held-out split. Each slice is one epoch: a run that
asked for a second epoch would be re-reading tokens, so :meth:`TokenSlice.token_ids` refuses it.

A slice is a training source for :func:`sn29_growth.train.train` (it has ``token_ids`` instead of texts).
Models of a token-corpus study use the corpus's vocabulary and tokenizer (:func:`corpus_tokenizer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sn29_growth.train.tokens import TokenCorpus, open_token_corpus


@dataclass(frozen=True)
class TokenSlice:
    """Token ids ``[start, start + count)`` of one split of the corpus in ``folder`` (one epoch)."""

    folder: Path
    split: str
    start: int
    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if self.start < 0 or self.count < 2:
            raise ValueError(f"token slice: start {self.start} / count {self.count} out of range")

    @property
    def name(self) -> str:
        return f"tokens:{self.folder.name}:{self.split}[{self.start}:{self.start + self.count}]"

    def texts(self, epoch: int):
        raise ValueError(f"{self.name}: a token slice has token ids, not texts")

    def token_ids(self, epoch: int) -> torch.Tensor:
        """The slice's ids (int32); only epoch 0 exists (single-epoch reading)."""
        if epoch != 0:
            raise ValueError(
                f"{self.name}: single-epoch data is used up (epoch {epoch} asked); the run needs more tokens "
                "than its slice holds"
            )
        ids = open_token_corpus(self.folder).tokens(self.split)
        end = self.start + self.count
        if end > ids.shape[0]:
            raise ValueError(f"{self.name}: the split has only {ids.shape[0]} tokens")
        return torch.from_numpy(np.asarray(ids[self.start : end], dtype=np.int32))


@dataclass(frozen=True)
class StudySlices:
    """Where each phase reads: the base's slice, the arms' shared slice, the held-out slice (and ``all``:
    the first two together, for a scratch run as long as base + growth)."""

    base: TokenSlice
    arms: TokenSlice
    validation: TokenSlice

    @property
    def all(self) -> TokenSlice:
        """The base's and the arms' tokens as one slice (one window per step of both phases)."""
        return TokenSlice(self.base.folder, self.base.split, 0, self.base.count + self.arms.count - 1)


def phase_tokens(steps: int, global_batch: int, seq_len: int) -> int:
    """Ids a run of ``steps`` reads: ``steps · global_batch`` windows of ``seq_len`` targets, plus the
    first window's first input (windows overlap by one id)."""
    return steps * global_batch * seq_len + 1


def study_slices(
    folder: str | os.PathLike, *, base_steps: int, arm_steps: int, global_batch: int, seq_len: int
) -> StudySlices:
    """The base, arm and held-out slices of a study; errors say how many tokens are missing."""
    corpus = open_token_corpus(folder)
    for split in ("train", "held_out"):
        if split not in corpus.splits:
            raise ValueError(f"tokens: {corpus.folder} has no {split!r} split")
    n_base = phase_tokens(base_steps, global_batch, seq_len)
    n_arms = phase_tokens(arm_steps, global_batch, seq_len)
    have = corpus.splits["train"].tokens
    if n_base + n_arms > have:
        raise ValueError(
            f"tokens: the base needs {n_base:,} and the arms {n_arms:,} train tokens, but {corpus.folder} "
            f"has {have:,}; lower base.steps, train.steps, batch_size or seq_len"
        )
    held = corpus.splits["held_out"].tokens
    if held < seq_len + 1:
        raise ValueError(f"tokens: the held-out split of {corpus.folder} has fewer than seq_len + 1 tokens")
    return StudySlices(
        base=TokenSlice(corpus.folder, "train", 0, n_base),
        arms=TokenSlice(corpus.folder, "train", n_base, n_arms),
        validation=TokenSlice(corpus.folder, "held_out", 0, held),
    )


EMBEDDED = "embedded"


def write_embedded_token_corpus(folder: str | os.PathLike) -> TokenCorpus:
    """The embedded corpus (its train and held-out parts, embedded tokenizer) as a token corpus folder;
    an existing folder is reused. ``tokens: embedded`` in a study config reads it."""
    from importlib import resources

    from sn29_growth.corpus import load_corpus
    from sn29_growth.tokenizer import embedded_tokenizer
    from sn29_growth.train.tokens import write_token_corpus

    if (Path(folder) / "manifest.json").is_file():
        return open_token_corpus(folder)
    tok, corpus = embedded_tokenizer(), load_corpus()
    splits = {name: [tok(s.text)["input_ids"] for s in corpus.split(name)] for name in ("train", "held_out")}
    with resources.as_file(resources.files("sn29_growth").joinpath("data/tokenizer.json")) as path:
        return write_token_corpus(
            folder,
            path,
            splits,
            eos_id=tok.eos_token_id,
            vocab_size=len(tok),
            extra={"sources": ["sn29_growth/data/corpus.json.gz (the embedded corpus)"]},
        )


def corpus_tokenizer(corpus: TokenCorpus):
    """The corpus's tokenizer as a transformers fast tokenizer (its EOS is the corpus's ``eos_id``)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(corpus.tokenizer_path))
    eos = tok.id_to_token(corpus.eos_id)
    if eos is None:
        raise ValueError(f"{corpus.tokenizer_path}: eos_id {corpus.eos_id} is not in the tokenizer")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        pad_token=eos,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def model_overrides(corpus: TokenCorpus) -> dict[str, int]:
    """Config keys every model of the study takes from the corpus: its vocabulary and EOS id."""
    return {"vocab_size": corpus.vocab_size, "eos_token_id": corpus.eos_id, "pad_token_id": corpus.eos_id}
