"""Llama classes that understand SN29's ``norm_divisor`` (``import transformers_llama`` registers them).

Each class subclasses the installed transformers class of the same name and changes one thing: with
``norm_divisor`` set, every RMSNorm divides ``sum(x²)`` by it instead of taking ``mean(x²)``. Without
it they compute exactly what stock transformers computes. The stock names and ``model_type`` are
kept, so a saved checkpoint says ``llama`` / ``LlamaForCausalLM`` as the network expects.
"""

from huggingface_hub.dataclasses import strict
from transformers.models.llama import configuration_llama, modeling_llama

from sn29_growth import patching
from sn29_growth.norm import install_norm_divisor, validate_norm_divisor


@strict
class LlamaConfig(configuration_llama.LlamaConfig):
    """Stock ``LlamaConfig`` plus ``norm_divisor`` (None: the stock RMSNorm)."""

    norm_divisor: float | int | None = None

    def validate_norm_divisor(self) -> None:
        validate_norm_divisor(self.norm_divisor)


class LlamaModel(modeling_llama.LlamaModel):
    """Stock ``LlamaModel``; its RMSNorms use ``config.norm_divisor`` when set."""

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        install_norm_divisor(self, getattr(config, "norm_divisor", None))


class LlamaForCausalLM(modeling_llama.LlamaForCausalLM):
    """Stock ``LlamaForCausalLM``; its RMSNorms use ``config.norm_divisor`` when set."""

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        install_norm_divisor(self, getattr(config, "norm_divisor", None))


def register() -> None:
    """Make the Auto classes resolve ``llama`` to these classes. Safe to call any number of times."""
    patching.register_family(LlamaConfig, LlamaModel, LlamaForCausalLM)


def is_registered() -> bool:
    """True while ``AutoConfig``/``AutoModelForCausalLM`` resolve ``llama`` to these classes."""
    return patching.is_registered(LlamaConfig, LlamaForCausalLM)


register()

__all__ = ["LlamaConfig", "LlamaForCausalLM", "LlamaModel", "is_registered", "register"]
