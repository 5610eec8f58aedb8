"""What to grow: one :class:`GrowthStep` per stage (target sizes, method, init) and a :class:`GrowthSpec`.

A spec is plain data, validated on construction, saved verbatim into ``growth_recipe.json``. Recipes are
YAML/JSON files of the form::

    seed: 0
    dtype: bfloat16
    steps:
      - {hidden_size: 96, num_attention_heads: 6, hidden_method: divisor}
      - {num_hidden_layers: 4, layer_placement: interleaved}
      - {intermediate_size: 256}

Step keys are the Hugging Face config names (``num_layers`` is accepted for ``num_hidden_layers``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

HIDDEN_METHODS = ("divisor", "stock", "clone")
INITS = ("trainable", "zeros")
PLACEMENTS = ("interleaved", "append", "positions")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
DTYPES.update({"float16": "float16", "fp16": "float16"})
TARGETS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)
ALIASES = {"num_layers": "num_hidden_layers", "layers": "num_hidden_layers"}


def normalize_dtype(value: str | None) -> str | None:
    if value is None:
        return None
    key = str(value).removeprefix("torch.").lower()
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(set(DTYPES.values()))}, got {value!r}")
    return DTYPES[key]


@dataclass(frozen=True)
class GrowthStep:
    """One growth stage. ``None`` targets keep the current size."""

    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    vocab_size: int | None = None
    hidden_method: str = "divisor"
    init: str = "trainable"
    noise: float | None = None  # None: the method's default (clone 1e-2, otherwise 0)
    layer_placement: str = "interleaved"
    layer_positions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in TARGETS:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.hidden_method not in HIDDEN_METHODS:
            raise ValueError(f"hidden_method must be one of {HIDDEN_METHODS}, got {self.hidden_method!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.noise is not None and (isinstance(self.noise, bool) or not float(self.noise) >= 0):
            raise ValueError(f"noise must be a non-negative number, got {self.noise!r}")
        if self.layer_placement not in PLACEMENTS:
            raise ValueError(f"layer_placement must be one of {PLACEMENTS}, got {self.layer_placement!r}")
        object.__setattr__(self, "layer_positions", tuple(int(p) for p in self.layer_positions))
        if self.layer_positions and self.layer_placement != "positions":
            raise ValueError("layer_positions is given but layer_placement is not 'positions'")
        if self.layer_placement == "positions" and not self.layer_positions:
            raise ValueError("layer_placement 'positions' needs layer_positions")
        if any(p < 0 for p in self.layer_positions) or len(set(self.layer_positions)) != len(
            self.layer_positions
        ):
            raise ValueError(
                f"layer_positions must be distinct non-negative indices, got {self.layer_positions}"
            )

    @property
    def noise_level(self) -> float:
        if self.noise is not None:
            return float(self.noise)
        return 1e-2 if self.hidden_method == "clone" else 0.0

    def targets(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in TARGETS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer_positions"] = list(self.layer_positions)
        return {k: v for k, v in d.items() if v is not None and v != []}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrowthStep:
        if not isinstance(data, dict):
            raise ValueError(f"a growth step must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in data.items():
            key = ALIASES.get(key, key)
            if key not in known:
                raise ValueError(f"unknown growth step key {key!r} (known: {', '.join(sorted(known))})")
            kw[key] = value
        if "layer_positions" in kw:
            lp = kw["layer_positions"]
            kw["layer_positions"] = tuple(lp) if isinstance(lp, list | tuple) else (lp,)
            kw.setdefault("layer_placement", "positions")
        return cls(**kw)


@dataclass(frozen=True)
class GrowthSpec:
    """A whole growth: steps applied in order, one seed, one output dtype (None: the source's)."""

    steps: tuple[GrowthStep, ...]
    seed: int = 0
    dtype: str | None = None
    off_network: bool = False  # allow shapes the network's transformers 4.44 cannot load

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("steps must hold at least one growth step")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "dtype", normalize_dtype(self.dtype))
        object.__setattr__(self, "steps", tuple(self.steps))
        if not isinstance(self.off_network, bool):
            raise ValueError(f"off_network must be true or false, got {self.off_network!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"seed": self.seed, "steps": [s.to_dict() for s in self.steps]}
        if self.dtype:
            d["dtype"] = self.dtype
        if self.off_network:
            d["off_network"] = True
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrowthSpec:
        if not isinstance(data, dict):
            raise ValueError("a growth recipe must be a mapping with a 'steps' list")
        unknown = set(data) - {"steps", "seed", "dtype", "defaults", "off_network"}
        if unknown:
            raise ValueError(f"unknown growth recipe key(s): {', '.join(sorted(unknown))}")
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ValueError("a growth recipe needs a non-empty 'steps' list")
        defaults = data.get("defaults") or {}
        return cls(
            steps=tuple(GrowthStep.from_dict({**defaults, **s}) for s in steps),
            seed=data.get("seed", 0),
            dtype=data.get("dtype"),
            off_network=data.get("off_network", False),
        )


RECIPE_SHAPE = """expected a mapping with a 'steps' list (a full example: docs/formats.md), e.g.
  steps:
    - num_layers: 4
      intermediate_size: 320
    - hidden_size: 128"""


def load_recipe(path: str | os.PathLike) -> GrowthSpec:
    """A :class:`GrowthSpec` from a YAML or JSON recipe file; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--recipe: {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise ValueError(f"--recipe {p}: cannot parse ({e})") from e
    try:
        return GrowthSpec.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--recipe {p}: {e}\n{RECIPE_SHAPE}") from e
