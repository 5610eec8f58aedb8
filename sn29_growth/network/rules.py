"""Can the network load and score this model as we do? A pure rule set over a model folder's files.

Live SN29 validators load every model with transformers 4.44 / tokenizers 0.19
(:data:`~sn29_growth.network.config.NETWORK_TRANSFORMERS`). Each rule below names one way a folder
can fail there, or be scored differently there than by transformers 5:

- ``config.json``: keys 4.44 does not read (``rope_parameters``, ``partial_rotary_factor``) carrying a
  meaning the legacy keys do not (``dtype`` without ``torch_dtype``: a warning, scores do not change); ``hidden_size == num_attention_heads × head_dim`` (4.44
  derives head_dim); kv heads dividing the heads; RoPE scaling types 4.44 runs; remote code;
  quantization; the class the model type selects;
- ``tokenizer_config.json``: a ``tokenizer_class`` 4.44's AutoTokenizer knows; whether decoding cleans
  up spaces (4.44's default does, which fails the subnet's round trip on texts like ``"a , b"``);
- ``tokenizer.json``: BPE merges as ``"a b"`` strings and component types tokenizers 0.19 knows.

:func:`config_findings` and :func:`tokenizer_findings` work on parsed dicts (no I/O, no torch);
:func:`check_model` reads a folder (bounded) and applies both. Findings whose ``blocks_loading`` is set
are the ones the network cannot load at all: our validator rejects those too, so that it never scores
what the others cannot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_CONFIG,
    TOKENIZER_FILES,
    TOKENIZER_JSON,
    CheckpointFileError,
    read_json_object,
)
from sn29_growth.network.config import (
    NETWORK_TOKENIZERS,
    NETWORK_TRANSFORMERS,
    ROPE_TYPES_4_44,
    NetworkFormatError,
    network_rope,
    our_rope,
)
from sn29_growth.network.known import ACTIVATIONS, TOKENIZER_CLASSES, TOKENIZER_COMPONENTS
from sn29_growth.reasons import quoted, shorten

ARCHITECTURES = {"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}
CODE_KEYS = ("auto_map", "quantization_config")
"""Config keys that change which code runs; the network never runs such a model as we would."""


@dataclass(frozen=True)
class Finding:
    """One problem: ``error`` (the network cannot load it, or scores it differently) or ``warning``."""

    severity: str
    file: str
    code: str
    message: str
    blocks_loading: bool = False

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', got {self.severity!r}")

    def format(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "code": self.code,
            "message": self.message,
            "blocks_loading": self.blocks_loading,
        }


def _error(file: str, code: str, message: str, blocks: bool = False) -> Finding:
    return Finding("error", file, code, message, blocks)


def _warning(file: str, code: str, message: str) -> Finding:
    return Finding("warning", file, code, message)


@dataclass(frozen=True)
class NetworkCheck:
    """The findings for one model folder."""

    path: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def loading_problem(self) -> str | None:
        """The first finding that stops the network from loading the model at all, as a reason."""
        blocking = [f for f in self.findings if f.blocks_loading]
        return (
            f"the network's stack cannot load it: {blocking[0].file}: {blocking[0].message}"
            if blocking
            else None
        )

    def summary(self) -> str:
        if not self.findings:
            return "ok"
        return f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"

    def format(self) -> str:
        head = (
            f"{self.path}: {'loads and scores alike' if self.ok else 'NOT network-compatible'} on the "
            f"network's stack (transformers {NETWORK_TRANSFORMERS}, tokenizers {NETWORK_TOKENIZERS})"
        )
        return "\n".join([head, *(f"  {f.format()}" for f in self.findings)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "network": {"transformers": NETWORK_TRANSFORMERS, "tokenizers": NETWORK_TOKENIZERS},
            "findings": [f.to_dict() for f in self.findings],
        }


# ------------------------------------------------------------------------------------------- config


def _int(config: dict[str, Any], key: str) -> int | None:
    v = config.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _class_findings(config: dict[str, Any]) -> list[Finding]:
    out = []
    for key in CODE_KEYS:
        if key in config:
            out.append(_error(CONFIG_FILE, key, f"has {key}, which changes the code that runs", True))
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        out.append(
            _error(
                CONFIG_FILE,
                "model_type",
                f"model_type {quoted(model_type)}: the network's competitions run llama and phi3 models only",
                True,
            )
        )
        return out
    archs = config.get("architectures")
    if archs != [ARCHITECTURES[model_type]]:
        out.append(
            _error(
                CONFIG_FILE,
                "architectures",
                f"architectures {quoted(archs)} for model_type {quoted(model_type)}: expected "
                f"[{ARCHITECTURES[model_type]!r}] (the class is chosen by model_type)",
                True,
            )
        )
    return out


def _head_findings(config: dict[str, Any]) -> list[Finding]:
    hidden, heads, kv = (
        _int(config, "hidden_size"),
        _int(config, "num_attention_heads"),
        config.get("num_key_value_heads"),
    )
    if not hidden or not heads or hidden <= 0 or heads <= 0:
        return [
            _error(
                CONFIG_FILE, "shape", "hidden_size and num_attention_heads must be positive integers", True
            )
        ]
    out = []
    if hidden % heads:
        out.append(
            _error(
                CONFIG_FILE,
                "head_dim",
                f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}",
                True,
            )
        )
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != hidden // heads:
        out.append(
            _error(
                CONFIG_FILE,
                "head_dim",
                f"head_dim {head_dim} but hidden_size/num_attention_heads = {hidden}/{heads}: transformers "
                f"{NETWORK_TRANSFORMERS} computes head_dim = hidden_size // num_attention_heads "
                f"({hidden // heads}) and cannot load these weights",
                True,
            )
        )
    if kv is not None and (not isinstance(kv, int) or isinstance(kv, bool) or kv <= 0 or heads % kv):
        out.append(
            _error(
                CONFIG_FILE,
                "kv_heads",
                f"num_key_value_heads {quoted(kv)} does not divide {heads} heads",
                True,
            )
        )
    return out


def _rope_findings(config: dict[str, Any]) -> list[Finding]:
    out = []
    theirs = network_rope(config)
    try:
        ours = our_rope(config)
    except NetworkFormatError as e:
        return [_error(CONFIG_FILE, "rope", shorten(str(e), 300))]
    if ours != theirs:
        out.append(
            _error(
                CONFIG_FILE,
                "rope",
                f"rope_parameters means rope_theta={ours[0]}, rope_scaling={ours[1]}, but transformers "
                f"{NETWORK_TRANSFORMERS} ignores rope_parameters and reads rope_theta={theirs[0]}, "
                f"rope_scaling={theirs[1]}: write rope_theta/rope_scaling",
            )
        )
    prf = config.get("partial_rotary_factor")
    if prf is not None and prf != 1:
        out.append(
            _error(
                CONFIG_FILE,
                "rope",
                f"partial_rotary_factor={prf}: transformers {NETWORK_TRANSFORMERS} ignores it "
                f"(full rotary embedding), transformers 5 applies it",
            )
        )
    scaling = theirs[1]
    model_type = config.get("model_type")
    if scaling is not None and model_type in ROPE_TYPES_4_44:
        kind = scaling.get("rope_type") or scaling.get("type")
        if kind not in ROPE_TYPES_4_44[model_type]:
            out.append(
                _error(
                    CONFIG_FILE,
                    "rope",
                    f"rope_scaling type {quoted(kind)}: transformers {NETWORK_TRANSFORMERS}'s {model_type} runs "
                    f"{', '.join(ROPE_TYPES_4_44[model_type])}",
                    True,
                )
            )
        elif model_type == "phi3" and sorted(scaling) != ["long_factor", "short_factor", "type"]:
            out.append(
                _error(
                    CONFIG_FILE,
                    "rope",
                    f"Phi3 rope_scaling keys {sorted(scaling)}: transformers {NETWORK_TRANSFORMERS} "
                    f"requires exactly type, short_factor and long_factor",
                    True,
                )
            )
    return out


def _dtype_findings(config: dict[str, Any]) -> list[Finding]:
    dtype, torch_dtype = config.get("dtype"), config.get("torch_dtype")
    if dtype is not None and str(dtype).removeprefix("torch.") != str(torch_dtype).removeprefix("torch."):
        return [
            _warning(
                CONFIG_FILE,
                "dtype",
                f"dtype={quoted(dtype)} is transformers 5's key; transformers {NETWORK_TRANSFORMERS} reads "
                f"torch_dtype ({quoted(torch_dtype)}). Validators load weights in an explicit dtype, so scores "
                f"do not change, but the file does not say what its weights are to the network's stack",
            )
        ]
    return []


def config_findings(config: dict[str, Any]) -> list[Finding]:
    """Every config rule (see the module docstring); an empty list when the network reads it as we do."""
    out = _class_findings(config)
    if config.get("model_type") not in ARCHITECTURES:
        return out
    out += _head_findings(config)
    out += _rope_findings(config)
    out += _dtype_findings(config)
    act = config.get("hidden_act", "silu")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        out.append(
            _error(
                CONFIG_FILE,
                "hidden_act",
                f"hidden_act {quoted(act)} is unknown to transformers {NETWORK_TRANSFORMERS}",
                True,
            )
        )
    divisor = config.get("norm_divisor")
    if divisor is not None:
        from sn29_growth.divisor import validate_norm_divisor

        try:
            validate_norm_divisor(divisor)
        except ValueError as e:
            out.append(_error(CONFIG_FILE, "norm_divisor", str(e), True))
    return out


# ------------------------------------------------------------------------------------------- tokenizer


def _component_types(node: Any) -> list[str]:
    """Every ``type`` of a tokenizer.json component, nested Sequences included."""
    if not isinstance(node, dict):
        return []
    found = [node["type"]] if isinstance(node.get("type"), str) else []
    for key in ("normalizers", "pretokenizers", "decoders", "processors"):
        for child in node.get(key) or []:
            found += _component_types(child)
    return found


def tokenizer_findings(
    tokenizer_config: dict[str, Any] | None, tokenizer_json: dict[str, Any] | None
) -> list[Finding]:
    """The tokenizer rules, on the parsed ``tokenizer_config.json`` and ``tokenizer.json`` (None = absent)."""
    out = []
    if tokenizer_config is not None:
        cls = tokenizer_config.get("tokenizer_class")
        if cls is not None and cls not in TOKENIZER_CLASSES:
            out.append(
                _error(
                    TOKENIZER_CONFIG,
                    "tokenizer_class",
                    f"tokenizer_class {quoted(cls)} is unknown to transformers {NETWORK_TRANSFORMERS}'s "
                    f"AutoTokenizer (PreTrainedTokenizerFast loads any tokenizer.json)",
                    True,
                )
            )
        if tokenizer_config.get("clean_up_tokenization_spaces") is not False:
            out.append(
                _warning(
                    TOKENIZER_CONFIG,
                    "clean_up",
                    f"clean_up_tokenization_spaces is not false: transformers {NETWORK_TRANSFORMERS} then "
                    f"decodes ' ,' as ',' (and ' .', \" n't\", ...), so such texts fail the subnet's "
                    f"round trip on the network",
                )
            )
    if tokenizer_json is not None:
        model = tokenizer_json.get("model") if isinstance(tokenizer_json.get("model"), dict) else {}
        merges = model.get("merges")
        if isinstance(merges, list) and not all(isinstance(m, str) for m in merges):
            out.append(
                _error(
                    TOKENIZER_JSON,
                    "merges",
                    f"BPE merges are written as [a, b] pairs (tokenizers >= 0.20); tokenizers "
                    f"{NETWORK_TOKENIZERS} reads only 'a b' strings",
                    True,
                )
            )
        for kind, known in TOKENIZER_COMPONENTS.items():
            node = model if kind == "model" else tokenizer_json.get(kind)
            for t in _component_types(node):
                if t not in known:
                    out.append(
                        _error(
                            TOKENIZER_JSON,
                            "component",
                            f"{kind} type {quoted(t)} is unknown to tokenizers {NETWORK_TOKENIZERS}",
                            True,
                        )
                    )
    return out


# ------------------------------------------------------------------------------------------- folders


def _read(path: Path, file: str, findings: list[Finding]) -> dict[str, Any] | None:
    if not (path / file).exists():
        return None
    try:
        return read_json_object(path / file)
    except CheckpointFileError as e:
        findings.append(_error(file, "unreadable", str(e).replace(str(path / file), "").lstrip(": "), True))
        return None


def check_model(path: str | os.PathLike) -> NetworkCheck:
    """Apply every rule to the model folder ``path`` (bounded reads; never raises for a bad file)."""
    root = Path(path)
    findings: list[Finding] = []
    config = _read(root, CONFIG_FILE, findings)
    if config is None and not findings:
        findings.append(_error(CONFIG_FILE, "missing", "no config.json", True))
    if config is not None:
        findings += config_findings(config)
    findings += tokenizer_findings(
        _read(root, TOKENIZER_CONFIG, findings), _read(root, TOKENIZER_JSON, findings)
    )
    if not any((root / n).is_file() for n in TOKENIZER_FILES):
        findings.append(
            _warning(
                TOKENIZER_JSON,
                "no_tokenizer",
                "no tokenizer files: only a competition tokenizer can score it",
            )
        )
    return NetworkCheck(str(path), tuple(findings))
