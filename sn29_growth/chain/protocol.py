"""What the validator and miner need from the chain, independent of any SDK.

:class:`ChainClient` is the only chain surface the rest of the project uses; the bittensor adapter
(:mod:`sn29_growth.chain.bittensor_client`) implements it, and tests can provide their own.
All implementations raise the exceptions defined here, never SDK exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class ChainClientError(Exception):
    """Base class of the chain errors the project handles."""


class ChainUnavailable(ChainClientError):
    """The chain could not be reached, or did not answer in time, after all retries."""


class ChainRejected(ChainClientError):
    """The chain (or the SDK's preflight of it) refused a request: not registered, rate limited, ..."""


@dataclass(frozen=True)
class Neuron:
    """One registered neuron of the subnet."""

    uid: int
    hotkey: str
    stake: float  # total stake in the subnet's own token units
    incentive: float  # 0..1
    validator_permit: bool

    def __post_init__(self) -> None:
        if self.uid < 0:
            raise ValueError(f"uid must be >= 0, got {self.uid}")
        if not self.hotkey:
            raise ValueError("hotkey must be non-empty")


@dataclass(frozen=True)
class RawCommitment:
    """A hotkey's plaintext commitment as stored on chain (not yet parsed)."""

    uid: int
    hotkey: str
    block: int  # block the commitment was published at
    value: str

    def __post_init__(self) -> None:
        if self.uid < 0:
            raise ValueError(f"uid must be >= 0, got {self.uid}")
        if not self.hotkey:
            raise ValueError("hotkey must be non-empty")
        if self.block < 0:
            raise ValueError(f"block must be >= 0, got {self.block}")


@runtime_checkable
class ChainClient(Protocol):
    """The subnet as the validator and miner see it (one netuid, one wallet)."""

    def current_block(self) -> int:
        """The chain head's block number."""
        ...

    def metagraph(self) -> list[Neuron]:
        """Every registered neuron of the subnet, ordered by uid."""
        ...

    def commitments(self) -> dict[str, RawCommitment]:
        """The plaintext commitments of every registered hotkey of the subnet, in one query."""
        ...

    def set_weights(self, weights: dict[int, float], version_key: int) -> None:
        """Set this validator's weights (relative values, uid -> weight), signed by the hotkey."""
        ...

    def commit(self, value: str) -> None:
        """Publish ``value`` as this hotkey's commitment on the subnet, signed by the hotkey."""
        ...

    def read_commitment(self, hotkey: str) -> str | None:
        """The current plaintext commitment of ``hotkey``, or None."""
        ...
