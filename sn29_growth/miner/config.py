"""Miner settings: one frozen dataclass, validated where it is built; its fields carry the help of the
miner's flags (``neurons/miner.py`` builds them with :func:`sn29_growth.cliutil.add_setting`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sn29_growth.fields import fraction, int_at_least, one_of, setting
from sn29_growth.hub.protocol import validate_repo_id
from sn29_growth.train.config import TrainConfig

UPLOAD_POLICIES = ("if-wins", "always", "never")
ONLINE_TRAIN_DATA = "hf://HuggingFaceFW/fineweb-edu-score-2"
"""The miner's training data online: FineWeb-edu (score >= 2) from its own parquet shards, tokenized while
training into ``work_dir/data``."""


@dataclass(frozen=True, kw_only=True)
class MinerConfig:
    """What one miner run does.

    - ``base``: ``None`` = the competition's current best on chain; else a local directory or
      ``namespace/name[@revision]``.
    - ``grow``: ``auto`` (the growth planner's recommended shape within the competition's limits),
      ``none`` (train the base as it is), or the path of a growth recipe (YAML/JSON).
    - ``train``: the training run (``None``: no training). ``train_data``: ``local`` (the embedded
      corpus's train part), ``hf://org/name[/config][@split]`` or a folder of ``.parquet``/``.jsonl``/``.txt``
      files (tokenized while training into ``data_dir``; the miner's flags default to
      :data:`ONLINE_TRAIN_DATA` online), ``fineweb`` (FineWeb-edu samples through the datasets-server rows
      API: the small, slow path), a folder prepared by ``sn29 data`` (token ids read memory-mapped) or a
      ``.txt``/``.jsonl`` file.
      ``train_procs`` > 1 runs training under ``torchrun`` (FSDP2, one process per GPU).
    - ``dataset``/``samples``/``seed``: the "would it win" evaluation, as a validator runs it.
    - ``upload``: ``if-wins`` (default), ``always`` (upload even if the model would not win) or
      ``never`` (stop after the verdict).
    """

    work_dir: Path
    competition: str = setting("c00", "competition id")
    hf_repo: str
    base: str | None = None
    grow: str = setting(
        "auto",
        "auto: the planner's shape within the limits (see `sn29 plan SRC --competition`); none: no growth; or "
        "a recipe file (a 'steps' list: docs/formats.md)",
        metavar="auto|none|RECIPE",
    )
    grow_seed: int = setting(0, "seed of the growth's new weights", metavar="SEED")
    train: TrainConfig | None = setting(default_factory=TrainConfig)
    train_data: str = "local"
    train_samples: int = setting(  # texts per epoch when train_data is fineweb
        2000, "FineWeb-edu texts per epoch with --data fineweb (miner only)", metavar="TEXTS"
    )
    train_procs: int = setting(
        1, "processes (GPUs) for training: >1 runs torchrun with FSDP2 (miner only)", metavar="N"
    )
    dataset: str = "fineweb"
    samples: int | None = setting(None, "samples evaluated (default: the competition's)", metavar="N")
    seed: int = setting(0, "sample seed (evaluation, and FineWeb training texts)", metavar="SEED")
    device: str = "cpu"
    min_win_rate: float = setting(0.5, "win rate needed to upload, 0..1", metavar="RATE")
    upload: str = "if-wins"

    def __post_init__(self) -> None:
        object.__setattr__(self, "work_dir", Path(self.work_dir).expanduser())
        if not isinstance(self.competition, str) or not self.competition:
            raise ValueError("competition must be a non-empty competition id (e.g. c00)")
        try:
            validate_repo_id(self.hf_repo)
        except ValueError as e:
            raise ValueError(f"hf_repo: {e}") from None
        if not self.grow:
            raise ValueError("grow must be 'auto', 'none' or the path of a growth recipe")
        int_at_least("grow_seed", self.grow_seed, 0)
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise ValueError("train must be a TrainConfig or None")
        if not self.train_data:
            raise ValueError("train_data must be 'local', hf://…, 'fineweb', a folder or a file")
        int_at_least("train_samples", self.train_samples, 1)
        int_at_least("train_procs", self.train_procs, 1)
        if self.samples is not None:
            int_at_least("samples", self.samples, 1)
        int_at_least("seed", self.seed, 0)
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        fraction("min_win_rate", self.min_win_rate)
        one_of("upload", self.upload, UPLOAD_POLICIES)

    @property
    def runs_dir(self) -> Path:
        return self.work_dir / "runs"

    @property
    def data_dir(self) -> Path:
        """Training data tokenized while training (one folder per source and tokenizer, shared by runs)."""
        return self.work_dir / "data"

    @property
    def hub_cache(self) -> Path:
        return self.work_dir / "hub"

    @property
    def eval_cache(self) -> Path:
        return self.work_dir / "eval-cache"
