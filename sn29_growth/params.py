"""Exact parameter counts of any transformers causal-LM config, on the meta device (no weights)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch


def config_from(source: str | os.PathLike | dict[str, Any]):
    """A transformers config from a config dict, a ``config.json`` path, or a checkpoint directory."""
    from transformers import AutoConfig

    from sn29_growth.arch import SUPPORTED, bounded_shape
    from sn29_growth.checkpoint import CONFIG_FILE, CONFIG_LIMITS, read_json_object
    from sn29_growth.loading import check_norm_divisor, ensure_patched

    if isinstance(source, dict):
        raw = copy.deepcopy(dict(source))
    else:
        p = Path(source)
        p = p / CONFIG_FILE if p.is_dir() else p
        raw = read_json_object(p, CONFIG_LIMITS)
    if "auto_map" in raw:
        raise ValueError("config has auto_map (remote code); refusing to build it")
    check_norm_divisor(raw)
    if raw.get("model_type") in SUPPORTED:
        bounded_shape(raw)  # every dimension sane before anything is built, even on the meta device
    model_type = raw.pop("model_type", None)
    if not model_type:
        raise ValueError("config has no model_type")
    ensure_patched(model_type)
    for key in ("transformers_version", "architectures", "_name_or_path"):
        raw.pop(key, None)
    return AutoConfig.for_model(model_type, **raw)


def meta_model(config):
    """Instantiate the causal LM of ``config`` on the meta device (no memory for weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def count_parameters(source) -> dict[str, int]:
    """``{"parameters", "embedding", "non_embedding"}``; tied weights are counted once."""
    config = source if hasattr(source, "to_dict") else config_from(source)
    model = meta_model(config)
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight.numel()
    return {"parameters": total, "embedding": emb, "non_embedding": total - emb}
