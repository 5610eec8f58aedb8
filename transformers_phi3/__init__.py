"""Phi3 classes that understand SN29's ``norm_divisor`` (``import transformers_phi3`` registers them).

Each class subclasses the installed transformers class of the same name and changes one thing: with
``norm_divisor`` set, every RMSNorm divides ``sum(x²)`` by it instead of taking ``mean(x²)``. Without
it they compute exactly what stock transformers computes. The stock names and ``model_type`` are
kept, so a saved checkpoint says ``phi3`` / ``Phi3ForCausalLM`` as the network expects.
"""

from huggingface_hub.dataclasses import strict
from transformers.models.phi3 import configuration_phi3, modeling_phi3

from sn29_growth import patching
from sn29_growth.norm import install_norm_divisor, validate_norm_divisor


@strict
class Phi3Config(configuration_phi3.Phi3Config):
    """Stock ``Phi3Config`` plus ``norm_divisor`` (None: the stock RMSNorm)."""

    norm_divisor: float | int | None = None

    def validate_norm_divisor(self) -> None:
        validate_norm_divisor(self.norm_divisor)


class Phi3Model(modeling_phi3.Phi3Model):
    """Stock ``Phi3Model``; its RMSNorms use ``config.norm_divisor`` when set."""

    config_class = Phi3Config

    def __init__(self, config: Phi3Config) -> None:
        super().__init__(config)
        install_norm_divisor(self, getattr(config, "norm_divisor", None))


class Phi3ForCausalLM(modeling_phi3.Phi3ForCausalLM):
    """Stock ``Phi3ForCausalLM``; its RMSNorms use ``config.norm_divisor`` when set."""

    config_class = Phi3Config

    def __init__(self, config: Phi3Config) -> None:
        super().__init__(config)
        install_norm_divisor(self, getattr(config, "norm_divisor", None))


def register() -> None:
    """Make the Auto classes resolve ``phi3`` to these classes. Safe to call any number of times."""
    patching.register_family(Phi3Config, Phi3Model, Phi3ForCausalLM)


def is_registered() -> bool:
    """True while ``AutoConfig``/``AutoModelForCausalLM`` resolve ``phi3`` to these classes."""
    return patching.is_registered(Phi3Config, Phi3ForCausalLM)


register()

__all__ = ["Phi3Config", "Phi3ForCausalLM", "Phi3Model", "is_registered", "register"]
