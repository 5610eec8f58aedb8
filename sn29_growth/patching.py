"""Build the norm_divisor-aware subclasses of an installed transformers model family.

``transformers_llama`` and ``transformers_phi3`` call :func:`make_family` with the stock classes; the
result keeps the stock class names (``LlamaForCausalLM``…) and ``model_type`` so that saved checkpoints
are in the SN29 format, and :func:`register_family` points the Auto classes at them.
"""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from sn29_growth.norm import install_norm_divisor
from sn29_growth.norm import validate_norm_divisor as _check


@dataclass(frozen=True)
class Family:
    config_class: type
    model_class: type
    causal_lm_class: type


def make_config_class(stock_config: type) -> type:
    """A strict config subclass with a validated ``norm_divisor`` field (None = stock RMSNorm)."""

    def validate_norm_divisor(self) -> None:
        _check(self.norm_divisor)

    namespace = {
        "__module__": stock_config.__module__,
        "__qualname__": stock_config.__name__,
        "__annotations__": {"norm_divisor": float | int | None},
        "norm_divisor": None,
        "validate_norm_divisor": validate_norm_divisor,
    }
    cls = type(stock_config.__name__, (stock_config,), namespace)
    return strict(cls)


def _with_divisor(stock: type, doc: str) -> type:
    def __init__(self, config, *args, **kwargs):
        stock.__init__(self, config, *args, **kwargs)
        install_norm_divisor(self, getattr(config, "norm_divisor", None))

    return type(stock.__name__, (stock,), {"__init__": __init__, "__doc__": doc})


def make_family(stock_config: type, stock_model: type, stock_causal_lm: type, module: str) -> Family:
    config_class = make_config_class(stock_config)
    config_class.__module__ = module
    model_class = _with_divisor(stock_model, f"{stock_model.__name__} with SN29 norm_divisor RMSNorm.")
    causal_lm_class = _with_divisor(
        stock_causal_lm, f"{stock_causal_lm.__name__} with SN29 norm_divisor RMSNorm."
    )
    for cls in (model_class, causal_lm_class):
        cls.__module__ = module
        cls.config_class = config_class
    return Family(config_class, model_class, causal_lm_class)


def register_family(family: Family) -> None:
    """Point AutoConfig/AutoModel/AutoModelForCausalLM at ``family`` for its model_type (idempotent)."""
    model_type = family.config_class.model_type
    AutoConfig.register(model_type, family.config_class, exist_ok=True)
    AutoModel.register(family.config_class, family.model_class, exist_ok=True)
    AutoModelForCausalLM.register(family.config_class, family.causal_lm_class, exist_ok=True)


def is_registered(family: Family) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = family.config_class.model_type
    try:
        config_cls = CONFIG_MAPPING[model_type]
    except KeyError:
        return False
    return config_cls is family.config_class and (
        AutoModelForCausalLM._model_mapping.get(config_cls, None) is family.causal_lm_class
    )
