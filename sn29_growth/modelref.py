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


# ------------------------------------------------------------------------------------------- arguments


class ModelArgumentError(ValueError):
    """A model argument that names nothing usable; the message is ``FLAG SPEC: reason``."""


NOT_FOUND = "not found"
IS_FILE = "is a file; a model folder (holding config.json) is expected"
NO_CONFIG = "no config.json in this folder: not a model folder"
NO_WEIGHTS = "no weights in this folder (no *.safetensors file)"
HUB_OFFLINE = "a Hub model, but the Hub is offline and the model is not in the local cache"
LOCAL_ONLY = "not found (this argument takes a local folder, not a Hub id)"
NO_TOKENIZER = "no tokenizer: {missing} missing (copy the base model's tokenizer files into the folder)"
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def hub_offline() -> bool:
    """Whether Hugging Face Hub access is switched off (``HF_HUB_OFFLINE``, as the environment says now)."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import constants

    cache = Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    return (cache / f"models--{repo_id.replace('/', '--')}").is_dir()


def _looks_local(spec: str) -> bool:
    if spec in (".", "..") or spec.startswith(("./", "../", "/", "~")):
        return True
    name = spec.split("@", 1)[0]  # a revision (branch name) may itself hold slashes
    return name.count("/") != 1


def resolve_model_argument(
    spec: str | os.PathLike,
    flag: str = "MODEL",
    *,
    hub: bool = True,
    weights: bool = True,
    tokenizer: bool = False,
    config_file: bool = False,
    offline: bool | None = None,
) -> ModelRef:
    """The model a command-line argument names, or :class:`ModelArgumentError` saying why it names none.

    The one resolver of every model argument (``sn29`` commands, the miner's ``--base``, the validator's
    ``--models`` entries), so that each problem reads the same everywhere: not found, a file where a folder
    is expected (``config_file``: a ``config.json``-like file is accepted), a folder without
    ``config.json`` or (``weights``) without safetensors weights, a Hub id while the Hub is offline and the
    model is not cached (``hub``: Hub ids are accepted at all), a folder without (``tokenizer``) its
    tokenizer's files. ``offline``: whether the Hugging Face Hub is out of reach (None: ``HF_HUB_OFFLINE``
    says; False where another Hub serves, e.g. the miner's local one).
    """
    text = os.fspath(spec)

    def fail(reason: str) -> ModelArgumentError:
        return ModelArgumentError(f"{flag} {text}: {reason}")

    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise fail(NO_CONFIG)
        if weights and not any(path.glob("*.safetensors")):
            raise fail(NO_WEIGHTS)
        if tokenizer and not any((path / name).is_file() for name in REQUIRED_TOKENIZER_FILES):
            raise fail(NO_TOKENIZER.format(missing=" and ".join(REQUIRED_TOKENIZER_FILES)))
        return ModelRef(path=path, spec=text)
    if path.exists():
        if config_file and path.is_file():
            return ModelRef(path=path, spec=text)
        raise fail(IS_FILE)
    if _looks_local(text):
        raise fail(NOT_FOUND)
    try:
        ref = ModelRef.hub(text)
    except ValueError:
        raise fail(NOT_FOUND) from None
    if not hub:
        raise fail(LOCAL_ONLY)
    if (hub_offline() if offline is None else offline) and not _in_hub_cache(ref.repo_id):
        raise fail(HUB_OFFLINE)
    return ref
