"""The embedded corpus: real English text (the Python language reference's topic pages).

A snapshot of ``pydoc_data.topics`` ships as package data so the corpus, and everything trained or
measured on it, is the same on every Python version. Documents are split once, by topic, into a train
part and a held-out part; every feature (training, evaluation, the demo, the tests) uses this split.
Samples are paragraph-aligned chunks of at most ``MAX_SAMPLE_CHARS`` characters.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

MAX_SAMPLE_CHARS = 1200
HELD_OUT_EVERY = 5  # every 5th topic (sorted by name, offset below) is held out
HELD_OUT_OFFSET = 3


@dataclass(frozen=True)
class Sample:
    """One text sample with a stable id (``topic#index``)."""

    id: str
    text: str


@dataclass(frozen=True)
class Corpus:
    source: str
    train: tuple[Sample, ...]
    held_out: tuple[Sample, ...]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for s in self.train + self.held_out:
            h.update(s.id.encode())
            h.update(b"\0")
            h.update(s.text.encode())
        return h.hexdigest()[:16]

    def split(self, name: str) -> tuple[Sample, ...]:
        if name == "train":
            return self.train
        if name in ("held_out", "heldout", "test", "eval"):
            return self.held_out
        raise ValueError(f"unknown corpus split {name!r} (use 'train' or 'held_out')")


def _chunks(text: str, limit: int) -> list[str]:
    """Paragraph-aligned chunks of at most ``limit`` characters (a longer paragraph is cut at spaces)."""
    out: list[str] = []
    current = ""
    for para in text.split("\n\n"):
        para = para.strip("\n")
        if not para.strip():
            continue
        while len(para) > limit:
            cut = para.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                out.append(current)
                current = ""
            out.append(para[:cut])
            para = para[cut:].lstrip(" ")
        if current and len(current) + 2 + len(para) > limit:
            out.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def _documents() -> tuple[str, list[dict]]:
    raw = resources.files("sn29_growth").joinpath("data/corpus.json.gz").read_bytes()
    payload = json.loads(gzip.decompress(raw))
    return payload["source"], payload["documents"]


@functools.cache
def load_corpus(max_sample_chars: int = MAX_SAMPLE_CHARS) -> Corpus:
    source, docs = _documents()
    train: list[Sample] = []
    held: list[Sample] = []
    for i, doc in enumerate(sorted(docs, key=lambda d: d["topic"])):
        dest = held if i % HELD_OUT_EVERY == HELD_OUT_OFFSET else train
        for j, chunk in enumerate(_chunks(doc["text"], max_sample_chars)):
            dest.append(Sample(f"{doc['topic']}#{j}", chunk))
    return Corpus(source=source, train=tuple(train), held_out=tuple(held))
