"""What names a model: a local folder, or a repository at a revision on the Hugging Face Hub.

One type for every layer: ``sn29 evaluate`` arguments (a folder or ``org/name[@revision]``), the miner's
``--base`` and the Hub store's downloads (always a repository). ``spec`` keeps the text a reference was
parsed from, which is how reports name the model.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_REVISION = "main"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is ``namespace/name`` with Hub-safe characters, else raise ValueError."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) and ".." not in p for p in parts):
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
    if len(repo_id) > 96:
        raise ValueError(f"repo_id must be at most 96 characters, got {len(repo_id)}")
    return repo_id


@dataclass(frozen=True)
class ModelRef:
    """Exactly one of ``repo_id`` (with ``revision``) and ``path``."""

    repo_id: str | None = None
    revision: str = DEFAULT_REVISION
    path: Path | None = None
    spec: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.repo_id is None) == (self.path is None):
            raise ValueError("a model reference is either a local path or a Hub repo_id")
        if self.repo_id is not None:
            validate_repo_id(self.repo_id)
            if not self.revision or any(c.isspace() for c in self.revision) or ".." in self.revision:
                raise ValueError(f"revision must be a branch, tag or commit, got {self.revision!r}")
        if not self.spec:
            object.__setattr__(self, "spec", str(self))

    @classmethod
    def hub(cls, text: str) -> ModelRef:
        """``namespace/name[@revision]`` (the revision defaults to ``main``)."""
        repo_id, sep, revision = text.partition("@")
        if sep and not revision:
            raise ValueError(f"empty revision in {text!r}")
        return cls(repo_id, revision or DEFAULT_REVISION, spec=text)

    @classmethod
    def parse(cls, spec: str | os.PathLike) -> ModelRef:
        """A local directory, or else a Hub reference (a path that exists but is no directory is neither)."""
        text = os.fspath(spec)
        if Path(text).is_dir():
            return cls(path=Path(text), spec=text)
        if not Path(text).exists():
            try:
                return cls.hub(text)
            except ValueError:
                pass
        raise ValueError(f"model {text!r}: not a directory or an org/name[@revision] Hub reference")

    def at(self, revision: str) -> ModelRef:
        """The same repository at another revision (e.g. the commit a branch resolved to)."""
        if self.repo_id is None:
            raise ValueError(f"{self.spec}: a local model has no revisions")
        return dataclasses.replace(self, revision=revision)

    def __str__(self) -> str:
        return os.fspath(self.path) if self.path is not None else f"{self.repo_id}@{self.revision}"
