"""What a growth study runs: one frozen dataclass per concern, read from a YAML file.

A study trains one base model per seed, grows it to one target shape with each growth arm, and trains
every arm (plus two baselines: the base model trained on, and the target shape from scratch) with the
same optimizer settings, the same data order and the same number of tokens. Layout of the YAML::

    name: default
    seeds: [0, 1, 2]
    base: {variant: llama-mha, shape: {}, steps: 60, lr: 3.0e-3}
    target: {hidden_size: 128, intermediate_size: 320, num_hidden_layers: 4,
             num_attention_heads: 8, num_key_value_heads: 8}
    train: {steps: 80, lr: 2.0e-3, batch_size: 8, seq_len: 128, eval_every: 10, ...}
    tokens: study-data   # optional: a token corpus folder, read single-epoch (see study/token_data.py)
    arms:
      - {name: divisor, kind: grow, hidden_method: divisor}
      - {name: stock-bf16, kind: grow, hidden_method: stock, param_dtype: bfloat16}
      - {name: divisor-new-only, kind: grow, new_only_steps: 20}
      - {name: plain-copy, kind: grow, depth: copy}
      - {name: continue, kind: continue}
      - {name: scratch, kind: scratch}

Every invalid value raises ``ValueError`` naming its field.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sn29_growth.fields import int_at_least, non_negative, positive
from sn29_growth.growth.spec import HIDDEN_METHODS, INITS, PLACEMENTS
from sn29_growth.tiny import VARIANTS

ARM_KINDS = ("grow", "continue", "scratch")
READS = ("arms", "all")
DEPTH_METHODS = ("identity", "copy")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("auto", "float32", "bfloat16")
PARAM_DTYPES = ("float32", "bfloat16")
SCHEDULES = ("cosine", "linear", "constant")
TARGET_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
SHAPE_KEYS = (*TARGET_KEYS, "head_dim", "max_position_embeddings")
DEFAULT_CONFIG = "study_default.yaml"
GPU_CONFIG = "study_gpu.yaml"
SCALE_CONFIG = "study_scale.yaml"
SCALE_CPU_CONFIG = "study_scale_cpu.yaml"
PACKAGED_CONFIGS = (DEFAULT_CONFIG, GPU_CONFIG, SCALE_CONFIG, SCALE_CPU_CONFIG)


def _shape(name: str, value: Any, allowed: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a mapping, got {type(value).__name__}")
    for key, v in value.items():
        if key not in allowed:
            raise ValueError(f"{name}.{key}: unknown key (known: {', '.join(allowed)})")
        int_at_least(f"{name}.{key}", v, 1)
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """The base model: a tiny variant (``shape`` overrides its config) trained ``steps`` steps at ``lr``."""

    variant: str = "llama-mha"
    shape: dict[str, int] = field(default_factory=dict)
    init_std: float | None = None
    steps: int = 60
    lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"base.variant: must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        object.__setattr__(self, "shape", _shape("base.shape", self.shape, SHAPE_KEYS))
        if self.init_std is not None:
            positive("base.init_std", self.init_std)
        int_at_least("base.steps", self.steps, 1)
        positive("base.lr", self.lr)


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    """Training after growth, the same for every arm (the base phase shares all but steps and lr)."""

    steps: int = 80
    lr: float = 2e-3
    warmup_steps: int = 8
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    new_lr_warmup: int = 0
    batch_size: int = 8
    seq_len: int = 128
    eval_every: int = 10
    eval_windows: int = 32

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            int_at_least(f"train.{name}", getattr(self, name), 1)
        int_at_least("train.seq_len", self.seq_len, 2)
        for name in ("warmup_steps", "new_lr_warmup", "eval_windows"):
            int_at_least(f"train.{name}", getattr(self, name), 0)
        positive("train.lr", self.lr)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule: must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (isinstance(self.min_lr_ratio, int | float) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio!r}")
        non_negative("train.weight_decay", self.weight_decay)
        if not (isinstance(self.beta2, int | float) and 0 <= self.beta2 < 1):
            raise ValueError(f"train.beta2: must be in [0, 1), got {self.beta2!r}")
        non_negative("train.grad_clip", self.grad_clip)


@dataclass(frozen=True, kw_only=True)
class ArmConfig:
    """One arm. ``grow``: grow the base with these growth options; ``continue``: train the base model
    on; ``scratch``: a freshly initialised model of the target shape. ``depth: copy`` replaces the
    identity blocks of a grown model by plain copies of their neighbour (non-preserving stacking).

    Training knobs of one arm (the rest of ``train`` is shared): ``param_dtype: bfloat16`` stores and
    updates the weights in bf16 (no fp32 master copy; Adam moments stay fp32); ``warmup_steps`` and
    ``new_lr_warmup`` override the shared values (``warmup_steps: 0``: no learning-rate re-warm);
    ``new_only_steps`` trains only the elements growth added for that many first steps. ``reads: all``
    (a scratch arm of a token-corpus study) trains on the base's tokens and the arms' tokens, ``base.steps
    + train.steps`` steps: the from-scratch run that the tokens of base + growth are compared with."""

    name: str
    kind: str = "grow"
    hidden_method: str = "divisor"
    init: str = "trainable"
    noise: float | None = None
    depth: str = "identity"
    layer_placement: str = "interleaved"
    param_dtype: str = "float32"
    warmup_steps: int | None = None
    new_lr_warmup: int | None = None
    new_only_steps: int = 0
    reads: str = "arms"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"arms.name: must be a non-empty name without '/', got {self.name!r}")
        where = f"arms[{self.name}]"
        if self.kind not in ARM_KINDS:
            raise ValueError(f"{where}.kind: must be one of {', '.join(ARM_KINDS)}, got {self.kind!r}")
        if self.hidden_method not in HIDDEN_METHODS:
            raise ValueError(f"{where}.hidden_method: must be one of {', '.join(HIDDEN_METHODS)}")
        if self.init not in INITS:
            raise ValueError(f"{where}.init: must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.noise is not None:
            non_negative(f"{where}.noise", self.noise)
        if self.depth not in DEPTH_METHODS:
            raise ValueError(f"{where}.depth: must be one of {', '.join(DEPTH_METHODS)}, got {self.depth!r}")
        if self.layer_placement not in PLACEMENTS or self.layer_placement == "positions":
            raise ValueError(f"{where}.layer_placement: must be 'interleaved' or 'append'")
        if self.param_dtype not in PARAM_DTYPES:
            raise ValueError(
                f"{where}.param_dtype: must be one of {', '.join(PARAM_DTYPES)}, got {self.param_dtype!r}"
            )
        for name in ("warmup_steps", "new_lr_warmup"):
            if getattr(self, name) is not None:
                int_at_least(f"{where}.{name}", getattr(self, name), 0)
        int_at_least(f"{where}.new_only_steps", self.new_only_steps, 0)
        if self.reads not in READS:
            raise ValueError(f"{where}.reads: must be one of {', '.join(READS)}, got {self.reads!r}")
        if self.reads == "all" and self.kind != "scratch":
            raise ValueError(f"{where}.reads: 'all' is for a scratch arm (the others start from the base)")
        if self.new_only_steps and self.kind != "grow":
            raise ValueError(f"{where}.new_only_steps: only a grow arm has new elements to train alone")

    @property
    def grown(self) -> bool:
        return self.kind == "grow"

    @property
    def preserving(self) -> bool:
        """Whether the arm starts from exactly the base model's function."""
        return self.kind == "continue" or (self.kind == "grow" and self.depth == "identity")

    def label(self) -> str:
        if self.kind != "grow":
            return ", ".join([self.kind, *self.knobs()])
        parts = [self.hidden_method, self.init]
        if self.noise is not None:
            parts.append(f"noise={self.noise:g}")
        if self.depth == "copy":
            parts.append("depth=copy")
        return ", ".join(parts + self.knobs())

    def knobs(self) -> list[str]:
        """The arm's training overrides, for labels."""
        out = []
        if self.param_dtype != "float32":
            out.append(f"{self.param_dtype} weights")
        if self.warmup_steps is not None:
            out.append(f"warmup={self.warmup_steps}")
        if self.new_lr_warmup is not None:
            out.append(f"new_lr_warmup={self.new_lr_warmup}")
        if self.new_only_steps:
            out.append(f"new_only={self.new_only_steps}")
        if self.reads == "all":
            out.append("base + arm tokens")
        return out


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    name: str = "study"
    seeds: tuple[int, ...] = (0, 1, 2)
    base: BaseConfig = field(default_factory=BaseConfig)
    target: dict[str, int] = field(default_factory=dict)
    train: PhaseConfig = field(default_factory=PhaseConfig)
    arms: tuple[ArmConfig, ...] = ()
    device: str = "cpu"
    dtype: str = "auto"
    threads: int = 1  # torch CPU threads (0: leave torch's default)
    data: str = "local"  # 'local' (embedded corpus, train part) or a .txt/.jsonl file
    validation: str | None = None  # None: the embedded corpus's held-out part; else a .txt/.jsonl file
    tokens: str | None = None  # a token corpus folder: single-epoch slices of it replace data/validation
    data_seed_offset: int = 1000  # arms shuffle with seed + offset: not the base phase's order again
    preserve_tolerance: float = 1e-5  # |loss after growth - base loss| allowed for preserving arms
    beat_margin: float = 1e-3  # an arm beats the base once its loss is below the base's by this much
    keep_models: bool = False  # keep every arm's trained weights (else only logs and summaries)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string, got {self.name!r}")
        seeds = tuple(self.seeds) if isinstance(self.seeds, list | tuple) else None
        if not seeds:
            raise ValueError(f"seeds: must be a non-empty list of integers, got {self.seeds!r}")
        for s in seeds:
            int_at_least("seeds", s, 0)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: must be distinct, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.base, BaseConfig):
            raise ValueError("base: must be a BaseConfig")
        if not isinstance(self.train, PhaseConfig):
            raise ValueError("train: must be a PhaseConfig")
        object.__setattr__(self, "target", _shape("target", self.target, TARGET_KEYS))
        if not self.target:
            raise ValueError("target: give at least one of " + ", ".join(TARGET_KEYS))
        arms = tuple(self.arms)
        if not arms or not all(isinstance(a, ArmConfig) for a in arms):
            raise ValueError("arms: must be a non-empty list of arms")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be unique, got {names}")
        object.__setattr__(self, "arms", arms)
        if self.device not in DEVICES:
            raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        int_at_least("threads", self.threads, 0)
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data: must be 'local' or a file path, got {self.data!r}")
        if self.validation is not None and not isinstance(self.validation, str):
            raise ValueError(f"validation: must be a file path or null, got {self.validation!r}")
        if self.tokens is not None:
            if not isinstance(self.tokens, str) or not self.tokens:
                raise ValueError(f"tokens: must be a token corpus folder, got {self.tokens!r}")
            if self.data != "local" or self.validation is not None:
                raise ValueError("tokens: a token corpus replaces data and validation; leave those unset")
        for arm in arms:
            if arm.reads == "all" and self.tokens is None:
                raise ValueError(f"arms[{arm.name}].reads: 'all' needs a token corpus (tokens)")
            if arm.new_only_steps > self.train.steps:
                raise ValueError(
                    f"arms[{arm.name}].new_only_steps: {arm.new_only_steps} exceeds train.steps={self.train.steps}"
                )
        int_at_least("data_seed_offset", self.data_seed_offset, 0)
        positive("preserve_tolerance", self.preserve_tolerance)
        non_negative("beat_margin", self.beat_margin)
        if not isinstance(self.keep_models, bool):
            raise ValueError(f"keep_models: must be a bool, got {self.keep_models!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d


def _build(cls, data: Any, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    try:
        return cls(**data)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from e


def study_from_dict(data: Any) -> StudyConfig:
    """A :class:`StudyConfig` from parsed YAML/JSON; a top-level ``gpu`` mapping is documentation only."""
    if not isinstance(data, dict):
        raise ValueError("a study config must be a mapping")
    data = {k: v for k, v in data.items() if k != "gpu"}
    arms = data.get("arms")
    if not isinstance(arms, list):
        raise ValueError("arms: must be a non-empty list of arms")
    for i, a in enumerate(arms):
        if not isinstance(a, dict):
            raise ValueError(f"arms[{i}]: must be a mapping")
    data = {
        **data,
        "base": _build(BaseConfig, data.get("base"), "base"),
        "train": _build(PhaseConfig, data.get("train"), "train"),
        "arms": tuple(_build(ArmConfig, a, f"arms[{i}]") for i, a in enumerate(arms)),
    }
    return _build(StudyConfig, data, "study")


def packaged_config_text(name: str = DEFAULT_CONFIG) -> str:
    """The text of a study config shipped in ``sn29_growth/data`` (``study_default.yaml``, ``study_gpu.yaml``)."""
    return resources.files("sn29_growth").joinpath(f"data/{name}").read_text(encoding="utf-8")


def parse_study(text: str, where: str = "study config") -> StudyConfig:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: cannot parse YAML ({e})") from e
    try:
        return study_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def load_study_config(path: str | os.PathLike | None = None) -> StudyConfig:
    """The study in ``path`` (YAML), or the packaged default study when ``path`` is None; a bare name of a
    packaged config (``study_scale.yaml``) that is not a file here reads the packaged one."""
    if path is None:
        return parse_study(packaged_config_text(), DEFAULT_CONFIG)
    p = Path(path)
    if not p.is_file() and p.name == str(path) and p.name in PACKAGED_CONFIGS:
        return parse_study(packaged_config_text(p.name), p.name)
    if not p.is_file():
        raise FileNotFoundError(f"--config: {p} does not exist")
    return parse_study(p.read_text(encoding="utf-8"), str(p))
