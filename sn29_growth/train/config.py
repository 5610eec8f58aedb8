"""Training configuration: one frozen dataclass per concern, each validated when it is built.

``TrainConfig`` gathers the optimizer, the learning-rate schedule, the batch geometry and the
checkpoint policy; every invalid value raises ``ValueError`` naming its field. Each field carries the
help of its command-line flag (:func:`sn29_growth.fields.setting`): ``sn29 train`` and the miner build
their flags from these fields, defaults included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sn29_growth.fields import boolean, fraction, int_at_least, non_negative, one_of, positive, setting

SCHEDULES = ("cosine", "linear", "constant")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
PARAM_DTYPES = ("float32", "bfloat16")
SAVE_DTYPES = ("source", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "on", "off")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """AdamW hyper-parameters. Weight decay applies to matrices only (never to norm gains or biases)."""

    lr: float = setting(3e-4, "peak learning rate", metavar="LR")
    weight_decay: float = setting(0.1, "AdamW weight decay of matrices (not norms, biases)", metavar="WD")
    beta1: float = setting(0.9, "AdamW first-moment decay")
    beta2: float = setting(0.95, "AdamW second-moment decay")
    eps: float = setting(1e-8, "AdamW denominator epsilon")
    grad_clip: float = setting(1.0, "max global gradient norm, 0 = no clipping", metavar="NORM")

    def __post_init__(self) -> None:
        positive("lr", self.lr)
        non_negative("weight_decay", self.weight_decay)
        fraction("beta1", self.beta1, include_one=False)
        fraction("beta2", self.beta2, include_one=False)
        positive("eps", self.eps)
        non_negative("grad_clip", self.grad_clip)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Learning rate over the run, plus the re-warm and freeze phases for parameters new after growth.

    ``warmup_steps``: linear warm-up of every element; then ``kind`` decays to ``min_lr_ratio`` · lr
    at the last step. ``new_lr_warmup``: an extra linear ramp (over that many steps from step 0) on the
    elements a growth recipe marks new. ``new_only_steps``: for that many first steps only new elements
    move; every other element is left bit-identical.
    """

    kind: str = setting("cosine", "learning-rate decay after the warm-up", choices=SCHEDULES)
    warmup_steps: int = setting(10, "linear learning-rate warm-up, in steps", metavar="STEPS")
    min_lr_ratio: float = setting(0.1, "final learning rate / peak learning rate", metavar="R")
    new_lr_warmup: int = setting(
        0,
        "extra learning-rate warm-up, in steps, of the parameter slices a growth added (listed in "
        "growth_recipe.json)",
        metavar="STEPS",
    )
    new_only_steps: int = setting(
        0,
        "train only the new parameter slices for this many first steps (old weights stay bit-identical)",
        metavar="STEPS",
    )

    def __post_init__(self) -> None:
        one_of("kind", self.kind, SCHEDULES)
        int_at_least("warmup_steps", self.warmup_steps, 0)
        fraction("min_lr_ratio", self.min_lr_ratio)
        int_at_least("new_lr_warmup", self.new_lr_warmup, 0)
        int_at_least("new_only_steps", self.new_only_steps, 0)


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Batch geometry. ``batch_size`` is sequences per micro-batch on each process; one optimizer step
    sees ``batch_size · grad_accum · world_size`` windows of ``seq_len`` predicted tokens."""

    batch_size: int = setting(8, "sequences per micro-batch per process", metavar="SEQS")
    seq_len: int = setting(256, "tokens predicted per sequence", metavar="TOKENS")
    grad_accum: int = setting(1, "micro-batches per optimizer step", metavar="N")
    eval_windows: int = setting(  # evenly spaced over the held-out texts
        64, "held-out windows of --seq-len tokens per validation, 0 = all", metavar="N"
    )

    def __post_init__(self) -> None:
        int_at_least("batch_size", self.batch_size, 1)
        int_at_least("seq_len", self.seq_len, 2)
        int_at_least("grad_accum", self.grad_accum, 1)
        int_at_least("eval_windows", self.eval_windows, 0)


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Periodic checkpoints (model, optimizer, RNG, data position) under ``OUT_DIR/checkpoints``."""

    save_every: int = setting(100, "checkpoint every STEPS steps, 0 = never", metavar="STEPS")
    keep: int = setting(2, "complete checkpoints kept (older are deleted)", metavar="N")
    resume: bool = setting(False, "continue from the newest checkpoint in OUT_DIR")

    def __post_init__(self) -> None:
        int_at_least("save_every", self.save_every, 0)
        int_at_least("keep", self.keep, 1)
        boolean("resume", self.resume)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs besides the model directory and the data."""

    steps: int = setting(100, "optimizer steps", metavar="STEPS")
    stop_after: int | None = setting(
        None, "stop with a checkpoint after this many steps; continue later with --resume", metavar="STEPS"
    )
    eval_every: int = setting(  # the flag's default differs per tool (cliutil.add_training_arguments)
        50, "held-out validation every STEPS steps (and at the start and the end), 0 = never", metavar="STEPS"
    )
    optimizer: OptimizerConfig = setting(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = setting(default_factory=ScheduleConfig)
    batch: BatchConfig = setting(default_factory=BatchConfig)
    checkpoint: CheckpointConfig = setting(default_factory=CheckpointConfig)
    device: str = setting("auto", "auto = cuda when available", choices=DEVICES)
    dtype: str = setting(
        "auto", "compute dtype (autocast); auto = bfloat16 on cuda, float32 on cpu", choices=COMPUTE_DTYPES
    )
    param_dtype: str = setting(
        "float32",
        "dtype the weights are stored and updated in (Adam moments stay float32)",
        choices=PARAM_DTYPES,
    )
    save_dtype: str = setting(
        "source",
        "dtype of the saved model; source = the dtype the input checkpoint declares",
        choices=SAVE_DTYPES,
    )
    grad_checkpointing: bool = setting(
        False, "recompute activations in the backward pass: less memory, more compute (default: off)"
    )
    compile: str = setting(
        "auto",
        "torch.compile each decoder layer; auto = off (no device measured to gain yet)",
        choices=COMPILE_MODES,
    )
    fsdp: bool = setting(
        False, "FSDP2 even in one process (the code path of several; always on under torchrun with N > 1)"
    )
    cpu_offload: bool = setting(
        False,
        "FSDP2 only: keep sharded parameters, gradients and optimizer state in CPU memory (see "
        "docs/memory-plan.md)",
    )
    seed: int = setting(0, "random seed (data order, torch RNG)", metavar="SEED")
    progress: bool = setting(True, "a progress bar")
    attn_implementation: str | None = setting(None, "attention kernel (transformers' attn_implementation)")

    def __post_init__(self) -> None:
        int_at_least("steps", self.steps, 1)
        if self.stop_after is not None:
            int_at_least("stop_after", self.stop_after, 1)
        int_at_least("eval_every", self.eval_every, 0)
        one_of("device", self.device, DEVICES)
        one_of("dtype", self.dtype, COMPUTE_DTYPES)
        one_of("param_dtype", self.param_dtype, PARAM_DTYPES)
        one_of("save_dtype", self.save_dtype, SAVE_DTYPES)
        one_of("compile", self.compile, COMPILE_MODES)
        for name in ("fsdp", "cpu_offload"):
            boolean(name, getattr(self, name))
        int_at_least("seed", self.seed, 0)
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
