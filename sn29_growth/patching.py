"""Point the Auto classes at a norm_divisor-aware model family, through transformers' public API.

``transformers_llama`` and ``transformers_phi3`` declare their subclasses of the stock classes; the
subclasses keep the stock class names (``LlamaForCausalLM``…) and ``model_type`` so that saved
checkpoints stay in the SN29 format. This module registers them and reports whether the Auto classes
still resolve to them.
"""

from __future__ import annotations

from transformers import (
    CONFIG_MAPPING,
    MODEL_FOR_CAUSAL_LM_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
)


def register_family(config_class: type, model_class: type, causal_lm_class: type) -> None:
    """Point AutoConfig/AutoModel/AutoModelForCausalLM at these classes for their model_type (idempotent)."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForCausalLM.register(config_class, causal_lm_class, exist_ok=True)


def is_registered(config_class: type, causal_lm_class: type) -> bool:
    """True when ``AutoConfig`` and ``AutoModelForCausalLM`` resolve ``config_class.model_type`` to these classes.

    Reads the public mappings the Auto classes consult (``CONFIG_MAPPING`` and
    ``MODEL_FOR_CAUSAL_LM_MAPPING``, which ``register`` updates), so a later registration by anyone
    else is seen.
    """
    try:
        resolved_config = CONFIG_MAPPING[config_class.model_type]
        resolved_model = MODEL_FOR_CAUSAL_LM_MAPPING[resolved_config]
    except KeyError:
        return False
    return resolved_config is config_class and resolved_model is causal_lm_class
