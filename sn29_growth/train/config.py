"""Training configuration: one frozen dataclass per concern, each validated when it is built.

``TrainConfig`` gathers the optimizer, the learning-rate schedule, the batch geometry and the
checkpoint policy; every invalid value raises ``ValueError`` naming its field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEDULES = ("cosine", "linear", "constant")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
PARAM_DTYPES = ("float32", "bfloat16")
SAVE_DTYPES = ("source", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")


def _int_at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """AdamW hyper-parameters. Weight decay applies to matrices only (never to norm gains or biases)."""

    lr: float = 3e-4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _non_negative("weight_decay", self.weight_decay)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
                raise ValueError(f"{name}: must be in [0, 1), got {value!r}")
        _positive("eps", self.eps)
        _non_negative("grad_clip", self.grad_clip)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Learning rate over the run, plus the re-warm and freeze phases for parameters new after growth.

    ``warmup_steps``: linear warm-up of every element; then ``kind`` decays to ``min_lr_ratio`` · lr
    at the last step. ``new_lr_warmup``: an extra linear ramp (over that many steps from step 0) on the
    elements a growth recipe marks new. ``new_only_steps``: for that many first steps only new elements
    move; every other element is left bit-identical.
    """

    kind: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    new_lr_warmup: int = 0
    new_only_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"kind: must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        _int_at_least("warmup_steps", self.warmup_steps, 0)
        if not (isinstance(self.min_lr_ratio, int | float) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ValueError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio!r}")
        _int_at_least("new_lr_warmup", self.new_lr_warmup, 0)
        _int_at_least("new_only_steps", self.new_only_steps, 0)


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Batch geometry. ``batch_size`` is sequences per micro-batch on each process; one optimizer step
    sees ``batch_size · grad_accum · world_size`` windows of ``seq_len`` predicted tokens."""

    batch_size: int = 8
    seq_len: int = 256
    grad_accum: int = 1
    eval_windows: int = 64  # held-out windows per validation (evenly spaced); 0 = all of them

    def __post_init__(self) -> None:
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("seq_len", self.seq_len, 2)
        _int_at_least("grad_accum", self.grad_accum, 1)
        _int_at_least("eval_windows", self.eval_windows, 0)


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Periodic checkpoints (model, optimizer, RNG, data position) under ``OUT_DIR/checkpoints``."""

    save_every: int = 100  # 0 = no periodic checkpoints
    keep: int = 2  # complete checkpoints kept (older ones are deleted after a new one is written)
    resume: bool = False

    def __post_init__(self) -> None:
        _int_at_least("save_every", self.save_every, 0)
        _int_at_least("keep", self.keep, 1)
        if not isinstance(self.resume, bool):
            raise ValueError(f"resume: must be a bool, got {self.resume!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs besides the model directory and the data."""

    steps: int = 100
    stop_after: int | None = None  # stop (with a checkpoint) once this many steps are done; resume later
    eval_every: int = 50  # 0 = no validation; else at step 0, every N steps and at the end
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    device: str = "auto"  # auto = cuda when available
    dtype: str = "auto"  # compute dtype under autocast; auto = bfloat16 on cuda, float32 on cpu
    param_dtype: str = "float32"  # dtype the weights (and Adam moments) are stored and updated in
    save_dtype: str = "source"  # dtype of the final model; source = the dtype MODEL_DIR declares
    grad_checkpointing: bool = False
    seed: int = 0
    progress: bool = True
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        _int_at_least("steps", self.steps, 1)
        if self.stop_after is not None:
            _int_at_least("stop_after", self.stop_after, 1)
        _int_at_least("eval_every", self.eval_every, 0)
        if self.device not in DEVICES:
            raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(COMPUTE_DTYPES)}, got {self.dtype!r}")
        if self.param_dtype not in PARAM_DTYPES:
            raise ValueError(
                f"param_dtype: must be one of {', '.join(PARAM_DTYPES)}, got {self.param_dtype!r}"
            )
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"save_dtype: must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")
        _int_at_least("seed", self.seed, 0)
        if self.schedule.new_only_steps > self.steps:
            raise ValueError(
                f"schedule.new_only_steps: {self.schedule.new_only_steps} exceeds steps={self.steps}"
            )
        for name, cls in (
            ("optimizer", OptimizerConfig),
            ("schedule", ScheduleConfig),
            ("batch", BatchConfig),
            ("checkpoint", CheckpointConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name}: must be a {cls.__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
