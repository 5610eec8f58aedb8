"""The samples of an evaluation, chosen once, and the request a worker process evaluates (no torch).

The validator's main process and ``sn29 evaluate --isolate`` choose the samples here, write them to a
file, and hand each model's worker the same file: every model sees exactly the same texts, and a data
source that fails is a problem of the step, never of a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.eval.competitions import Competition
from sn29_growth.eval.data import (
    DataSource,
    FineWebSource,
    FixedSource,
    LocalSource,
    datasets_server_reachable,
    hub_offline,
    make_source,
)


def _resolve_dataset(
    dataset: str | DataSource | None, competition: Competition, cache_dir: Path | None
) -> tuple[DataSource, str | None]:
    if dataset is not None and not isinstance(dataset, str):
        return dataset, None
    if dataset is None:
        if competition.dataset in ("fineweb2",) and datasets_server_reachable():
            spec = "fineweb"
        else:
            reason = "HF_HUB_OFFLINE is set" if hub_offline() else "datasets-server unreachable"
            return LocalSource(), f"offline default: {reason}"
    else:
        spec = dataset
    source = make_source(
        spec,
        cache_dir=cache_dir / "datasets" if cache_dir is not None else None,
        rows_per_page=competition.rows_per_page,
    )
    return source, None


@dataclass(frozen=True)
class SampleChoice:
    """The samples of one evaluation, where they came from, and whether models bring their tokenizers."""

    source: DataSource
    note: str | None
    samples: tuple
    free_tokenizer: bool
    tokenizer_note: str | None
    fallback_tokenizer: bool = True  # the competition's tokenizer can stand in for a model's own


def resolve_samples(
    dataset: str | DataSource | None,
    competition: Competition,
    samples: int | None,
    seed: int,
    cache_dir: Path | None,
    free_tokenizer: bool | None = None,
) -> SampleChoice:
    """Pick the samples once (see the module docstring for the defaults); raises DataSourceError."""
    source, note = _resolve_dataset(dataset, competition, cache_dir)
    forced = isinstance(source, LocalSource) or hub_offline()  # competition tokenizers are out of reach
    if free_tokenizer is None:
        free_tokenizer = competition.free_tokenizer or forced
    tokenizer_note = None
    if free_tokenizer and not competition.free_tokenizer:
        tokenizer_note = "models' own tokenizers (local data / offline imply free_tokenizer)"
    if samples is None:
        samples = (
            competition.eval_pages * competition.rows_per_page
            if isinstance(source, FineWebSource)
            else 1 << 30
        )
    return SampleChoice(
        source, note, source.samples(samples, seed), free_tokenizer, tokenizer_note, not forced
    )


def worker_request(
    competition: Competition,
    model: tuple[str, Path],
    samples_file: Path,
    *,
    free_tokenizer: bool,
    seed: int,
    device: str,
    cache_dir: Path | None,
    allow_bos: bool = False,
    dataset: str = "",
    fallback_tokenizer: bool = True,
    content_hash: str | None = None,
) -> dict[str, Any]:
    """The request a worker process evaluates: one model ``(name, path)`` on a fixed sample file.

    ``content_hash``: the model's loss-cache key (:func:`sn29_growth.eval.cache.model_content_hash`) when
    the caller has already digested its files; the worker then reads none of them to hash."""
    entry: dict[str, Any] = {"key": model[0], "path": str(model[1])}
    if content_hash is not None:
        entry["content_hash"] = content_hash
    return {
        "competition": {"name": competition.name, **competition.as_dict()},
        "models": [entry],
        "samples_file": str(samples_file),
        "free_tokenizer": free_tokenizer,
        "fallback_tokenizer": fallback_tokenizer,
        "allow_bos": allow_bos,
        "seed": seed,
        "device": device,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "dataset": dataset,
    }


def write_samples_file(path: Path, source_name: str, samples: Sequence) -> Path:
    from sn29_growth.atomic import atomic_write_json

    atomic_write_json(path, FixedSource(source_name, tuple(samples)).to_json(), indent=None)
    return path
