"""Training data tokenized ahead: text shards → a token corpus folder that training reads memory-mapped.

:func:`prepare_tokens` reads a source shard by shard (local ``.parquet``/``.jsonl``/``.ndjson``/``.txt``
files or a folder of them, or a Hub dataset's parquet shards: ``hf://org/name[/config][@split]``, see
:mod:`sn29_growth.hub.datasets`), tokenizes the texts in chunks with the model's tokenizer on the network's
own stack (:func:`sn29_growth.eval.tokenizers.load_tokenizer`: the ids the model is scored on), appends EOS
to each document, and stops once the requested number of tokens is written. The folder is a token corpus
(:mod:`sn29_growth.train.tokens`: ``train.bin`` + ``manifest.json`` + the tokenizer) written atomically;
its manifest's ``prepared`` entry names the source, the tokenizer fingerprint and the tokens asked for, and
``sources`` lists every shard read (how many documents and tokens it gave). Preparing the same source with
the same tokenizer into a folder that already holds at least as many tokens does nothing.

Ids are those of ``tokenizer(texts)["input_ids"]`` (the default special tokens) plus EOS: exactly the
stream :func:`sn29_growth.train.data.token_stream` builds from the same texts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.hub.datasets import DatasetShard
from sn29_growth.progress import Progress
from sn29_growth.train.tokens import TOKENIZER, TokenCorpus, TokenCorpusError, open_token_corpus

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".txt")
TOKENIZER_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json")
CHUNK_TEXTS = 1024
"""Texts tokenized per request to the tokenizer (bounds the memory of one chunk)."""
HUB_PREFIX = "hf://"


class PrepareError(ValueError):
    """A source that cannot be read or a folder that cannot be reused (the message names which)."""


class LocalFiles:
    """Local text files: one file, or every file with a known suffix under a folder (sorted paths)."""

    def __init__(self, path: str | os.PathLike) -> None:
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not files:
                raise PrepareError(f"{root}: no {'/'.join(TEXT_SUFFIXES)} files")
        elif root.is_file():
            if root.suffix not in TEXT_SUFFIXES:
                raise PrepareError(f"{root}: not one of {', '.join(TEXT_SUFFIXES)}")
            files = [root]
        else:
            raise PrepareError(f"{root}: no such file or folder")
        self.root, self.files = root, files

    @property
    def key(self) -> dict[str, Any]:
        """What identifies the source: the files with their sizes and modification times."""
        return {
            "kind": "files",
            "files": [
                {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
                for p in self.files
            ],
        }

    def shards(self) -> Iterator[DatasetShard]:
        for p in self.files:
            yield DatasetShard(str(p), fetch=lambda p=p: p, info={"path": str(p), "size": p.stat().st_size})


def open_source(spec: str, *, cache_dir: str | os.PathLike | None = None, **hub_options: Any):
    """The source named by ``spec``: ``hf://org/name[/config][@split]`` or a local file/folder."""
    if spec.startswith(HUB_PREFIX):
        from sn29_growth.hub.datasets import HubDatasetShards

        return HubDatasetShards.from_spec(spec, cache_dir=cache_dir, **hub_options)
    return LocalFiles(spec)


def read_texts(
    path: Path, name: str, text_column: str = "text", chunk: int = CHUNK_TEXTS
) -> Iterator[list[str]]:
    """The texts of one shard in lists of at most ``chunk``; an unreadable shard raises
    :class:`PrepareError` naming it (before any of its texts is yielded where the format allows)."""
    suffix = path.suffix
    if suffix == ".parquet":
        yield from _parquet_texts(path, name, text_column, chunk)
        return
    batch: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if suffix == ".txt":
                    text = line.strip()
                    if not text:
                        continue
                else:
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise PrepareError(f"{name}: line {number} is not JSON ({e})") from None
                    text = row.get(text_column) if isinstance(row, dict) else None
                    if not isinstance(text, str):
                        raise PrepareError(f"{name}: line {number} has no string {text_column!r} field")
                batch.append(text)
                if len(batch) == chunk:
                    yield batch
                    batch = []
    except (OSError, UnicodeDecodeError) as e:
        raise PrepareError(f"{name}: unreadable ({e})") from None
    if batch:
        yield batch


def _parquet_texts(path: Path, name: str, text_column: str, chunk: int) -> Iterator[list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise PrepareError(f"{name}: not a readable parquet file ({e})") from None
    if text_column not in pf.schema_arrow.names:
        raise PrepareError(f"{name}: no column {text_column!r} (has {', '.join(pf.schema_arrow.names)})")
    try:
        for batch in pf.iter_batches(batch_size=chunk, columns=[text_column]):
            yield [t for t in batch.column(0).to_pylist() if isinstance(t, str)]
    except (pa.ArrowException, OSError) as e:
        raise PrepareError(f"{name}: damaged parquet data ({e})") from None


@dataclass(frozen=True)
class PrepareResult:
    folder: Path
    tokens: int
    documents: int
    reused: bool  # the folder already held this source's tokens: nothing was done


def _fingerprint(tokenizer) -> str:
    from sn29_growth.eval.tokenize import tokenizer_fingerprint

    return tokenizer_fingerprint(tokenizer)


def reusable(corpus: TokenCorpus, wanted: dict[str, Any], tokens: int) -> bool:
    """Whether ``corpus`` was prepared from the same source with the same tokenizer and holds ``tokens``
    (or all the source has)."""
    prepared = corpus.manifest.get("prepared")
    if not isinstance(prepared, dict) or "train" not in corpus.splits:
        return False
    if any(prepared.get(k) != v for k, v in wanted.items()):
        return False
    return corpus.splits["train"].tokens >= tokens or bool(prepared.get("exhausted"))


def prepare_tokens(
    source: str,
    out_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    tokens: int,
    *,
    text_column: str = "text",
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    tokenizer=None,
    **hub_options: Any,
) -> PrepareResult:
    """Prepare ``tokens`` token ids of ``source`` into the token corpus folder ``out_dir``.

    ``tokenizer_dir``: the model folder whose tokenizer makes the ids (``tokenizer`` overrides the loaded
    one, for tests). A folder holding another source's or another tokenizer's ids is refused unless
    ``overwrite``. ``cache_dir`` and ``hub_options`` go to a Hub source
    (:class:`~sn29_growth.hub.datasets.HubDatasetShards`: shard cache, disk budget, retries, timeouts).
    """
    if tokens < 1:
        raise PrepareError(f"tokens: must be >= 1, got {tokens}")
    out = Path(out_dir)
    tokenizer, tokenizer_json, eos = _documents_tokenizer(tokenizer_dir, tokenizer)
    src = open_source(source, cache_dir=cache_dir, **hub_options)
    wanted = {
        "source_key": src.key,
        "tokenizer_fingerprint": _fingerprint(tokenizer),
        "text_column": text_column,
    }
    done = _already_prepared(out, wanted, tokens, overwrite, source)
    if done is not None:
        return done
    vocab = max(len(tokenizer), int(getattr(tokenizer, "max_id", -1)) + 1, eos + 1)
    shards: list[dict[str, Any]] = []
    state = {"exhausted": False}
    bar = Progress(tokens, f"tokenize {source}", unit="tok", unit_scale=True, bar=progress, logger=log)

    def documents() -> Iterator[list[int]]:
        total = 0
        for shard in src.shards():
            path = shard.fetch()
            docs = count = shown = 0
            try:
                for texts in read_texts(path, shard.name, text_column):
                    for ids in tokenizer(texts)["input_ids"]:
                        yield ids
                        docs, count = docs + 1, count + len(ids) + 1
                        if total + count >= tokens:
                            return
                    bar.update(count - shown, shard=Path(shard.name).name)
                    shown = count
            finally:
                shards.append({**shard.info, "name": shard.name, "documents": docs, "tokens": count})
                total += count
                bar.update(count - shown)
                shard.release()
        state["exhausted"] = True

    def manifest() -> dict[str, Any]:
        return {
            "prepared": {
                **wanted,
                "source": source,
                "requested_tokens": tokens,
                "exhausted": state["exhausted"],
                "tokenizer_engine": getattr(tokenizer, "engine", "transformers"),
                "tokenizer_class": getattr(tokenizer, "class_name", type(tokenizer).__name__),
            },
            "sources": shards,
        }

    from sn29_growth.train.tokens import write_token_corpus

    side = {
        name: (Path(tokenizer_dir) / name).read_text(encoding="utf-8")
        for name in TOKENIZER_SIDE_FILES
        if (Path(tokenizer_dir) / name).is_file()
    }
    with bar:
        corpus = write_token_corpus(
            out,
            tokenizer_json,
            {"train": documents()},
            eos_id=eos,
            vocab_size=vocab,
            extra=manifest,
            files=side,
            overwrite=True,
        )
    split = corpus.splits["train"]
    if split.tokens < tokens:
        log.warning(
            "%s: the source ran out after %d of the %d tokens asked for", source, split.tokens, tokens
        )
    return PrepareResult(out, split.tokens, split.documents, reused=False)


def _documents_tokenizer(tokenizer_dir: str | os.PathLike, tokenizer) -> tuple[Any, Path, int]:
    """The tokenizer (loaded unless given), its ``tokenizer.json`` the folder records, and its EOS id."""
    if tokenizer is None:
        from sn29_growth.eval.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_dir)
    tokenizer_json = Path(tokenizer_dir) / TOKENIZER
    if not tokenizer_json.is_file():
        raise PrepareError(f"{tokenizer_dir}: no {TOKENIZER} (the folder records the tokenizer it used)")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise PrepareError(f"{tokenizer_dir}: the tokenizer has no EOS token to separate documents")
    return tokenizer, tokenizer_json, eos


def _already_prepared(
    out: Path, wanted: dict[str, Any], tokens: int, overwrite: bool, source: str
) -> PrepareResult | None:
    """The result when ``out`` already holds what is asked for; None when it is to be (re)written;
    PrepareError when it holds something else and ``overwrite`` is not given."""
    existing = _existing(out)
    if existing is None and out.exists() and any(out.iterdir()) and not overwrite:
        raise PrepareError(f"{out}: exists and is not a prepared folder; pass overwrite (--overwrite)")
    if existing is None:
        return None
    if reusable(existing, wanted, tokens):
        split = existing.splits["train"]
        log.info("%s: already holds %d tokens of %s; nothing to do", out, split.tokens, source)
        return PrepareResult(out, split.tokens, split.documents, reused=True)
    if not overwrite:
        raise PrepareError(
            f"{out}: holds other prepared data (another source, tokenizer or fewer tokens); pass "
            "overwrite (--overwrite) or another folder"
        )
    return None


def _existing(folder: Path) -> TokenCorpus | None:
    if not folder.exists():
        return None
    try:
        return open_token_corpus(folder)
    except TokenCorpusError:
        return None
