"""Validator settings: one frozen dataclass, validated where it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_WEIGHTS_INTERVAL_BLOCKS = 175  # ≈ 35 minutes
VERSION_KEY = 1_000


@dataclass(frozen=True, kw_only=True)
class ValidatorConfig:
    model_dir: Path
    netuid: int = 29
    device: str = "cpu"
    competitions: str | None = None  # URL or file; None = the packaged default
    hall_of_fame: str | None = None
    dataset: str = "fineweb"  # fineweb | local | PATH
    samples: int | None = None  # None = the competition's eval_samples
    seed: int | None = None  # None = derived from the block
    eval_timeout_s: float = 3600.0
    weights_interval_blocks: int = DEFAULT_WEIGHTS_INTERVAL_BLOCKS
    revisit_every_steps: int = 12
    max_new_per_step: int | None = None  # None = the competition's pend_size
    set_weights: bool = True
    version_key: int = VERSION_KEY
    disk_budget_bytes: int | None = None
    offline: bool = False
    models_file: Path | None = None
    step_interval_s: float = 60.0
    worker_command: tuple[str, ...] | None = None  # tests: a different worker
    state_path: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.state_path is None:
            object.__setattr__(self, "state_path", self.model_dir / "validator_state.json")
        else:
            object.__setattr__(self, "state_path", Path(self.state_path))
        if self.netuid < 0:
            raise ValueError(f"netuid must be >= 0, got {self.netuid}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.eval_timeout_s <= 0:
            raise ValueError("eval_timeout_s must be positive")
        if self.weights_interval_blocks < 1:
            raise ValueError("weights_interval_blocks must be >= 1")
        if self.samples is not None and self.samples < 1:
            raise ValueError("samples must be >= 1")
        if self.revisit_every_steps < 1:
            raise ValueError("revisit_every_steps must be >= 1")
        if self.offline and self.models_file is None:
            raise ValueError("offline mode needs --models FILE.json")
        if self.step_interval_s < 0:
            raise ValueError("step_interval_s must be >= 0")
