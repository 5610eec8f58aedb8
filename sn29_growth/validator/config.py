"""Validator settings: one frozen dataclass, validated where it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sn29_growth.eval.budget import BudgetSettings
from sn29_growth.fields import int_at_least, non_negative, positive

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
    eval_timeout_s: float | None = None  # None: each model's own budget (eval/budget.py)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    weights_interval_blocks: int = DEFAULT_WEIGHTS_INTERVAL_BLOCKS
    revisit_every_steps: int = 12
    max_new_per_step: int | None = None  # None = the competition's pend_size
    set_weights: bool = True
    version_key: int = VERSION_KEY
    disk_budget_bytes: int | None = None
    offline: bool = False
    models_file: Path | None = None
    step_interval_s: float = 60.0
    max_environment_failures: int = 5  # consecutive steps abandoned for the host's fault, then exit
    worker_command: tuple[str, ...] | None = None  # tests: a different worker
    state_path: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.state_path is None:
            object.__setattr__(self, "state_path", self.model_dir / "validator_state.json")
        else:
            object.__setattr__(self, "state_path", Path(self.state_path))
        int_at_least("netuid", self.netuid, 0)
        if not isinstance(self.device, str) or (
            self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:")
        ):
            raise ValueError(f"device: must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.eval_timeout_s is not None:
            positive("eval_timeout_s", self.eval_timeout_s)
        if not isinstance(self.budget, BudgetSettings):
            raise ValueError(f"budget: must be BudgetSettings, got {type(self.budget).__name__}")
        int_at_least("weights_interval_blocks", self.weights_interval_blocks, 1)
        if self.samples is not None:
            int_at_least("samples", self.samples, 1)
        int_at_least("revisit_every_steps", self.revisit_every_steps, 1)
        if self.offline and self.models_file is None:
            raise ValueError("offline mode needs --models FILE.json")
        non_negative("step_interval_s", self.step_interval_s)
        int_at_least("max_environment_failures", self.max_environment_failures, 1)
