"""A Hub dataset's own parquet files, shard by shard: ``hf://org/name[/config][@split]``.

The repository is listed once (``dataset_info`` with file metadata, pinned to the commit it resolves to),
its parquet files are selected by config and split, and each shard is fetched when it is read with
``hf_hub_download`` into a local folder (explicit timeouts, bounded retries with backoff, size and sha256
checked against the listing; a failed or damaged download is removed, never read). A disk budget bounds
the shards kept: before a shard is fetched, earlier shards this source fetched are deleted oldest first
until the new one fits. Never the datasets-server rows API.

Which files belong to a config and a split: a config ``C`` (other than ``default``) keeps the files with a
folder named ``C`` in their path (``data/C/...`` as FineWeb lays out its dumps, ``C/train/...`` as the
Hub's parquet conversion does); a split ``S`` keeps the files with a folder named ``S`` or a file name
starting with ``S`` (``train-00000-of-00002.parquet``), and when no file names any split, every file is
the ``train`` split.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sn29_growth.digest import sha256_file
from sn29_growth.hub.protocol import HubError, IntegrityError, validate_repo_id
from sn29_growth.hub.retry import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

PREFIX = "hf://"
SPLITS = ("train", "validation", "test")
DEFAULT_DISK_BUDGET = 50 * 2**30


@dataclass(frozen=True)
class DatasetSpec:
    repo_id: str
    config: str | None = None
    split: str = "train"
    revision: str = "main"

    @classmethod
    def parse(cls, spec: str, revision: str = "main") -> DatasetSpec:
        """``hf://org/name[/config][@split]``."""
        if not spec.startswith(PREFIX):
            raise ValueError(f"{spec!r}: a Hub dataset is written {PREFIX}org/name[/config][@split]")
        body, _, split = spec[len(PREFIX) :].partition("@")
        parts = body.strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{spec!r}: a Hub dataset is written {PREFIX}org/name[/config][@split]")
        repo_id = "/".join(parts[:2])
        validate_repo_id(repo_id)
        return cls(repo_id, parts[2] if len(parts) == 3 else None, split or "train", revision)

    def __str__(self) -> str:
        config = f"/{self.config}" if self.config else ""
        return f"{PREFIX}{self.repo_id}{config}@{self.split}"


@dataclass
class DatasetShard:
    """One file of a dataset as a reader sees it: ``name`` (shown in errors), ``fetch()`` → a local path to
    read, ``info`` (what a manifest records of it) and ``release()`` once it is read."""

    name: str
    fetch: Callable[[], Path]
    info: dict[str, Any] = field(default_factory=dict)
    release: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class ShardFile:
    path: str
    size: int
    sha256: str | None


def select_shards(files: list[ShardFile], config: str | None, split: str) -> list[ShardFile]:
    """The parquet files of ``config`` and ``split`` (see the module docstring), sorted by path."""
    parquet = [f for f in files if f.path.endswith(".parquet")]
    if config and config != "default":
        parquet = [f for f in parquet if config in PurePosixPath(f.path).parts[:-1]]

    def names_split(f: ShardFile, s: str) -> bool:
        p = PurePosixPath(f.path)
        return s in p.parts[:-1] or p.name.startswith(s)

    named = [f for f in parquet if names_split(f, split)]
    if not named and split == "train" and not any(names_split(f, s) for f in parquet for s in SPLITS):
        named = parquet
    return sorted(named, key=lambda f: f.path)


def _sha256(path: Path) -> str:
    return sha256_file(path).hex()


class HubDatasetShards:
    """The parquet shards of one Hub dataset split, fetched one at a time into ``cache_dir``.

    ``disk_budget``: bytes of shards kept at once (a shard larger than the budget is refused);
    ``retry``: attempts per shard (listing included); ``timeout_s``: of the listing and of each request
    before a download starts (the download's own read timeout is huggingface_hub's
    ``HF_HUB_DOWNLOAD_TIMEOUT``); ``endpoint``: the Hub (default ``HF_ENDPOINT``)."""

    def __init__(
        self,
        spec: DatasetSpec,
        *,
        cache_dir: str | os.PathLike | None = None,
        disk_budget: int = DEFAULT_DISK_BUDGET,
        retry: RetryPolicy = RetryPolicy(),
        timeout_s: float = 30.0,
        endpoint: str | None = None,
        token: str | bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if disk_budget < 1:
            raise ValueError(f"disk_budget: must be >= 1 byte, got {disk_budget}")
        from sn29_growth.hub.hf_client import default_endpoint

        self.spec = spec
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        root = Path(cache_dir or Path.home() / ".cache" / "sn29-growth" / "datasets")
        self.cache_dir = root / spec.repo_id.replace("/", "--")
        self.disk_budget, self.retry, self.timeout_s = disk_budget, retry, timeout_s
        self._token, self._sleep = token, sleep
        self._listing: tuple[str, list[ShardFile]] | None = None
        self._kept: list[Path] = []

    @classmethod
    def from_spec(cls, spec: str, *, revision: str = "main", **options: Any) -> HubDatasetShards:
        return cls(DatasetSpec.parse(spec, revision), **options)

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        from sn29_growth.hub.hf_client import _map_error

        def once() -> Any:
            try:
                return fn()
            except Exception as exc:
                mapped = _map_error(exc, what)
                if mapped is None:
                    if isinstance(exc, OSError):  # a body cut short, a consistency check of the library
                        raise _Retryable(f"{what}: {exc}") from exc
                    raise
                if mapped is exc:
                    raise
                raise mapped from exc

        return call_with_retries(once, self.retry, what=what, sleep=self._sleep)

    def listing(self) -> tuple[str, list[ShardFile]]:
        """(the commit, the selected shards); listed once."""
        if self._listing is None:
            from huggingface_hub import HfApi

            api = HfApi(endpoint=self.endpoint, token=self._token)
            spec = self.spec
            info = self._call(
                lambda: api.dataset_info(
                    spec.repo_id, revision=spec.revision, files_metadata=True, timeout=self.timeout_s
                ),
                f"dataset_info {spec.repo_id}@{spec.revision}",
            )
            files = [
                ShardFile(
                    s.rfilename,
                    int(s.lfs.size if s.lfs is not None else (s.size or 0)),
                    s.lfs.sha256 if s.lfs is not None else None,
                )
                for s in info.siblings or []
            ]
            shards = select_shards(files, spec.config, spec.split)
            if not shards:
                raise HubError(f"{spec}: no parquet files of this config and split in {spec.repo_id}")
            self._listing = (info.sha, shards)
        return self._listing

    @property
    def key(self) -> dict[str, Any]:
        """What identifies the source (for reusing a prepared folder): the spec and the revision asked."""
        return {"kind": "hub", "spec": str(self.spec), "revision": self.spec.revision}

    def shards(self) -> Iterator[DatasetShard]:
        commit, files = self.listing()
        for f in files:
            info = {"repo": self.spec.repo_id, "commit": commit, "path": f.path, "size": f.size}
            if f.sha256:
                info["sha256"] = f.sha256
            yield DatasetShard(
                f"{self.spec.repo_id}/{f.path}",
                fetch=lambda f=f, commit=commit: self.fetch(f, commit),
                info=info,
            )

    def _make_room(self, size: int, name: str) -> None:
        if size > self.disk_budget:
            raise HubError(f"{name}: {size:,} bytes exceed the disk budget of {self.disk_budget:,}")
        while (
            self._kept and sum(p.stat().st_size for p in self._kept if p.exists()) + size > self.disk_budget
        ):
            old = self._kept.pop(0)
            old.unlink(missing_ok=True)
            log.info("disk budget: removed %s", old)

    def fetch(self, f: ShardFile, commit: str) -> Path:
        """The local copy of shard ``f`` (downloaded if absent or damaged; checked against the listing)."""
        name = f"{self.spec.repo_id}/{f.path}"
        target = self.cache_dir / commit / f.path
        if not (target.is_file() and self._intact(target, f)):
            self._make_room(f.size, name)
            self._call(lambda: self._download(f, commit, target, name), f"download {name}")
        if target not in self._kept:
            self._kept.append(target)
        return target

    def _intact(self, path: Path, f: ShardFile) -> bool:
        return path.stat().st_size == f.size and (f.sha256 is None or _sha256(path) == f.sha256)

    def _download(self, f: ShardFile, commit: str, target: Path, name: str) -> None:
        from huggingface_hub import hf_hub_download

        local_dir = self.cache_dir / commit
        try:
            path = Path(
                hf_hub_download(
                    self.spec.repo_id,
                    f.path,
                    repo_type="dataset",
                    revision=commit,
                    local_dir=local_dir,
                    etag_timeout=self.timeout_s,
                    endpoint=self.endpoint,
                    token=self._token,
                )
            )
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if path.resolve() != target.resolve() or not self._intact(target, f):
            size = target.stat().st_size if target.exists() else None
            target.unlink(missing_ok=True)
            raise _DamagedDownload(
                f"{name}: downloaded {size} bytes that do not match the listing ({f.size})"
            )


class _Retryable(HubError):
    retryable = True


class _DamagedDownload(IntegrityError):
    retryable = True
