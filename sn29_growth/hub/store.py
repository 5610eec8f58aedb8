"""Local model storage on top of a :class:`HubClient`: disk budget, cleanup, and the ``fetch_model`` read path.

:class:`ModelStore` checks a repository before downloading anything (loadable safetensors model, sizes from
the Hub against the byte budget and the free disk), downloads into a Hugging Face-layout cache, serves
cached snapshots when the Hub is unreachable, and deletes the snapshots nobody references any more.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sn29_growth.hub.cache import (
    STAGING_DIR,
    cached_commit,
    disk_usage_bytes,
    iter_snapshots,
    repo_folder,
    repo_id_from_folder,
    snapshot_path,
    write_ref,
)
from sn29_growth.hub.policy import MODEL_FILE_PATTERNS, missing_model_files, select_files
from sn29_growth.hub.protocol import (
    DiskBudgetExceeded,
    HubClient,
    HubUnavailable,
    RepoFile,
    UnsupportedRepo,
    is_commit_sha,
    validate_repo_id,
)
from sn29_growth.modelref import ModelRef

logger = logging.getLogger(__name__)

GiB = 1024**3


@dataclass(frozen=True)
class DiskBudget:
    """``max_bytes``: most bytes the cache may hold (None: no cap); ``margin_bytes``: free disk kept after a download."""

    max_bytes: int | None = None
    margin_bytes: int = 2 * GiB

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 or None, got {self.max_bytes}")
        if self.margin_bytes < 0:
            raise ValueError(f"margin_bytes must be >= 0, got {self.margin_bytes}")


@dataclass(frozen=True)
class DownloadPlan:
    """What fetching one model at one commit means, known before any byte is downloaded."""

    repo_id: str
    commit: str
    files: tuple[RepoFile, ...]  # the files that will be in the snapshot
    skipped: tuple[str, ...]  # repository files that will never be fetched
    missing_bytes: int  # bytes of ``files`` not yet in the cache

    def __post_init__(self) -> None:
        validate_repo_id(self.repo_id)
        if not is_commit_sha(self.commit):
            raise ValueError(f"commit must be 40 lower-case hex digits, got {self.commit!r}")
        if self.missing_bytes < 0:
            raise ValueError(f"missing_bytes must be >= 0, got {self.missing_bytes}")

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing_ancestor(path)).free


def default_cache_dir() -> Path:
    """``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default (read at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


class ModelSnapshots(Protocol):
    """What the validator needs of a model store (:class:`ModelStore`): sizes before download, snapshots,
    and clean-up of what is no longer needed."""

    def plan(self, repo_id: str, revision: str = "main") -> DownloadPlan: ...

    def fetch(self, repo_id: str, revision: str = "main") -> Path: ...

    def cached_snapshot(self, repo_id: str, revision: str = "main") -> Path | None: ...

    def cleanup(self, keep: Iterable[tuple[str, str]]) -> list[tuple[str, str]]: ...


class ModelStore:
    """Downloads models through ``client`` into ``cache_dir`` within ``budget``.

    ``free_bytes`` reports free disk for a path (tests replace it). Not safe for concurrent use by several
    processes on the same ``cache_dir`` while :meth:`cleanup` runs.
    """

    def __init__(
        self,
        client: HubClient,
        cache_dir: Path,
        budget: DiskBudget = DiskBudget(),
        *,
        allow_patterns: Sequence[str] = MODEL_FILE_PATTERNS,
        free_bytes: Callable[[Path], int] = free_disk_bytes,
    ) -> None:
        self.client = client
        self.cache_dir = Path(cache_dir)
        self.budget = budget
        self.allow_patterns = tuple(allow_patterns)
        self._free_bytes = free_bytes

    # --- reading -----------------------------------------------------------------------------------------

    def plan(self, repo_id: str, revision: str = "main") -> DownloadPlan:
        """Resolve ``revision`` and list the files to fetch; raises UnsupportedRepo for a non-safetensors model."""
        commit = revision if is_commit_sha(revision) else self.client.resolve_revision(repo_id, revision)
        selection = select_files(self.client.repo_files(repo_id, commit), self.allow_patterns)
        missing = missing_model_files(selection.paths)
        if missing:
            raise UnsupportedRepo(
                f"{repo_id}@{commit}: no {' and no '.join(missing)} among the allowed files"
                f" (not fetched: {', '.join(selection.skipped) or 'nothing'})"
            )
        snap = snapshot_path(self.cache_dir, repo_id, commit)
        missing_bytes = sum(f.size for f in selection.selected if not _has_file(snap / f.path, f.size))
        return DownloadPlan(repo_id, commit, selection.selected, selection.skipped, missing_bytes)

    def check_space(self, needed_bytes: int) -> None:
        """Raise DiskBudgetExceeded unless ``needed_bytes`` fit the byte budget and leave the free-disk margin."""
        if needed_bytes <= 0:
            return
        if self.budget.max_bytes is not None:
            used = self.used_bytes()
            if used + needed_bytes > self.budget.max_bytes:
                raise DiskBudgetExceeded(
                    f"need {needed_bytes} bytes, the cache holds {used} of its {self.budget.max_bytes}-byte budget"
                )
        free = self._free_bytes(self.cache_dir)
        if free < needed_bytes + self.budget.margin_bytes:
            raise DiskBudgetExceeded(
                f"need {needed_bytes} bytes plus a {self.budget.margin_bytes}-byte margin, {free} bytes free"
            )

    def fetch(self, repo_id: str, revision: str = "main") -> Path:
        """The local snapshot folder of ``repo_id`` at ``revision``, downloading what is missing.

        If the Hub is unreachable (or offline mode is on) a complete-looking cached snapshot is returned.
        """
        try:
            plan = self.plan(repo_id, revision)
        except HubUnavailable as exc:
            cached = self.cached_snapshot(repo_id, revision)
            if cached is None:
                raise
            logger.warning(
                "%s@%s: Hub unavailable (%s); using the cached snapshot %s", repo_id, revision, exc, cached
            )
            return cached
        self.check_space(plan.missing_bytes)
        path = self.client.download(
            repo_id, plan.commit, cache_dir=self.cache_dir, allow_patterns=self.allow_patterns
        )
        if not is_commit_sha(revision):
            write_ref(self.cache_dir, repo_id, revision, plan.commit)
        return path

    def cached_snapshot(self, repo_id: str, revision: str = "main") -> Path | None:
        """The cached snapshot for ``revision`` if it holds a config and safetensors weights, else None."""
        commit = cached_commit(self.cache_dir, repo_id, revision)
        if commit is None:
            return None
        snap = snapshot_path(self.cache_dir, repo_id, commit)
        if not snap.is_dir() or missing_model_files(p.name for p in snap.iterdir() if p.is_file()):
            return None
        return snap

    # --- space -------------------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes held by the cache, partial downloads included."""
        return disk_usage_bytes(self.cache_dir) if self.cache_dir.exists() else 0

    def cleanup(self, keep: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Delete every snapshot (and partial download) not in ``keep``; return the (repo_id, commit) removed.

        ``keep`` holds (repo_id, revision) pairs; a branch revision keeps the commit the cache's ref points to.
        Refs to deleted commits, blobs no remaining snapshot links to, and emptied repository folders go too.
        """
        kept = {(r, cached_commit(self.cache_dir, r, rev) or rev) for r, rev in keep}
        removed: list[tuple[str, str]] = []
        for repo_id, commit, snap in list(iter_snapshots(self.cache_dir)):
            if (repo_id, commit) not in kept:
                shutil.rmtree(snap)
                removed.append((repo_id, commit))
        for repo_id in sorted({r for r, _ in removed}):
            self._tidy_repo(repo_folder(self.cache_dir, repo_id))
        self._tidy_staging(kept)
        for repo_id, commit in removed:
            logger.info("removed cached snapshot %s@%s", repo_id, commit)
        return removed

    def _tidy_repo(self, folder: Path) -> None:
        snaps = folder / "snapshots"
        remaining = {p.name for p in snaps.iterdir()} if snaps.is_dir() else set()
        refs = folder / "refs"
        if refs.is_dir():
            for ref in [p for p in refs.rglob("*") if p.is_file()]:
                if ref.read_text().strip() not in remaining:
                    ref.unlink()
        blobs = folder / "blobs"
        if blobs.is_dir():
            linked = {
                Path(os.path.realpath(p)).name
                for p in (snaps.rglob("*") if snaps.is_dir() else ())
                if p.is_symlink()
            }
            for blob in blobs.iterdir():
                if blob.is_file() and blob.name not in linked:
                    blob.unlink()
        if not remaining:
            shutil.rmtree(folder)

    def _tidy_staging(self, kept: set[tuple[str, str]]) -> None:
        """Remove staged partial files and lock files of commits that are not kept."""
        staging = self.cache_dir / STAGING_DIR
        if not staging.is_dir():
            return
        for repo_dir in [p for p in staging.iterdir() if p.is_dir()]:
            repo_id = repo_id_from_folder(repo_dir.name)
            for entry in list(repo_dir.iterdir()):
                commit = entry.name.removesuffix(".lock")
                if repo_id is not None and (repo_id, commit) in kept:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            if not any(repo_dir.iterdir()):
                repo_dir.rmdir()


def _has_file(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def fetch_model(
    ref: str | os.PathLike[str],
    *,
    cache_dir: Path | None = None,
    client: HubClient | None = None,
    budget: DiskBudget = DiskBudget(),
) -> Path:
    """A local directory holding the model ``ref`` names: a local directory, or ``namespace/name[@revision]``.

    Hub models are downloaded (safetensors, config and tokenizer files only, verified) into ``cache_dir``
    (default: the Hugging Face cache) through ``client`` (default: :class:`HfHubClient` on ``HF_ENDPOINT``).
    """
    local = Path(ref).expanduser()
    if local.is_dir():
        return local.resolve()
    try:
        model = ModelRef.hub(os.fspath(ref))
    except ValueError as exc:
        raise FileNotFoundError(
            f"{ref!s} is neither a local directory nor namespace/name[@revision]"
        ) from exc
    if client is None:
        from sn29_growth.hub.hf_client import HfHubClient

        client = HfHubClient()
    store = ModelStore(client, cache_dir if cache_dir is not None else default_cache_dir(), budget)
    return store.fetch(model.repo_id, model.revision)
