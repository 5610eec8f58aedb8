"""The :class:`~sn29_growth.chain.protocol.ChainClient` over the bittensor 11 SDK.

This is the project's only network boundary to the chain, so it owns the timeouts and retries:

- every operation runs on the SDK's async client (``await bt.Subtensor(network)``) on a private event
  loop thread, bounded by a per-attempt timeout (connecting included) that cancels the SDK coroutine;
- failures of the connection (the SDK's ``RpcConnectionError``, dropped sockets, timeouts, and write
  results whose submission was lost in flight) are retried a bounded number of times with exponential
  backoff, then raised as :class:`ChainUnavailable`;
- refusals by the chain or by the SDK's preflight (not registered, rate limited, wrong version key, ...)
  are raised at once as :class:`ChainRejected`.

SDK facts this module relies on (bittensor 11.3):

- a commitment is written with ``Commitments.set_commitment(netuid, info)`` signed by the hotkey, where
  ``info = {"fields": [{"Raw<n>": <n bytes>}]}``: one ``Data::Raw<n>`` field holding the UTF-8 bytes
  (``n`` = byte length, at most 128). The SDK's reader decodes the same storage value as
  ``{"fields": [{"Raw<n>": "0x…"}]}`` and concatenates the ``Raw*`` fields back to UTF-8;
- ``client.subnets.commitments(netuid)`` reads every commitment of a subnet in one block-pinned batch
  (three storage-map reads), ``client.identity.commitment(netuid, hotkey)`` one hotkey's;
- ``bt.SetWeights`` conforms weights to the subnet (max-weight clip, u16 quantization), preflights
  registration and the rate limit, and picks plain or timelocked commit-reveal submission itself;
- the SDK's transport already reconnects and resubmits plain reads; when it gives up it raises
  ``RpcConnectionError``. A submission in flight when the socket drops is not resubmitted by the SDK:
  it comes back as a failed result whose message says the connection dropped or was lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import bittensor as bt
from websockets.exceptions import WebSocketException

from sn29_growth.chain.protocol import (
    ChainClientError,
    ChainRejected,
    ChainUnavailable,
    Neuron,
    RawCommitment,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RAW_FIELD_BYTES = 128
"""The largest ``Data::Raw<n>`` variant of the Commitments pallet."""

U16_MAX = 65535

# Text of the SDK transport's failed-submission results when the socket dropped mid-flight.
_LOST_SUBMISSION_MARKERS = ("connection dropped", "connection lost", "rpc session closed")


def commitment_info(value: str) -> dict[str, list[dict[str, bytes]]]:
    """The ``CommitmentInfo`` argument of ``Commitments.set_commitment`` for a plaintext value."""
    raw = value.encode("utf-8")
    if not raw:
        raise ValueError("commitment value must be non-empty")
    if len(raw) > MAX_RAW_FIELD_BYTES:
        raise ValueError(
            f"commitment value is {len(raw)} bytes; the chain accepts at most {MAX_RAW_FIELD_BYTES}"
        )
    return {"fields": [{f"Raw{len(raw)}": raw}]}


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and bounded retries for chain operations."""

    timeout_s: float = 30.0  # per attempt of a read (connecting included)
    write_timeout_s: float = 120.0  # per attempt of a write (waits for finalization)
    attempts: int = 4  # total tries of one operation
    backoff_s: float = 2.0  # sleep before the second try; doubles after each failure
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.write_timeout_s > 0):
            raise ValueError("timeout_s and write_timeout_s must be > 0")
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0")

    def delay(self, failures: int) -> float:
        """Backoff before the next try after ``failures`` failed tries."""
        return min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)


class _SubmissionLost(Exception):
    """A write whose fate is unknown: the connection dropped while it was in flight."""


class _LoopThread:
    """A private asyncio loop on a daemon thread; runs coroutines with a hard timeout."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sn29-chain", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            # wait_for cancels the coroutine at ``timeout``; the margin only guards a task that
            # ignores cancellation.
            return future.result(timeout + 5.0)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel what is still pending (e.g. a connect cut off by a timeout), then end the thread."""
        try:
            asyncio.run_coroutine_threadsafe(_cancel_pending(), self._loop).result(5.0)
        except Exception as error:
            logger.debug("cancelling pending chain tasks failed: %r", error)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._loop.close()


async def _cancel_pending() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=4.0)


def _is_transient(error: BaseException) -> bool:
    """Whether an error means "the chain could not be reached", here or anywhere in its cause chain."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, bt.RpcPolicyError):
            return current.status_code != 403  # 403: this source is refused, retrying will not help
        if isinstance(
            current,
            (
                _SubmissionLost,
                bt.RpcConnectionError,
                bt.ConnectionNotReady,
                TimeoutError,
                ConnectionError,
                WebSocketException,
            ),
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {timeout:g}s"
    return f"{type(error).__name__}: {error}"


def _check_submitted(result: Any, what: str) -> None:
    """Raise unless an ``ExtrinsicResult`` succeeded; a lost submission is transient."""
    if result.success:
        return
    message = result.message or (result.error.message if result.error else "") or "no detail"
    if any(marker in message.lower() for marker in _LOST_SUBMISSION_MARKERS):
        raise _SubmissionLost(message)
    error = result.error
    name = f" [{error.name}]" if error is not None and error.name else ""
    raise ChainRejected(f"{what} was rejected by the chain{name}: {message}")


def _validated_weights(weights: Mapping[int, float]) -> dict[int, float]:
    if not weights:
        raise ValueError("weights must not be empty")
    clean: dict[int, float] = {}
    for uid, weight in weights.items():
        if isinstance(uid, bool) or int(uid) != uid or not 0 <= int(uid) <= U16_MAX:
            raise ValueError(f"weights: uid {uid!r} is not an integer in 0..{U16_MAX}")
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weights: weight {weight!r} of uid {uid} must be finite and >= 0")
        clean[int(uid)] = value
    if sum(clean.values()) <= 0:
        raise ValueError("weights: all weights are zero")
    return clean


class BittensorChainClient:
    """:class:`ChainClient` for one subnet (``netuid``) and one wallet, over ``bt.Subtensor``.

    ``wallet`` (a ``bt.Wallet``) signs writes with its hotkey; a client without one can only read.
    ``substrate`` replaces the SDK's RPC backend (the SDK's own seam, used by tests).
    Call :meth:`close` (or use ``with``) to release the connection and its thread.
    """

    def __init__(
        self,
        netuid: int,
        wallet: Any | None = None,
        *,
        network: str = "finney",
        substrate: Any | None = None,
        retry: RetryPolicy | None = None,
        pool_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= netuid <= U16_MAX:
            raise ValueError(f"netuid must be in 0..{U16_MAX}, got {netuid}")
        self.netuid = netuid
        self.wallet = wallet
        self.retry = retry or RetryPolicy()
        self._pool_retries = pool_retries
        self._sleep = sleep
        self._subtensor = bt.Subtensor(network, substrate=substrate)
        self.network = self._subtensor.network
        self.endpoint = self._subtensor.endpoint
        self._loop: _LoopThread | None = None
        self._client: Any | None = None  # the connected async bt.Client, once connected
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> BittensorChainClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the loop thread. The client cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.run(self._close_client(), timeout=5.0)
        except Exception as error:  # closing is best effort
            logger.debug("closing the chain connection failed: %r", error)
        finally:
            loop.stop()

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- the retry boundary ----------------------------------------------------------------------

    def _run(self, what: str, op: Callable[[Any], Awaitable[T]], *, write: bool = False) -> T:
        with self._lock:
            if self._closed:
                raise RuntimeError("BittensorChainClient is closed")
            if self._loop is None:
                self._loop = _LoopThread()
            loop = self._loop
        timeout = self.retry.write_timeout_s if write else self.retry.timeout_s
        last: BaseException | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return loop.run(self._with_client(op), timeout)
            except ChainClientError:
                raise
            except bt.BittensorError as error:
                if not _is_transient(error):
                    code = getattr(error, "code", None)
                    detail = f" ({code.value})" if code is not None else ""
                    raise ChainRejected(f"{what} was refused{detail}: {error}") from error
                last = error
            except Exception as error:
                if not _is_transient(error):
                    raise
                last = error
            if attempt < self.retry.attempts:
                delay = self.retry.delay(attempt)
                logger.warning(
                    "chain %s failed (attempt %d/%d): %s; retrying in %.1fs",
                    what,
                    attempt,
                    self.retry.attempts,
                    _describe(last, timeout),
                    delay,
                )
                self._sleep(delay)
        assert last is not None
        raise ChainUnavailable(
            f"{what}: chain {self.network!r} ({self.endpoint}) unavailable after {self.retry.attempts} "
            f"attempt(s) with a {timeout:g}s timeout each; last error: {_describe(last, timeout)}"
        ) from last

    async def _with_client(self, op: Callable[[Any], Awaitable[T]]) -> T:
        client = await self._subtensor  # connects on first use, and again after a failed connect
        self._client = client
        return await op(client)

    def _require_wallet(self, what: str) -> Any:
        if self.wallet is None:
            raise ValueError(f"{what} needs a wallet (its hotkey signs the extrinsic)")
        return self.wallet

    @property
    def hotkey(self) -> str:
        """The ss58 address of the wallet's hotkey."""
        wallet = self._require_wallet("hotkey")
        try:
            return wallet.hotkeypub.ss58_address
        except FileNotFoundError:
            return wallet.hotkey.ss58_address

    # -- reads ---------------------------------------------------------------------------------

    def current_block(self) -> int:
        async def op(client: Any) -> int:
            return int(await client.block())

        return self._run("current_block", op)

    def metagraph(self) -> list[Neuron]:
        async def op(client: Any) -> Any:
            return await client.subnets.metagraph(self.netuid, commitments=False)

        graph = self._run("metagraph", op)
        if graph is None:
            raise ChainRejected(f"subnet {self.netuid} does not exist on {self.network!r}")
        return [
            Neuron(
                uid=n.uid,
                hotkey=n.hotkey,
                stake=n.total_stake.amount,
                incentive=n.incentive,
                validator_permit=n.validator_permit,
            )
            for n in graph.neurons
        ]

    def commitments(self) -> dict[str, RawCommitment]:
        """Plaintext commitments of the hotkeys registered now (sealed ones and deregistered hotkeys are left out)."""

        async def op(client: Any) -> Any:
            return await client.subnets.commitments(self.netuid)

        records = self._run("commitments", op)
        out: dict[str, RawCommitment] = {}
        for hotkey, record in records.items():
            value = record.value
            if record.uid is None or value is None:
                continue
            out[hotkey] = RawCommitment(uid=record.uid, hotkey=hotkey, block=record.block, value=value)
        return out

    def read_commitment(self, hotkey: str) -> str | None:
        async def op(client: Any) -> Any:
            return await client.identity.commitment(self.netuid, hotkey)

        record = self._run("read_commitment", op)
        return record.data if record is not None and record.data else None

    # -- writes ---------------------------------------------------------------------------------

    def set_weights(self, weights: dict[int, float], version_key: int) -> None:
        """Set the weights (uid -> relative weight) with the subnet's version key, signed by the hotkey.

        After a submission whose fate is unknown, the chain's ``LastUpdate`` of this validator is
        checked before trying again, so weights that did land are not submitted twice.
        """
        clean = _validated_weights(weights)
        if version_key < 0:
            raise ValueError(f"version_key must be >= 0, got {version_key}")
        wallet = self._require_wallet("set_weights")
        hotkey = self.hotkey
        intent = bt.SetWeights(netuid=self.netuid, weights=clean, version_key=version_key)
        in_doubt_since: int | None = None

        async def op(client: Any) -> None:
            nonlocal in_doubt_since
            if in_doubt_since is not None and await self._weights_updated_since(
                client, hotkey, in_doubt_since
            ):
                logger.info("weights of %s landed despite the dropped connection", hotkey)
                return
            started = int(await client.block())
            result = await client.execute(intent, wallet, retries=self._pool_retries)
            try:
                _check_submitted(result, "set_weights")
            except _SubmissionLost:
                in_doubt_since = started if in_doubt_since is None else in_doubt_since
                raise

        self._run("set_weights", op, write=True)
        logger.info(
            "set weights for %d uids on netuid %d (version key %d)", len(clean), self.netuid, version_key
        )

    async def _weights_updated_since(self, client: Any, hotkey: str, block: int) -> bool:
        uid = await client.query(bt.storage.SubtensorModule.Uids, [self.netuid, hotkey])
        if uid is None:
            return False
        last_update = await client.query(bt.storage.SubtensorModule.LastUpdate, [self.netuid])
        return int(uid) < len(last_update or []) and int(last_update[int(uid)]) > block

    def commit(self, value: str) -> None:
        """Publish ``value`` as the hotkey's commitment.

        Committing again moves the commitment's block forward, even for an identical value. After a
        submission whose fate is unknown, the commitment is read back before trying again.
        """
        call = bt.calls.Commitments.set_commitment(netuid=self.netuid, info=commitment_info(value))
        wallet = self._require_wallet("commit")
        hotkey = self.hotkey
        in_doubt = False

        async def op(client: Any) -> None:
            nonlocal in_doubt
            if in_doubt:
                current = await client.identity.commitment(self.netuid, hotkey)
                if current is not None and current.data == value:
                    logger.info("commitment of %s landed despite the dropped connection", hotkey)
                    return
            result = await client.submit_call(call, wallet, signer="hotkey")
            try:
                _check_submitted(result, "commit")
            except _SubmissionLost:
                in_doubt = True
                raise

        self._run("commit", op, write=True)
        logger.info("committed %r for %s on netuid %d", value, hotkey, self.netuid)
