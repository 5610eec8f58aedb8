"""A chain stand-in for offline runs: block numbers advance per query, weights are recorded, not sent."""

from __future__ import annotations

import logging

from sn29_growth.chain.protocol import Neuron, RawCommitment

log = logging.getLogger(__name__)


class OfflineChain:
    """Implements :class:`~sn29_growth.chain.protocol.ChainClient` with no network at all."""

    def __init__(self, start_block: int = 1_000, blocks_per_query: int = 25) -> None:
        self.block = start_block
        self.blocks_per_query = blocks_per_query
        self.weights_history: list[tuple[int, dict[int, float], int]] = []
        self._commitments: dict[str, RawCommitment] = {}

    def current_block(self) -> int:
        self.block += self.blocks_per_query
        return self.block

    def metagraph(self) -> list[Neuron]:
        return []

    def commitments(self) -> dict[str, RawCommitment]:
        return dict(self._commitments)

    def set_weights(self, weights: dict[int, float], version_key: int) -> None:
        self.weights_history.append((self.block, dict(weights), version_key))
        log.info("offline: would set weights %s", {k: round(v, 4) for k, v in sorted(weights.items())})

    def commit(self, value: str) -> None:
        self._commitments["offline"] = RawCommitment(uid=0, hotkey="offline", block=self.block, value=value)

    def read_commitment(self, hotkey: str) -> str | None:
        rc = self._commitments.get(hotkey)
        return rc.value if rc else None
