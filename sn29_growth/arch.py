"""Per-family tensor tables for Llama and Phi3: every tensor, what each of its axes indexes, fused layouts.

An axis is described by its *roles* (what its entries index) and by how new entries along it are
initialised when that role grows. Roles:

- ``hidden``: the residual stream (d)            - ``q``: query heads × head_dim (H·hd)
- ``kv``: key/value heads × head_dim (K·hd)       - ``inter``: the MLP width (I)
- ``vocab``: token rows (V)

A fused axis lists its segments in order: Phi3 ``qkv_proj`` rows are ``("q", "kv", "kv")`` and
``gate_up_proj`` rows ``("inter", "inter")``. New-entry rules (the "exactly one zero factor" rule of
growth): readers of the residual (q/k/v/gate/up/lm_head columns) and the rows they produce get random
values; writers into the residual (embedding columns, o_proj/down_proj rows, their biases) and the
columns that read a new head or MLP unit get zeros; norm gains get ones; new vocab rows the mean row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sn29_growth.reasons import quoted

ROLES = ("hidden", "q", "kv", "inter", "vocab")
NEW_RULES = ("zero", "random", "one", "mean")
SUPPORTED = {"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}
IGNORED_TENSORS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


class UnsupportedArchitecture(ValueError):
    """The checkpoint is not a Llama/Phi3 causal LM this engine can grow."""


@dataclass(frozen=True)
class Axis:
    """One tensor axis: the roles of its segments, the rule for new entries, whether it is a linear's input."""

    roles: tuple[str, ...]
    new: str
    reads: bool = False

    def __post_init__(self) -> None:
        if not self.roles or any(r not in ROLES for r in self.roles):
            raise ValueError(f"roles must be drawn from {ROLES}, got {self.roles!r}")
        if self.new not in NEW_RULES:
            raise ValueError(f"new must be one of {NEW_RULES}, got {self.new!r}")


@dataclass(frozen=True)
class TensorEntry:
    """A tensor of the family: HF name pattern (``{layer}`` for the block index) and its axes."""

    pattern: str
    axes: tuple[Axis, ...]
    kind: str  # "embedding" | "linear" | "bias" | "norm"
    writer: bool = False  # adds into the residual stream: zeroed in an inserted identity block
    requires: str | None = None  # "attention_bias" | "mlp_bias" | "untied": present only then

    @property
    def layered(self) -> bool:
        return "{layer}" in self.pattern

    def name(self, layer: int | None = None) -> str:
        return self.pattern.format(layer=layer) if self.layered else self.pattern

    def regex(self) -> re.Pattern:
        return re.compile("^" + re.escape(self.pattern).replace(r"\{layer\}", r"(\d+)") + "$")


@dataclass(frozen=True)
class Shape:
    """The growable dimensions of a Llama/Phi3 config, plus what the norms and the lm_head depend on."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    norm_divisor: float | None = None
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED:
            raise UnsupportedArchitecture(
                f"model_type {self.model_type!r} is not supported (supported: {', '.join(SUPPORTED)})"
            )
        for f in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
        ):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{f} must be a positive integer, got {quoted(v)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads ({self.num_key_value_heads}) does not divide "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.model_type == "phi3" and (self.attention_bias or self.mlp_bias):
            raise ValueError("Phi3 has no attention/MLP biases")

    @property
    def group_size(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def role_size(self, role: str) -> int:
        return {
            "hidden": self.hidden_size,
            "q": self.num_attention_heads * self.head_dim,
            "kv": self.num_key_value_heads * self.head_dim,
            "inter": self.intermediate_size,
            "vocab": self.vocab_size,
        }[role]

    def replace(self, **changes: Any) -> Shape:
        return replace(self, **changes)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Shape:
        model_type = config.get("model_type")
        if model_type not in SUPPORTED:
            raise UnsupportedArchitecture(
                f"model_type {quoted(model_type)} is not supported (supported: {', '.join(SUPPORTED)})"
            )
        archs = config.get("architectures") or [SUPPORTED[model_type]]
        if any(a != SUPPORTED[model_type] for a in archs):
            raise UnsupportedArchitecture(
                f"architectures {quoted(archs)} not supported for model_type {quoted(model_type)} "
                f"(expected {SUPPORTED[model_type]})"
            )
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            kv = config.get("num_key_value_heads")
            return cls(
                model_type=model_type,
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_hidden_layers=int(config["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(kv) if kv is not None else heads,
                head_dim=int(config.get("head_dim") or hidden // heads),
                vocab_size=int(config["vocab_size"]),
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                attention_bias=bool(config.get("attention_bias", False)) and model_type == "llama",
                mlp_bias=bool(config.get("mlp_bias", False)) and model_type == "llama",
                norm_divisor=config.get("norm_divisor"),
                rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
                initializer_range=float(config.get("initializer_range", 0.02)),
            )
        except KeyError as e:
            raise ValueError(f"config has no {e.args[0]}") from e

    def to_config(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` (a raw config.json dict) with this shape written in; ``head_dim`` always pinned."""
        out = dict(base)
        for key in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
            "rms_norm_eps",
        ):
            out[key] = getattr(self, key)
        if self.norm_divisor is None:
            out.pop("norm_divisor", None)
        else:
            out["norm_divisor"] = self.norm_divisor
        return out


def _ax(role: str | tuple[str, ...], new: str, reads: bool = False) -> Axis:
    return Axis((role,) if isinstance(role, str) else role, new, reads)


_EMBED = TensorEntry("model.embed_tokens.weight", (_ax("vocab", "mean"), _ax("hidden", "zero")), "embedding")
_LM_HEAD = TensorEntry(
    "lm_head.weight", (_ax("vocab", "mean"), _ax("hidden", "random", True)), "linear", requires="untied"
)
_FINAL_NORM = TensorEntry("model.norm.weight", (_ax("hidden", "one"),), "norm")
_L = "model.layers.{layer}."


def _norms() -> tuple[TensorEntry, ...]:
    return (
        TensorEntry(_L + "input_layernorm.weight", (_ax("hidden", "one"),), "norm"),
        TensorEntry(_L + "post_attention_layernorm.weight", (_ax("hidden", "one"),), "norm"),
    )


def _reader(name: str, rows: str | tuple[str, ...], bias: str | None = None) -> tuple[TensorEntry, ...]:
    w = TensorEntry(_L + name + ".weight", (_ax(rows, "random"), _ax("hidden", "random", True)), "linear")
    if bias is None:
        return (w,)
    return (w, TensorEntry(_L + name + ".bias", (_ax(rows, "zero"),), "bias", requires=bias))


def _writer(name: str, cols: str, bias: str | None = None) -> tuple[TensorEntry, ...]:
    w = TensorEntry(
        _L + name + ".weight", (_ax("hidden", "zero"), _ax(cols, "zero", True)), "linear", writer=True
    )
    if bias is None:
        return (w,)
    return (w, TensorEntry(_L + name + ".bias", (_ax("hidden", "zero"),), "bias", writer=True, requires=bias))


@dataclass(frozen=True)
class Architecture:
    """The tensor table of one model family."""

    model_type: str
    class_name: str
    tensors: tuple[TensorEntry, ...]

    def entries(self, shape: Shape) -> tuple[TensorEntry, ...]:
        """The tensors a checkpoint of ``shape`` holds (biases only when enabled, lm_head only when untied)."""
        flags = {
            "attention_bias": shape.attention_bias,
            "mlp_bias": shape.mlp_bias,
            "untied": not shape.tie_word_embeddings,
        }
        return tuple(e for e in self.tensors if e.requires is None or flags[e.requires])

    def names(self, shape: Shape) -> list[str]:
        """Every tensor name of a checkpoint of ``shape``, embeddings first, blocks in order, head last."""
        out: list[str] = []
        entries = self.entries(shape)
        out += [e.name() for e in entries if not e.layered and e.kind == "embedding"]
        for layer in range(shape.num_hidden_layers):
            out += [e.name(layer) for e in entries if e.layered]
        out += [e.name() for e in entries if not e.layered and e.kind != "embedding"]
        return out

    def lookup(self, name: str) -> tuple[TensorEntry, int | None]:
        """The table entry of a tensor name and its block index; KeyError if the name is unknown."""
        for entry in self.tensors:
            m = entry.regex().match(name)
            if m:
                return entry, (int(m.group(1)) if entry.layered else None)
        raise KeyError(name)

    def segment_sizes(self, axis: Axis, shape: Shape) -> list[int]:
        return [shape.role_size(r) for r in axis.roles]

    def tensor_shape(self, entry: TensorEntry, shape: Shape) -> tuple[int, ...]:
        return tuple(sum(self.segment_sizes(ax, shape)) for ax in entry.axes)

    def expected_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        out = {}
        for name in self.names(shape):
            entry, _ = self.lookup(name)
            out[name] = self.tensor_shape(entry, shape)
        return out


LLAMA = Architecture(
    "llama",
    "LlamaForCausalLM",
    (
        _EMBED,
        *_norms(),
        *_reader("self_attn.q_proj", "q", "attention_bias"),
        *_reader("self_attn.k_proj", "kv", "attention_bias"),
        *_reader("self_attn.v_proj", "kv", "attention_bias"),
        *_writer("self_attn.o_proj", "q", "attention_bias"),
        *_reader("mlp.gate_proj", "inter", "mlp_bias"),
        *_reader("mlp.up_proj", "inter", "mlp_bias"),
        *_writer("mlp.down_proj", "inter", "mlp_bias"),
        _FINAL_NORM,
        _LM_HEAD,
    ),
)

PHI3 = Architecture(
    "phi3",
    "Phi3ForCausalLM",
    (
        _EMBED,
        *_norms(),
        *_reader("self_attn.qkv_proj", ("q", "kv", "kv")),
        *_writer("self_attn.o_proj", "q"),
        *_reader("mlp.gate_up_proj", ("inter", "inter")),
        *_writer("mlp.down_proj", "inter"),
        _FINAL_NORM,
        _LM_HEAD,
    ),
)

ARCHITECTURES = {"llama": LLAMA, "phi3": PHI3}


def architecture_for(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise UnsupportedArchitecture(
            f"model_type {quoted(model_type)} is not supported (supported: {', '.join(ARCHITECTURES)})"
        ) from None


FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class TensorTable:
    """How a checkpoint's tensors compare with the table of its config (names, shapes, float dtypes)."""

    dropped: tuple[str, ...] = ()  # recomputed buffers and a tied lm_head: ignored, as transformers does
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    wrong_shape: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # (name, found, expected)
    not_float: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape or self.not_float)

    def problem(self) -> str | None:
        """One sentence naming the first mismatch (and how many there are), or None."""
        if self.missing:
            return f"{len(self.missing)} tensor(s) missing, e.g. {quoted(self.missing[0])}"
        if self.unexpected:
            return f"{len(self.unexpected)} unexpected tensor(s), e.g. {quoted(self.unexpected[0])}"
        if self.wrong_shape:
            name, found, want = self.wrong_shape[0]
            return f"tensor {quoted(name)} has shape {list(found)}, config.json implies {list(want)}"
        if self.not_float:
            name, dtype = self.not_float[0]
            return f"tensor {quoted(name)} has non-float dtype {dtype}"
        return None


def compare_tensors(found: dict[str, tuple[tuple[int, ...], str]], shape: Shape) -> TensorTable:
    """Compare ``{name: (shape, safetensors dtype)}`` with every tensor a checkpoint of ``shape`` holds."""
    arch = architecture_for(shape.model_type)
    expected = arch.expected_shapes(shape)
    dropped, unexpected, wrong, not_float = [], [], [], []
    for name, (dims, dtype) in found.items():
        if IGNORED_TENSORS.search(name) or (name == "lm_head.weight" and shape.tie_word_embeddings):
            dropped.append(name)
        elif name not in expected:
            unexpected.append(name)
        elif tuple(dims) != expected[name]:
            wrong.append((name, tuple(dims), expected[name]))
        elif dtype not in FLOAT_DTYPES:
            not_float.append((name, dtype))
    missing = tuple(n for n in expected if n not in found)
    return TensorTable(tuple(dropped), missing, tuple(unexpected), tuple(wrong), tuple(not_float))


DIMENSION_LIMITS: dict[str, int] = {
    "hidden_size": 1 << 16,
    "intermediate_size": 1 << 19,
    "num_hidden_layers": 1 << 10,
    "num_attention_heads": 1 << 10,
    "num_key_value_heads": 1 << 10,
    "head_dim": 1 << 10,
    "vocab_size": 1 << 22,
    "max_position_embeddings": 1 << 22,
}
"""Sane upper bounds (far above any SN29 model) checked on a miner's config before anything is built."""


def bounded_shape(config: dict[str, Any]) -> Shape:
    """:meth:`Shape.from_config` for untrusted configs: every dimension a plain integer within
    :data:`DIMENSION_LIMITS`, so that arithmetic on it (parameter counts, tensor tables) stays cheap."""
    for key, limit in DIMENSION_LIMITS.items():
        value = config.get(key)
        if value is None and key in ("num_key_value_heads", "head_dim", "max_position_embeddings"):
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {quoted(value)}")
        if not 1 <= value <= limit:
            raise ValueError(f"{key} {value} is outside 1..{limit:,}")
    return Shape.from_config(config)
