"""Phi3 classes that understand SN29's ``norm_divisor`` (``import transformers_phi3`` registers them).

After import, ``AutoConfig``/``AutoModelForCausalLM`` resolve ``model_type: phi3`` to the subclasses
below. Without ``norm_divisor`` they compute exactly what stock transformers computes.
"""

from transformers.models.phi3 import modeling_phi3
from transformers.models.phi3.configuration_phi3 import Phi3Config as _StockConfig

from sn29_growth.patching import is_registered as _is_registered
from sn29_growth.patching import make_family, register_family

_FAMILY = make_family(_StockConfig, modeling_phi3.Phi3Model, modeling_phi3.Phi3ForCausalLM, __name__)

Phi3Config = _FAMILY.config_class
Phi3Model = _FAMILY.model_class
Phi3ForCausalLM = _FAMILY.causal_lm_class


def register() -> None:
    """Make the Auto classes resolve ``phi3`` to these classes. Safe to call any number of times."""
    register_family(_FAMILY)


def is_registered() -> bool:
    return _is_registered(_FAMILY)


register()

__all__ = ["Phi3Config", "Phi3ForCausalLM", "Phi3Model", "is_registered", "register"]
