"""An in-memory chain behind the bittensor SDK's own seam: ``bt.Subtensor(net, substrate=FakeSubstrate())``.

The SDK above this object is the real one (reads, intents, executor, signing); only the transport is
replaced. The fake speaks the SDK's ``Substrate`` contract at the level of *decoded* values, in the
shapes the SDK's readers consume:

- storage: ``SubtensorModule.{TokenSymbol, Uids, Keys, CommitRevealWeightsEnabled, WeightsSetRateLimit,
  LastUpdate, MinAllowedWeights, MaxWeightsLimit, SubnetEpochConsensus, ValidatorPermit, Weights,
  WeightsVersionKey, Tempo, NetworksAdded}`` and the epoch schedule items the timelocked weights path
  reads, ``Commitments.{CommitmentOf, RevealedCommitments}``,
  ``Timestamp.Now``; map keys are ss58 strings / ints, ``CommitmentOf`` values are
  ``{"deposit", "block", "info": {"fields": [{"Raw<n>": "0x…"}]}}``;
- runtime API ``SubnetInfoRuntimeApi.get_metagraph``; constants ``Aura.SlotDuration``,
  ``Commitments.MaxFields``;
- writes: ``Commitments.set_commitment``, ``SubtensorModule.set_mechanism_weights`` /
  ``set_weights`` and ``commit_timelocked_mechanism_weights``, each included in a new block, signed by
  the submitting key (the signature is verified), with the chain's checks and error names.

Calls are composed by the SDK's own SCALE codec (``bittensor_core.Runtime``) against the small runtime
metadata of :mod:`fake_metadata`, and the call arguments the fake acts on are the codec's decoding of
those bytes; commitments are stored as the codec's decoding of an encoded ``Registration``. So a value
the SDK can encode is stored, and read back, in exactly the shape a live node's responses decode to.

Reads at any known block see the current state (no history is kept). Faults can be injected:
:meth:`FakeSubstrate.disconnect_next` and :meth:`FakeSubstrate.stall_next`.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bittensor.balance import Balance
from bittensor.result import ChainError, ExtrinsicResult, RpcConnectionError
from bittensor.sp_core import verify as verify_signature
from fake_metadata import SPEC_VERSION, fake_runtime, type_string

NETUID = 29  # the subnet the chain tests use
GLOBAL_MAX_SUBNET_COUNT = 4096  # mechanism storage index = mechid * 4096 + netuid
U16_MAX = 65535

# Messages of the real transport, so the SDK and the adapter see what a dropped connection looks like.
READ_DISCONNECT_MESSAGE = (
    "RPC request failed after exhausting endpoint retries: ConnectionClosedError(None, None, None)"
)
SUBMIT_DISCONNECT_MESSAGE = (
    "Connection dropped while an extrinsic submission was in flight; the transaction may already "
    "be in the pool or on chain. Verify chain state before retrying."
)


@dataclass
class FakeNeuron:
    hotkey: str
    coldkey: str
    stake_rao: int = 0
    incentive_u16: int = 0
    validator_permit: bool = False
    registered_at: int = 0


@dataclass
class FakeSubnet:
    netuid: int
    name: str = "coldint"
    symbol: str = "ᚦ"
    tempo: int = 360
    commit_reveal: bool = False
    reveal_period_epochs: int = 1
    weights_rate_limit: int = 100
    min_allowed_weights: int = 0
    max_weights_limit: int = U16_MAX
    weights_version_key: int = 0
    consensus: str = "Yuma"
    owner_hotkey: str = ""
    owner_coldkey: str = ""
    registered_at: int = 0
    neurons: list[FakeNeuron] = field(default_factory=list)
    commitments: dict[str, dict] = field(default_factory=dict)  # hotkey -> CommitmentOf record
    revealed: dict[str, list] = field(default_factory=dict)  # hotkey -> [(data, reveal_block)]
    weights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # uid -> [(dest, u16)]
    last_update: dict[int, int] = field(default_factory=dict)  # uid -> block

    def uid_of(self, hotkey: str) -> int | None:
        for uid, neuron in enumerate(self.neurons):
            if neuron.hotkey == hotkey:
                return uid
        return None


@dataclass(frozen=True)
class FakeCall:
    """A composed call: what ``compose`` hands back (``data`` marks it as composed for the SDK)."""

    module: str
    function: str
    params: dict
    data: bytes
    spec_version: int

    @property
    def call_hash(self) -> bytes:
        return hashlib.blake2b(self.data, digest_size=32).digest()


@dataclass(frozen=True)
class WeightsRecord:
    block: int
    netuid: int
    mechid: int
    uid: int
    hotkey: str
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int


@dataclass(frozen=True)
class WeightCommitRecord:
    block: int
    netuid: int
    mechid: int
    hotkey: str
    commit: bytes
    reveal_round: int
    commit_reveal_version: int


@dataclass(frozen=True)
class ExtrinsicRecord:
    block: int
    index: int
    signer: str
    module: str
    function: str
    params: dict
    success: bool
    error: str | None


@dataclass
class _Fault:
    kind: str  # "disconnect" | "stall"
    seconds: float = 0.0
    landed: bool = False
    method: str | None = None  # only calls of this Substrate method (None: any call)


class _Rejected(Exception):
    def __init__(self, name: str, docs: str):
        super().__init__(docs)
        self.name = name
        self.docs = docs


def _block_hash(number: int) -> str:
    return "0x" + hashlib.sha256(f"fake-block-{number}".encode()).hexdigest()


def _as_bytes(value: Any) -> bytes:
    """Bytes from a decoded ``Vec<u8>``: the codec renders valid UTF-8 as text, anything else as 0x-hex."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return bytes(value)
    if value.startswith("0x"):
        return bytes.fromhex(value[2:])
    return value.encode("utf-8")


class FakeSubstrate:
    """In-memory chain state plus the SDK's ``Substrate`` methods over it."""

    MODELED_CALLS = frozenset(
        {
            ("Commitments", "set_commitment"),
            ("SubtensorModule", "set_weights"),
            ("SubtensorModule", "set_mechanism_weights"),
            ("SubtensorModule", "commit_timelocked_mechanism_weights"),
        }
    )

    def __init__(self, *, block: int = 1000, block_time: float = 12.0, spec_version: int = SPEC_VERSION):
        self.token_symbols: dict[int, str] = {}
        self.head = block
        self.block_time_s = block_time
        self.spec = spec_version
        self.max_commitment_fields = 3
        self.genesis_ms = 1_700_000_000_000
        self.subnets: dict[int, FakeSubnet] = {}
        self.extrinsics: list[ExtrinsicRecord] = []
        self.weights_log: list[WeightsRecord] = []
        self.weight_commits: list[WeightCommitRecord] = []
        self.calls: list[str] = []  # every Substrate method the SDK invoked, in order
        self.connects = 0
        self.connected = False
        self._nonces: dict[str, int] = {}
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self.codec = fake_runtime()

    # -- test-side set-up -------------------------------------------------------------

    def add_subnet(self, netuid: int, **settings: Any) -> FakeSubnet:
        subnet = FakeSubnet(netuid=netuid, registered_at=self.head, **settings)
        self.subnets[netuid] = subnet
        return subnet

    def register(
        self,
        netuid: int,
        hotkey: str,
        coldkey: str | None = None,
        *,
        stake_rao: int = 0,
        incentive_u16: int = 0,
        validator_permit: bool = False,
    ) -> int:
        """Register ``hotkey`` on ``netuid``; returns its uid."""
        subnet = self.subnets[netuid]
        if subnet.uid_of(hotkey) is not None:
            raise ValueError(f"{hotkey} is already registered on netuid {netuid}")
        neuron = FakeNeuron(
            hotkey=hotkey,
            coldkey=coldkey or hotkey,
            stake_rao=stake_rao,
            incentive_u16=incentive_u16,
            validator_permit=validator_permit,
            registered_at=self.head,
        )
        subnet.neurons.append(neuron)
        return len(subnet.neurons) - 1

    def register_wallet(self, netuid: int, wallet: Any, **kwargs: Any) -> int:
        """Register a ``bt.Wallet``'s hotkey, owned by its coldkey; returns the uid."""
        return self.register(netuid, wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address, **kwargs)

    def advance(self, blocks: int = 1) -> int:
        with self._lock:
            self.head += blocks
            return self.head

    def disconnect_next(self, count: int = 1, *, landed: bool = False, method: str | None = None) -> None:
        """The next ``count`` calls (of ``method``, if given) fail as a dropped connection surfaces from the SDK.

        Reads and connects raise ``RpcConnectionError``; a submission comes back as the SDK's failed
        "fate unknown" result. With ``landed`` the submitted extrinsic is applied before the answer is lost.
        """
        self._faults.extend(_Fault("disconnect", landed=landed, method=method) for _ in range(count))

    def stall_next(self, count: int = 1, seconds: float = 30.0, *, method: str | None = None) -> None:
        """The next ``count`` calls (of ``method``, if given) answer only after ``seconds`` (cancellable)."""
        self._faults.extend(_Fault("stall", seconds=seconds, method=method) for _ in range(count))

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def set_commitment_raw(self, netuid: int, hotkey: str, value: str, block: int | None = None) -> None:
        """Put a plaintext commitment in storage directly (as if committed at ``block``)."""
        raw = value.encode("utf-8")
        info = {"fields": [{f"Raw{len(raw)}": raw}]}
        self.subnets[netuid].commitments[hotkey] = self._registration(
            info, self.head if block is None else block
        )

    def _registration(self, info: Any, block: int) -> dict:
        """A ``CommitmentOf`` value as a node returns it: encoded as ``Registration`` and decoded back."""
        record = {"deposit": 0, "block": block, "info": info}
        encoded = bytes(self.codec.encode(type_string("Registration"), record))
        return self.codec.decode(type_string("Registration"), encoded, True)

    # -- fault injection ---------------------------------------------------------------

    async def _enter(self, method: str) -> _Fault | None:
        self.calls.append(method)
        fault = next((f for f in self._faults if f.method in (None, method)), None)
        if fault is None:
            return None
        self._faults.remove(fault)
        if fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
            return None
        if method == "submit":
            return fault
        if method == "connect":
            raise RpcConnectionError("could not connect to any endpoint: [Errno 111] Connection refused")
        raise RpcConnectionError(READ_DISCONNECT_MESSAGE)

    # -- Substrate contract: lifecycle ---------------------------------------------------

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        symbol = self.token_symbols.get(netuid) if netuid else None
        return Balance(int(rao), netuid, symbol)

    async def connect(self) -> None:
        await self._enter("connect")
        self.connects += 1
        self.connected = True

    async def close(self) -> None:
        self.calls.append("close")
        self.connected = False

    # -- blocks --------------------------------------------------------------------------------

    def _block_of_hash(self, block_hash: str | None) -> int:
        if block_hash is None:
            return self.head
        for number in range(self.head, -1, -1):
            if _block_hash(number) == block_hash:
                return number
        raise ChainError(f"Block not found: {block_hash}", "BlockNotFound")

    async def block_hash(self, block: int | None = None) -> str:
        await self._enter("block_hash")
        number = self.head if block is None else int(block)
        if number > self.head or number < 0:
            raise ChainError(f"Block not found: {number}", "BlockNotFound")
        return _block_hash(number)

    async def block_number(self) -> int:
        await self._enter("block_number")
        return self.head

    async def finalized_block_number(self) -> int:
        await self._enter("finalized_block_number")
        return max(0, self.head - 2)

    async def block_time(self) -> float:
        return self.block_time_s

    async def spec_version(self) -> int:
        await self._enter("spec_version")
        return self.spec

    async def get_block(self, block_number: int | None = None, block_hash: str | None = None) -> dict | None:
        await self._enter("get_block")
        number = self._block_of_hash(block_hash) if block_number is None else int(block_number)
        if number > self.head:
            return None
        ms = self.genesis_ms + int(number * self.block_time_s * 1000)
        return {
            "header": {
                "number": number,
                "hash": _block_hash(number),
                "parentHash": _block_hash(max(0, number - 1)),
            },
            "extrinsics": [
                {
                    "call": {
                        "call_module": "Timestamp",
                        "call_function": "set",
                        "call_args": [{"name": "now", "value": ms}],
                    }
                }
            ],
        }

    async def blocks(self, *, finalized: bool = False):
        seen = self.head - 1
        while True:
            if self.head > seen:
                seen = self.head
                yield {"header": {"number": seen, "parentHash": _block_hash(max(0, seen - 1))}}
            await asyncio.sleep(0.01)

    async def events(self, block_hash: str | None = None) -> list[dict]:
        await self._enter("events")
        number = self._block_of_hash(block_hash)
        return [
            {"extrinsic_idx": x.index, "event": event}
            for x in self.extrinsics
            if x.block == number
            for event in self._events_of(x)
        ]

    # -- storage --------------------------------------------------------------------------------

    def _subnet(self, netuid: Any) -> FakeSubnet | None:
        return self.subnets.get(int(netuid))

    def _storage_value(self, module: str, name: str, params: list) -> Any:
        item = (module, name)
        if item == ("Timestamp", "Now"):
            return self.genesis_ms + int(self.head * self.block_time_s * 1000)
        if item == ("Commitments", "CommitmentOf"):
            subnet = self._subnet(params[0])
            return subnet.commitments.get(str(params[1])) if subnet else None
        if item == ("Commitments", "RevealedCommitments"):
            subnet = self._subnet(params[0])
            return subnet.revealed.get(str(params[1])) if subnet else None
        if module != "SubtensorModule":
            raise NotImplementedError(f"FakeSubstrate does not model storage {module}.{name}")
        if name in ("LastUpdate", "Weights"):  # keyed by the mechanism storage index
            subnet = self._subnet(int(params[0]) % GLOBAL_MAX_SUBNET_COUNT)
            if subnet is None:
                return []
            if name == "LastUpdate":
                return [subnet.last_update.get(uid, 0) for uid in range(len(subnet.neurons))]
            return list(subnet.weights.get(int(params[1]), []))
        subnet = self._subnet(params[0]) if params else None
        if name == "NetworksAdded":
            return subnet is not None
        if name == "TokenSymbol":
            return list(subnet.symbol.encode()) if subnet else []
        if subnet is None:  # what the chain answers for a netuid that does not exist
            return {
                "Uids": None,
                "Keys": None,
                "ValidatorPermit": [],
                "CommitRevealWeightsEnabled": False,
            }.get(name, 0)
        scalars = {
            "Tempo": subnet.tempo,
            "CommitRevealWeightsEnabled": subnet.commit_reveal,
            "WeightsSetRateLimit": subnet.weights_rate_limit,
            "MinAllowedWeights": subnet.min_allowed_weights,
            "MaxWeightsLimit": subnet.max_weights_limit,
            "WeightsVersionKey": subnet.weights_version_key,
            "SubnetEpochConsensus": subnet.consensus,
            "SubnetworkN": len(subnet.neurons),
            "RevealPeriodEpochs": subnet.reveal_period_epochs,
            "LastEpochBlock": self.head - self.head % subnet.tempo,
            "BlocksSinceLastStep": self.head % subnet.tempo,
            "SubnetEpochIndex": self.head // subnet.tempo,
            "PendingEpochAt": 0,
        }
        if name in scalars:
            return scalars[name]
        if name == "ValidatorPermit":
            return [n.validator_permit for n in subnet.neurons]
        if name == "Uids":
            return subnet.uid_of(str(params[1]))
        if name == "Keys":
            uid = int(params[1])
            return subnet.neurons[uid].hotkey if uid < len(subnet.neurons) else None
        raise NotImplementedError(f"FakeSubstrate does not model storage {module}.{name}")

    def _storage_map(self, module: str, name: str, params: list) -> list[tuple[Any, Any]]:
        item = (module, name)
        if item == ("SubtensorModule", "TokenSymbol"):
            return [(netuid, list(s.symbol.encode())) for netuid, s in sorted(self.subnets.items())]
        subnet = self._subnet(int(params[0]) % GLOBAL_MAX_SUBNET_COUNT) if params else None
        if len(params) != 1:
            raise NotImplementedError(
                f"FakeSubstrate does not model map {module}.{name} with params {params!r}"
            )
        if subnet is None:
            return []
        if item == ("Commitments", "CommitmentOf"):
            return list(subnet.commitments.items())
        if item == ("Commitments", "RevealedCommitments"):
            return list(subnet.revealed.items())
        if item == ("SubtensorModule", "Uids"):
            return [(n.hotkey, uid) for uid, n in enumerate(subnet.neurons)]
        if item == ("SubtensorModule", "Keys"):
            return [(uid, n.hotkey) for uid, n in enumerate(subnet.neurons)]
        if item == ("SubtensorModule", "Weights"):
            return [(uid, list(row)) for uid, row in sorted(subnet.weights.items())]
        raise NotImplementedError(f"FakeSubstrate does not model map {module}.{name}")

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        await self._enter("query")
        self._block_of_hash(block_hash)
        return self._storage_value(module, storage_function, list(params or []))

    async def map_has_entries(
        self, module: str, storage_function: str, params: list, block_hash: str | None = None
    ) -> bool:
        await self._enter("map_has_entries")
        self._block_of_hash(block_hash)
        return bool(self._storage_map(module, storage_function, list(params)))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        await self._enter("query_map")
        self._block_of_hash(block_hash)
        return self._storage_map(module, storage_function, list(params or []))

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: str | None = None
    ) -> list[Any]:
        await self._enter("query_batch")
        self._block_of_hash(block_hash)
        return [self._storage_value(module, storage_function, list(p)) for p in param_sets]

    async def constant(self, module: str, name: str) -> Any:
        await self._enter("constant")
        if (module, name) == ("Aura", "SlotDuration"):
            return int(self.block_time_s * 1000)
        if (module, name) == ("Commitments", "MaxFields"):
            return self.max_commitment_fields
        raise NotImplementedError(f"FakeSubstrate does not model constant {module}.{name}")

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise NotImplementedError("FakeSubstrate holds decoded values only; there is no SCALE to decode")

    # -- runtime API ---------------------------------------------------------------------------

    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        await self._enter("runtime_call")
        number = self._block_of_hash(block_hash)
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            raise NotImplementedError(f"FakeSubstrate does not model runtime API {api}.{method}")
        subnet = self._subnet(params[0])
        return None if subnet is None else self._metagraph(subnet, number)

    def _metagraph(self, subnet: FakeSubnet, block: int) -> dict:
        neurons = subnet.neurons
        return {
            "netuid": subnet.netuid,
            "name": list(subnet.name.encode()),
            "symbol": list(subnet.symbol.encode()),
            "identity": None,
            "network_registered_at": subnet.registered_at,
            "owner_hotkey": subnet.owner_hotkey or (neurons[0].hotkey if neurons else ""),
            "owner_coldkey": subnet.owner_coldkey or (neurons[0].coldkey if neurons else ""),
            "block": block,
            "tempo": subnet.tempo,
            "last_step": block - block % max(1, subnet.tempo),
            "blocks_since_last_step": block % max(1, subnet.tempo),
            "num_uids": len(neurons),
            "max_uids": 256,
            "tao_in": 0,
            "alpha_in": 0,
            "hotkeys": [n.hotkey for n in neurons],
            "coldkeys": [n.coldkey for n in neurons],
            "identities": [None] * len(neurons),
            "axons": [{"ip": 0, "port": 0, "ip_type": 4}] * len(neurons),
            "active": [True] * len(neurons),
            "validator_permit": [n.validator_permit for n in neurons],
            "last_update": [subnet.last_update.get(uid, 0) for uid in range(len(neurons))],
            "block_at_registration": [n.registered_at for n in neurons],
            "rank": [0] * len(neurons),
            "trust": [0] * len(neurons),
            "consensus": [0] * len(neurons),
            "incentives": [n.incentive_u16 for n in neurons],
            "dividends": [0] * len(neurons),
            "pruning_score": [0] * len(neurons),
            "emission": [0] * len(neurons),
            "alpha_stake": [n.stake_rao for n in neurons],
            "tao_stake": [0] * len(neurons),
            "total_stake": [n.stake_rao for n in neurons],
        }

    # -- calls, fees, nonces ---------------------------------------------------------------------

    async def compose(self, call: Any) -> FakeCall:
        await self._enter("compose")
        module, function, params = call
        if (module, function) not in self.MODELED_CALLS:
            raise NotImplementedError(f"FakeSubstrate does not model call {module}.{function}")
        data = bytes(self.codec.compose_call(module, function, dict(params or {})))  # ValueError, as live
        decoded = self.codec.decode_call(data)
        args = {arg["name"]: arg["value"] for arg in decoded["call_args"]}
        return FakeCall(module, function, args, data, self.spec)

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        await self._enter("estimate_fee")
        return Balance.from_rao(0)

    async def estimate_weight(self, call: Any, keypair: Any) -> dict:
        await self._enter("estimate_weight")
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        await self._enter("account_next_index")
        return self._nonces.get(address, 0)

    async def mev_next_key(self) -> bytes | None:
        return None

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> ExtrinsicResult | None:
        return None

    # -- writes --------------------------------------------------------------------------------------

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> ExtrinsicResult:
        fault = await self._enter("submit")
        if not isinstance(call, FakeCall):
            call = await self.compose(call)
        signer = keypair.ss58_address
        nonce = self._nonces.get(signer, 0) if nonce is None else nonce
        payload = call.data + nonce.to_bytes(8, "little") + bytes.fromhex(_block_hash(0)[2:])
        signature = keypair.sign(payload)
        if inspect.isawaitable(signature):
            signature = await signature
        if not verify_signature(payload, bytes(signature), signer):
            message = "Invalid Transaction: Transaction has a bad signature"
            return ExtrinsicResult(success=False, message=message, error=ChainError(message, "BadProof"))
        if fault is not None and not fault.landed:
            return self._lost()
        result = self._include(call, signer)
        return self._lost() if fault is not None else result

    def _lost(self) -> ExtrinsicResult:
        return ExtrinsicResult(
            success=False, message=SUBMIT_DISCONNECT_MESSAGE, error=ChainError(SUBMIT_DISCONNECT_MESSAGE)
        )

    def _include(self, call: FakeCall, signer: str) -> ExtrinsicResult:
        with self._lock:
            self.head += 1
            block = self.head
        index = 1 + sum(1 for x in self.extrinsics if x.block == block)
        self._nonces[signer] = self._nonces.get(signer, 0) + 1
        try:
            self._dispatch(call, signer, block)
        except _Rejected as rejected:
            self.extrinsics.append(
                ExtrinsicRecord(
                    block, index, signer, call.module, call.function, call.params, False, rejected.name
                )
            )
            text = f"{rejected.name}: {rejected.docs}"
            return ExtrinsicResult(
                success=False,
                message=text,
                block_hash=_block_hash(block),
                extrinsic_id=f"{block}-{index:04d}",
                error=ChainError(text, rejected.name),
            )
        record = ExtrinsicRecord(block, index, signer, call.module, call.function, call.params, True, None)
        self.extrinsics.append(record)
        return ExtrinsicResult(
            success=True,
            message="Success",
            block_hash=_block_hash(block),
            extrinsic_id=f"{block}-{index:04d}",
            fee=Balance.from_rao(0),
            events=[{"extrinsic_idx": index, "event": e} for e in self._events_of(record)],
        )

    def _events_of(self, record: ExtrinsicRecord) -> list[dict]:
        if not record.success:
            return [
                {"module_id": "System", "event_id": "ExtrinsicFailed", "attributes": {"error": record.error}}
            ]
        events = []
        if record.function == "set_commitment":
            events.append(
                {
                    "module_id": "Commitments",
                    "event_id": "Commitment",
                    "attributes": {"netuid": record.params["netuid"], "who": record.signer},
                }
            )
        elif record.function in ("set_weights", "set_mechanism_weights"):
            events.append(
                {
                    "module_id": "SubtensorModule",
                    "event_id": "WeightsSet",
                    "attributes": {"netuid": record.params["netuid"], "uid": record.params.get("uid")},
                }
            )
        return [*events, {"module_id": "System", "event_id": "ExtrinsicSuccess", "attributes": {}}]

    def _dispatch(self, call: FakeCall, signer: str, block: int) -> None:
        handler = {
            ("Commitments", "set_commitment"): self._set_commitment,
            ("SubtensorModule", "set_weights"): self._set_weights,
            ("SubtensorModule", "set_mechanism_weights"): self._set_weights,
            ("SubtensorModule", "commit_timelocked_mechanism_weights"): self._commit_timelocked,
        }.get((call.module, call.function))
        if handler is None:
            raise NotImplementedError(f"FakeSubstrate does not model call {call.module}.{call.function}")
        handler(call.params, signer, block)

    def _registered(self, params: dict, signer: str, error: str) -> tuple[FakeSubnet, int]:
        subnet = self._subnet(params["netuid"])
        if subnet is None:
            raise _Rejected("SubnetNotExists", "The subnet does not exist.")
        uid = subnet.uid_of(signer)
        if uid is None:
            raise _Rejected(error, "The hotkey is not registered on this subnet.")
        return subnet, uid

    def _set_commitment(self, params: dict, signer: str, block: int) -> None:
        subnet, _uid = self._registered(params, signer, "AccountNotAllowedCommit")
        fields = params["info"]["fields"]
        if len(fields) > self.max_commitment_fields:
            raise _Rejected("TooManyFieldsInCommitmentInfo", "More fields than MaxFields.")
        subnet.commitments[signer] = self._registration({"fields": list(fields)}, block)

    def _set_weights(self, params: dict, signer: str, block: int) -> None:
        subnet, uid = self._registered(params, signer, "HotKeyNotRegisteredInSubNet")
        if subnet.commit_reveal:
            raise _Rejected("CommitRevealEnabled", "Commit-reveal is enabled: weights must be committed.")
        dests = [int(d) for d in params["dests"]]
        values = [int(v) for v in params["weights"]]
        version_key = int(params["version_key"])
        if version_key < subnet.weights_version_key:
            raise _Rejected("IncorrectWeightVersionKey", "The version key is older than the subnet's.")
        if len(dests) != len(values):
            raise _Rejected("WeightVecNotEqualSize", "uids and weights differ in length.")
        if any(d >= len(subnet.neurons) for d in dests):
            raise _Rejected("UidVecContainInvalidOne", "A uid is not registered.")
        if dests != [uid] and not subnet.neurons[uid].validator_permit:
            raise _Rejected("NeuronNoValidatorPermit", "The neuron has no validator permit.")
        last = subnet.last_update.get(uid, 0)
        if last and block - last < subnet.weights_rate_limit:
            raise _Rejected("SettingWeightsTooFast", "Weights were set too recently.")
        mechid = int(params.get("mecid", 0))
        subnet.weights[uid] = list(zip(dests, values, strict=True))
        subnet.last_update[uid] = block
        self.weights_log.append(
            WeightsRecord(block, subnet.netuid, mechid, uid, signer, tuple(dests), tuple(values), version_key)
        )

    def _commit_timelocked(self, params: dict, signer: str, block: int) -> None:
        subnet, _uid = self._registered(params, signer, "HotKeyNotRegisteredInSubNet")
        self.weight_commits.append(
            WeightCommitRecord(
                block,
                subnet.netuid,
                int(params.get("mecid", 0)),
                signer,
                _as_bytes(params["commit"]),
                int(params["reveal_round"]),
                int(params["commit_reveal_version"]),
            )
        )
