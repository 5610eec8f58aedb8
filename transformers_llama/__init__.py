"""Llama classes that understand SN29's ``norm_divisor`` (``import transformers_llama`` registers them).

After import, ``AutoConfig``/``AutoModelForCausalLM`` resolve ``model_type: llama`` to the subclasses
below. Without ``norm_divisor`` they compute exactly what stock transformers computes.
"""

from transformers.models.llama import modeling_llama
from transformers.models.llama.configuration_llama import LlamaConfig as _StockConfig

from sn29_growth.patching import is_registered as _is_registered
from sn29_growth.patching import make_family, register_family

_FAMILY = make_family(_StockConfig, modeling_llama.LlamaModel, modeling_llama.LlamaForCausalLM, __name__)

LlamaConfig = _FAMILY.config_class
LlamaModel = _FAMILY.model_class
LlamaForCausalLM = _FAMILY.causal_lm_class


def register() -> None:
    """Make the Auto classes resolve ``llama`` to these classes. Safe to call any number of times."""
    register_family(_FAMILY)


def is_registered() -> bool:
    return _is_registered(_FAMILY)


register()

__all__ = ["LlamaConfig", "LlamaForCausalLM", "LlamaModel", "is_registered", "register"]
