"""Miner settings: one frozen dataclass, validated where it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from sn29_growth.hub.protocol import validate_repo_id
from sn29_growth.train.config import TrainConfig

UPLOAD_POLICIES = ("if-wins", "always", "never")


@dataclass(frozen=True, kw_only=True)
class MinerConfig:
    """What one miner run does.

    - ``base``: ``None`` = the competition's current best on chain; else a local directory or
      ``namespace/name[@revision]``.
    - ``grow``: ``auto`` (the growth planner's recommended shape within the competition's limits),
      ``none`` (train the base as it is), or the path of a growth recipe (YAML/JSON).
    - ``train``: the training run (``None``: no training). ``train_data``: ``local`` (the embedded
      corpus's train part), ``fineweb`` (FineWeb-edu samples) or a ``.txt``/``.jsonl`` file.
      ``train_procs`` > 1 runs training under ``torchrun`` (FSDP2, one process per GPU).
    - ``dataset``/``samples``/``seed``: the "would it win" evaluation, as a validator runs it.
    - ``upload``: ``if-wins`` (default), ``always`` (upload even if the model would not win) or
      ``never`` (stop after the verdict).
    """

    work_dir: Path
    competition: str = "c00"
    hf_repo: str
    base: str | None = None
    grow: str = "auto"
    grow_seed: int = 0
    train: TrainConfig | None = field(default_factory=TrainConfig)
    train_data: str = "local"
    train_samples: int = 2000  # texts per epoch when train_data is fineweb
    train_procs: int = 1
    dataset: str = "fineweb"
    samples: int | None = None
    seed: int = 0
    device: str = "cpu"
    min_win_rate: float = 0.5
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
        if self.grow_seed < 0:
            raise ValueError(f"grow_seed must be >= 0, got {self.grow_seed}")
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise ValueError("train must be a TrainConfig or None")
        if not self.train_data:
            raise ValueError("train_data must be 'local', 'fineweb' or a file")
        if self.train_samples < 1:
            raise ValueError(f"train_samples must be >= 1, got {self.train_samples}")
        if self.train_procs < 1:
            raise ValueError(f"train_procs must be >= 1, got {self.train_procs}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if not (isinstance(self.min_win_rate, int | float) and math.isfinite(self.min_win_rate)):
            raise ValueError(f"min_win_rate must be a number in [0, 1], got {self.min_win_rate!r}")
        if not 0.0 <= self.min_win_rate <= 1.0:
            raise ValueError(f"min_win_rate must be in [0, 1], got {self.min_win_rate}")
        if self.upload not in UPLOAD_POLICIES:
            raise ValueError(f"upload must be one of {', '.join(UPLOAD_POLICIES)}, got {self.upload!r}")

    @property
    def runs_dir(self) -> Path:
        return self.work_dir / "runs"

    @property
    def hub_cache(self) -> Path:
        return self.work_dir / "hub"

    @property
    def eval_cache(self) -> Path:
        return self.work_dir / "eval-cache"
