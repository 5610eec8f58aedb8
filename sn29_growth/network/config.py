"""``config.json`` as the network reads it: transformers 4.44 on every live SN29 validator.

transformers 5 (ours) and 4.44 (the network's) disagree on a few keys. 5 writes ``rope_parameters``
(holding ``rope_theta`` and the scaling) and ``dtype``; 4.44 reads ``rope_theta``, ``rope_scaling`` and
``torch_dtype`` and silently ignores the others, so a Llama-3 model saved by 5 is scored by the network
with ``rope_theta`` 10000 and no scaling. 5 also reads ``head_dim`` and ``partial_rotary_factor``,
which 4.44 ignores (it computes ``head_dim = hidden_size // num_attention_heads``).

Two pure functions bridge the stacks:

- :func:`network_config` rewrites a config into the legacy keys, keeping the meaning transformers 5
  gives it: every config this project writes goes through it, and both stacks read the result alike;
- :func:`as_network_reads` drops what 4.44 ignores and states Phi3's attention window as transformers 5
  must be given it (:func:`scoring_sliding_window`), so that transformers 5 computes exactly what a live
  validator computes: evaluation reads miners' configs through it.

Keys neither function knows are preserved as they are.
"""

from __future__ import annotations

from typing import Any

NETWORK_TRANSFORMERS = "4.44.0"
NETWORK_TOKENIZERS = "0.19.1"

V5_ONLY_KEYS = ("rope_parameters", "dtype", "head_dim", "partial_rotary_factor")
"""Keys transformers 5 reads for Llama/Phi3 and transformers 4.44 ignores."""

LEGACY_DEFAULT_ROPE_THETA = 10000.0
ROPE_TYPES_4_44 = {
    "llama": ("default", "linear", "dynamic", "yarn", "longrope", "llama3"),
    "phi3": ("longrope", "su", "yarn"),
}
"""RoPE scaling types transformers 4.44 runs, per model type (Phi3: ``longrope`` in exactly 3 fields; its
older names ``su`` and ``yarn`` in the ``type`` field are read as ``longrope``, by transformers 5 too)."""

_PHI3_LONGROPE_KEYS = ("short_factor", "long_factor")


class NetworkFormatError(ValueError):
    """A config whose meaning cannot be expressed in what transformers 4.44 reads; the message says why."""


def _rope_type(scaling: dict[str, Any]) -> str:
    return str(scaling.get("rope_type") or scaling.get("type") or "default")


def _is_one(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == 1)


def legacy_rope(config: dict[str, Any], rope: dict[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` in 4.44's keys for transformers 5's ``rope_parameters``."""
    model_type = config.get("model_type")
    if not _is_one(rope.get("partial_rotary_factor")):
        raise NetworkFormatError(
            f"rope_parameters.partial_rotary_factor={rope['partial_rotary_factor']}: transformers 4.44's "
            f"{model_type} has no partial rotary embedding"
        )
    theta = rope.get("rope_theta")
    kind = _rope_type(rope)
    if kind == "default":
        return theta, None
    rest = {
        k: v for k, v in rope.items() if k not in ("rope_theta", "rope_type", "type", "partial_rotary_factor")
    }
    if model_type != "phi3":
        return theta, {"rope_type": kind, **rest}
    if kind != "longrope":
        raise NetworkFormatError(f"rope type {kind!r}: transformers 4.44's Phi3 runs only 'longrope'")
    extra = {
        k: v for k, v in rest.items() if k not in (*_PHI3_LONGROPE_KEYS, "original_max_position_embeddings")
    }
    if extra:
        raise NetworkFormatError(
            f"rope_parameters {sorted(extra)}: transformers 4.44's Phi3 longrope takes only "
            f"short_factor and long_factor (its scale follows from max/original_max_position_embeddings)"
        )
    original = rest.get("original_max_position_embeddings")
    if original is not None and config.get("original_max_position_embeddings", original) != original:
        raise NetworkFormatError(
            "rope_parameters.original_max_position_embeddings disagrees with original_max_position_embeddings"
        )
    return theta, {"type": "longrope", **{k: rest[k] for k in _PHI3_LONGROPE_KEYS if k in rest}}


def network_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` in the keys transformers 4.44 reads, with the meaning transformers 5 gives it.

    ``rope_parameters`` becomes ``rope_theta``/``rope_scaling``, ``dtype`` becomes ``torch_dtype``, a
    null ``norm_divisor`` and a neutral ``partial_rotary_factor`` are dropped; other keys are kept.
    Raises :class:`NetworkFormatError` when 4.44 cannot express the meaning.
    """
    out = dict(config)
    rope = out.pop("rope_parameters", None)
    if rope is not None:
        if not isinstance(rope, dict):
            raise NetworkFormatError(f"rope_parameters must be an object, got {type(rope).__name__}")
        theta, scaling = legacy_rope(out, rope)
        if theta is not None:
            out["rope_theta"] = theta
        out["rope_scaling"] = scaling
        if (
            scaling is not None
            and "original_max_position_embeddings" in rope
            and out.get("model_type") == "phi3"
        ):
            out.setdefault("original_max_position_embeddings", rope["original_max_position_embeddings"])
    if "partial_rotary_factor" in out:
        if not _is_one(out["partial_rotary_factor"]):
            raise NetworkFormatError(
                f"partial_rotary_factor={out['partial_rotary_factor']}: transformers 4.44's "
                f"{out.get('model_type')} has no partial rotary embedding"
            )
        del out["partial_rotary_factor"]
    if "dtype" in out:
        dtype = out.pop("dtype")
        if dtype is not None:
            out["torch_dtype"] = str(dtype).removeprefix("torch.")
    if "norm_divisor" in out and out["norm_divisor"] is None:
        del out["norm_divisor"]
    return out


def scoring_sliding_window(model_type: Any, sliding_window: Any) -> Any:
    """The ``sliding_window`` transformers 5 must be given to attend as the network does.

    Live validators load every model with ``attn_implementation="flash_attention_2"``. transformers
    4.44's Phi3 passes ``config.sliding_window`` = w to its flash path, which applies the window once a
    sample is longer than w tokens, with flash-attn's ``window_size=(w, w)``: query q attends every key k
    with ``q - w <= k <= q`` — w + 1 keys. transformers 5 attends w keys under every kernel (its masks keep
    ``k > q - w``; its flash path passes ``w - 1``). Given w + 1, transformers 5's eager, SDPA, flex and
    flash paths (packed rows included, where the window counts positions inside each sample) all keep
    ``k >= q - w``: the network's rule. A negative w is flash-attn's "no window": every earlier key.

    4.44's eager and SDPA Phi3 ignore the window altogether, and its Llama has none (a ``sliding_window``
    key in a Llama config is ignored by 4.44 and 5 alike); only the flash rule is what the network runs.
    The result is for the config object a model is scored with; a ``config.json`` keeps the original.
    """
    if model_type != "phi3" or isinstance(sliding_window, bool) or not isinstance(sliding_window, int):
        return sliding_window
    return None if sliding_window < 0 else sliding_window + 1


def as_network_reads(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as transformers 5 must be given it to compute what a live validator computes.

    The keys transformers 4.44 ignores are dropped (``rope_theta`` then defaults to 10000 in both;
    ``head_dim`` follows from hidden/heads in both), and Phi3's ``sliding_window`` becomes the window
    transformers 5 needs to attend as the network's flash attention does (:func:`scoring_sliding_window`).
    """
    out = {k: v for k, v in config.items() if k not in V5_ONLY_KEYS}
    if out.get("sliding_window") is not None:
        out["sliding_window"] = scoring_sliding_window(out.get("model_type"), out["sliding_window"])
    return out


def network_rope(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` as transformers 4.44 reads them from ``config``."""
    theta = config.get("rope_theta", LEGACY_DEFAULT_ROPE_THETA)
    scaling = config.get("rope_scaling")
    return theta, scaling if isinstance(scaling, dict) else None


def our_rope(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` as transformers 5 reads them (``rope_parameters`` first)."""
    rope = config.get("rope_parameters")
    if isinstance(rope, dict):
        theta, scaling = legacy_rope(config, rope)
        return (LEGACY_DEFAULT_ROPE_THETA if theta is None else theta), scaling
    return network_rope(config)
