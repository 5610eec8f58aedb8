"""The SN29 ``norm_divisor`` RMSNorm: ``x / sqrt(sum(x²)/D + eps)`` in place of ``mean(x²)``.

This module is shared by ``transformers_llama`` and ``transformers_phi3``: it holds the validation of
``norm_divisor`` and the one place where a stock RMSNorm module is swapped for the divisor form.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.models.phi3.modeling_phi3 import Phi3RMSNorm

from sn29_growth.divisor import validate_norm_divisor

__all__ = [
    "STOCK_RMSNORMS",
    "DivisorRMSNorm",
    "install_norm_divisor",
    "is_rmsnorm",
    "norm_divisors_in",
    "validate_norm_divisor",
]

STOCK_RMSNORMS: tuple[type[nn.Module], ...] = (LlamaRMSNorm, Phi3RMSNorm)
"""The installed transformers' RMSNorm classes that :func:`install_norm_divisor` replaces."""


class DivisorRMSNorm(nn.Module):
    """RMSNorm whose variance is ``sum(x²) / norm_divisor`` (fp32 statistics, like the stock norm)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, norm_divisor: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps
        self.norm_divisor = float(validate_norm_divisor(norm_divisor))

    @classmethod
    def sharing_weight(cls, norm: nn.Module, norm_divisor: float) -> DivisorRMSNorm:
        """A divisor norm that uses ``norm``'s own weight parameter and epsilon (nothing is copied)."""
        with torch.device("meta"):
            new = cls(norm.weight.shape[-1], eps=norm.variance_epsilon, norm_divisor=norm_divisor)
        new.weight = norm.weight
        return new

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).sum(-1, keepdim=True) / self.norm_divisor
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}, norm_divisor={self.norm_divisor}"


def is_rmsnorm(module: nn.Module) -> bool:
    """True for the stock Llama/Phi3 RMSNorm modules and for ours."""
    return isinstance(module, (DivisorRMSNorm, *STOCK_RMSNORMS))


def install_norm_divisor(model: nn.Module, norm_divisor: float | None) -> int:
    """Swap every stock RMSNorm in ``model`` for a :class:`DivisorRMSNorm` sharing its weight parameter.

    Returns how many norms were swapped. With ``norm_divisor=None`` nothing changes (stock behaviour).
    """
    if norm_divisor is None:
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, STOCK_RMSNORMS):
                setattr(parent, name, DivisorRMSNorm.sharing_weight(child, norm_divisor))
                swapped += 1
    return swapped


def norm_divisors_in(model: nn.Module) -> list[float | None]:
    """The divisor each RMSNorm of ``model`` will use (None for a stock ``mean``)."""
    return [
        m.norm_divisor if isinstance(m, DivisorRMSNorm) else None for m in model.modules() if is_rmsnorm(m)
    ]
