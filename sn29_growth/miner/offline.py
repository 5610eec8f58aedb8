"""A chain kept in a JSON file: the miner's ``--offline`` stand-in, persistent across runs.

Implements :class:`~sn29_growth.chain.protocol.ChainClient` for one hotkey: commitments (of this hotkey
and of any other put there with :meth:`FileChain.put`) and a block counter that advances on every
query, stored atomically in one file. Weights are recorded, never sent anywhere.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json
from sn29_growth.chain.protocol import Neuron, RawCommitment

log = logging.getLogger(__name__)

OFFLINE_HOTKEY_URI = "//sn29-offline-miner"


def offline_hotkey() -> str:
    """A fixed development hotkey (ss58) for offline runs without a wallet."""
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(OFFLINE_HOTKEY_URI).ss58_address


class FileChain:
    """A ChainClient for ``hotkey`` over the JSON file ``path`` (created on first write)."""

    def __init__(
        self, path: str | os.PathLike, hotkey: str, *, start_block: int = 1_000, blocks_per_query: int = 1
    ) -> None:
        if not hotkey:
            raise ValueError("hotkey must be non-empty")
        self.path = Path(path)
        self.hotkey = hotkey
        self.start_block = start_block
        self.blocks_per_query = blocks_per_query

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"block": self.start_block, "uids": {}, "commitments": {}, "incentive": {}, "weights": []}
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: unreadable offline chain file ({e})") from e
        for key, empty in (("uids", {}), ("commitments", {}), ("incentive", {}), ("weights", [])):
            data.setdefault(key, empty)
        return data

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.path, data)

    def _uid(self, data: dict[str, Any], hotkey: str) -> int:
        uids = data["uids"]
        if hotkey not in uids:
            uids[hotkey] = len(uids)
        return int(uids[hotkey])

    def current_block(self) -> int:
        data = self._read()
        data["block"] = int(data.get("block", self.start_block)) + self.blocks_per_query
        self._write(data)
        return data["block"]

    def metagraph(self) -> list[Neuron]:
        data = self._read()
        return [
            Neuron(
                uid=int(uid),
                hotkey=h,
                stake=0.0,
                incentive=float(data["incentive"].get(h, 0.0)),
                validator_permit=False,
            )
            for h, uid in sorted(data["uids"].items(), key=lambda kv: kv[1])
        ]

    def commitments(self) -> dict[str, RawCommitment]:
        data = self._read()
        return {
            h: RawCommitment(uid=int(c["uid"]), hotkey=h, block=int(c["block"]), value=str(c["value"]))
            for h, c in data["commitments"].items()
        }

    def set_weights(self, weights: dict[int, float], version_key: int) -> None:
        data = self._read()
        data["weights"].append(
            {
                "block": data["block"],
                "weights": {str(k): v for k, v in weights.items()},
                "version_key": version_key,
            }
        )
        self._write(data)

    def commit(self, value: str) -> None:
        self.put(self.hotkey, value)
        log.info("offline chain %s: committed %s for %s", self.path, value, self.hotkey)

    def read_commitment(self, hotkey: str) -> str | None:
        c = self._read()["commitments"].get(hotkey)
        return str(c["value"]) if c else None

    def put(
        self, hotkey: str, value: str, *, block: int | None = None, incentive: float | None = None
    ) -> int:
        """Record ``value`` as ``hotkey``'s commitment (at the next block unless given); returns its uid."""
        data = self._read()
        uid = self._uid(data, hotkey)
        if block is None:
            data["block"] = int(data.get("block", self.start_block)) + 1
            block = data["block"]
        data["commitments"][hotkey] = {"uid": uid, "block": int(block), "value": value}
        if incentive is not None:
            data["incentive"][hotkey] = float(incentive)
        self._write(data)
        return uid


def offline_clients(
    work_dir: str | os.PathLike,
    *,
    local_hub: str | os.PathLike | None = None,
    chain_file: str | os.PathLike | None = None,
    competitions: str | os.PathLike | None = None,
    hotkey: str | None = None,
):
    """:class:`~sn29_growth.miner.run.MinerClients` with no network: a local Hub directory (default
    ``work_dir/local-hub``), a :class:`FileChain` (default ``work_dir/offline-chain.json``), the given
    ``competitions.json`` (default: the packaged one) and ``hotkey`` (default: the offline development key)."""
    from sn29_growth.eval.competitions import CompetitionsSource
    from sn29_growth.hub.local import LocalHubClient
    from sn29_growth.miner.run import MinerClients

    work = Path(work_dir).expanduser()
    hub_root = Path(local_hub).expanduser() if local_hub else work / "local-hub"
    hub_root.mkdir(parents=True, exist_ok=True)
    key = hotkey or offline_hotkey()
    chain = FileChain(Path(chain_file) if chain_file else work / "offline-chain.json", key)
    return MinerClients(
        chain=chain,
        hub=LocalHubClient(hub_root),
        hotkey=key,
        competitions=CompetitionsSource(
            None if competitions is None else os.fspath(competitions), strict=True
        ),
    )
