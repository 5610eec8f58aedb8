"""Reusable chain fixtures: offline wallets, an in-memory subnet, and the real adapter over it.

Use them from a test module with::

    pytest_plugins = ("chain_fixtures",)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import bittensor as bt
import pytest
from fake_substrate import NETUID, FakeSubstrate

from sn29_growth.chain.bittensor_client import BittensorChainClient, RetryPolicy

FAST_RETRY = RetryPolicy(timeout_s=2.0, write_timeout_s=2.0, attempts=3, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def bt_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private token-symbol cache file (connecting to a chain writes one)."""
    path = tmp_path / "bt-token-symbols.json"
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(path))
    return path


@pytest.fixture
def make_wallet(tmp_path: Path) -> Callable[[str], bt.Wallet]:
    """Create an unencrypted wallet (new coldkey and hotkey) under a temp directory."""
    root = tmp_path / "wallets"

    def _make(name: str) -> bt.Wallet:
        wallet = bt.Wallet(name, "default", path=str(root))
        wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
        wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
        return wallet

    return _make


@pytest.fixture
def fake_chain(bt_cache: Path) -> FakeSubstrate:
    """An in-memory chain with subnet :data:`NETUID` (no neurons registered yet)."""
    chain = FakeSubstrate(block=1000, block_time=0.01)
    chain.add_subnet(NETUID, weights_rate_limit=10)
    return chain


@pytest.fixture
def chain_client(fake_chain: FakeSubstrate) -> Iterator[Callable[..., BittensorChainClient]]:
    """Factory for :class:`BittensorChainClient` over ``fake_chain``; every client is closed afterwards."""
    clients: list[BittensorChainClient] = []

    def _make(wallet: bt.Wallet | None = None, *, retry: RetryPolicy = FAST_RETRY) -> BittensorChainClient:
        client = BittensorChainClient(NETUID, wallet, network="local", substrate=fake_chain, retry=retry)
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.close()
