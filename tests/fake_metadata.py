"""A small runtime metadata blob (SCALE ``MetadataVersioned``, V14) for the SDK's own codec.

It declares the types of the calls and storage the tests exercise, shaped as the subtensor runtime
declares them, so that ``bittensor_core.Runtime`` (the Rust codec under the bittensor SDK) encodes
calls and decodes values exactly as it does against a live chain:

- ``Commitments.set_commitment(netuid: NetUid, info: CommitmentInfo)``, where ``CommitmentInfo`` is
  ``{fields: BoundedVec<Data>}`` and ``Data`` is the enum ``None | Raw0..Raw128([u8; n]) | BlakeTwo256 |
  Sha256 | Keccak256 | ShaThree256 | ResetBondsFlag | TimelockEncrypted{encrypted, reveal_round}``
  (SCALE variant index of ``Raw<n>`` is ``n + 1``, as the pallet encodes it);
- the storage value ``Registration {deposit: u64, block: u32, info: CommitmentInfo}`` (``CommitmentOf``);
- ``SubtensorModule.set_weights`` / ``set_mechanism_weights`` / ``commit_timelocked_mechanism_weights``
  (argument names as in the SDK's generated call builders).

Pallet and call indices are arbitrary; nothing here is sent anywhere.
"""

from __future__ import annotations

import functools
import struct

import bittensor_core

SPEC_VERSION = 400
TRANSACTION_VERSION = 1
SS58_FORMAT = 42


def _compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return struct.pack("<H", (n << 2) | 1)
    if n < 1 << 30:
        return struct.pack("<I", (n << 2) | 2)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def _str(text: str) -> bytes:
    raw = text.encode()
    return _compact(len(raw)) + raw


def _vec(items: list[bytes]) -> bytes:
    return _compact(len(items)) + b"".join(items)


def _opt(value: bytes | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + value


def _field(ty: int, name: str | None = None, type_name: str | None = None) -> bytes:
    return (
        _opt(None if name is None else _str(name))
        + _compact(ty)
        + _opt(None if type_name is None else _str(type_name))
        + _vec([])
    )


def _composite(fields: list[bytes]) -> bytes:
    return b"\x00" + _vec(fields)


def _variant(variants: list[tuple[str, list[bytes], int]]) -> bytes:
    return b"\x01" + _vec(
        [_str(name) + _vec(fields) + bytes([index]) + _vec([]) for name, fields, index in variants]
    )


def _sequence(ty: int) -> bytes:
    return b"\x02" + _compact(ty)


def _array(length: int, ty: int) -> bytes:
    return b"\x03" + struct.pack("<I", length) + _compact(ty)


def _tuple(types: list[int]) -> bytes:
    return b"\x04" + _vec([_compact(t) for t in types])


def _primitive(kind: int) -> bytes:
    return b"\x05" + bytes([kind])


def _compact_of(ty: int) -> bytes:
    return b"\x06" + _compact(ty)


class _Registry:
    def __init__(self) -> None:
        self._types: list[bytes] = []

    def add(
        self, type_def: bytes, path: tuple[str, ...] = (), params: tuple[tuple[str, int | None], ...] = ()
    ) -> int:
        type_id = len(self._types)
        encoded_params = _vec(
            [_str(name) + _opt(None if ty is None else _compact(ty)) for name, ty in params]
        )
        self._types.append(
            _compact(type_id) + _vec([_str(p) for p in path]) + encoded_params + type_def + _vec([])
        )
        return type_id

    def encode(self) -> bytes:
        return _vec(self._types)


@functools.lru_cache(maxsize=1)
def build_metadata() -> tuple[bytes, dict[str, int]]:
    """The metadata bytes and the type ids of the named types (``Registration``, ``CommitmentInfo``)."""
    reg = _Registry()
    u8, u16, u32, u64 = (reg.add(_primitive(kind)) for kind in (3, 4, 5, 6))
    byte_vec = reg.add(_sequence(u8))
    arrays = {n: reg.add(_array(n, u8)) for n in range(129)}
    netuid = reg.add(_composite([_field(u16, type_name="u16")]), ("subtensor_runtime_common", "NetUid"))
    mechid = reg.add(_composite([_field(u8, type_name="u8")]), ("subtensor_runtime_common", "MechId"))
    account = reg.add(
        _composite([_field(arrays[32], type_name="[u8; 32]")]), ("sp_core", "crypto", "AccountId32")
    )
    bounded_bytes = reg.add(
        _composite([_field(byte_vec, type_name="Vec<T>")]),
        ("bounded_collections", "bounded_vec", "BoundedVec"),
        (("T", u8), ("S", None)),
    )
    data_variants = [("None", [], 0)]
    data_variants += [(f"Raw{n}", [_field(arrays[n], type_name=f"[u8; {n}]")], n + 1) for n in range(129)]
    data_variants += [
        (name, [_field(arrays[32], type_name="[u8; 32]")], index)
        for index, name in enumerate(("BlakeTwo256", "Sha256", "Keccak256", "ShaThree256"), start=130)
    ]
    data_variants += [
        ("ResetBondsFlag", [], 134),
        ("TimelockEncrypted", [_field(bounded_bytes, "encrypted"), _field(u64, "reveal_round")], 135),
    ]
    data = reg.add(_variant(data_variants), ("pallet_commitments", "types", "Data"))
    bounded_data = reg.add(
        _composite([_field(reg.add(_sequence(data)), type_name="Vec<T>")]),
        ("bounded_collections", "bounded_vec", "BoundedVec"),
        (("T", data), ("S", None)),
    )
    info = reg.add(
        _composite([_field(bounded_data, "fields", "BoundedVec<Data, FieldLimit>")]),
        ("pallet_commitments", "types", "CommitmentInfo"),
        (("FieldLimit", None),),
    )
    registration = reg.add(
        _composite(
            [_field(u64, "deposit", "Balance"), _field(u32, "block", "BlockNumber"), _field(info, "info")]
        ),
        ("pallet_commitments", "types", "Registration"),
    )
    commitments_call = reg.add(
        _variant([("set_commitment", [_field(netuid, "netuid", "NetUid"), _field(info, "info")], 0)]),
        ("pallet_commitments", "pallet", "Call"),
    )
    u16_vec = reg.add(_sequence(reg.add(_compact_of(u16))))
    subtensor_call = reg.add(
        _variant(
            [
                (
                    "set_weights",
                    [
                        _field(netuid, "netuid", "NetUid"),
                        _field(u16_vec, "dests"),
                        _field(u16_vec, "weights"),
                        _field(u64, "version_key", "u64"),
                    ],
                    0,
                ),
                (
                    "set_mechanism_weights",
                    [
                        _field(netuid, "netuid", "NetUid"),
                        _field(mechid, "mecid", "MechId"),
                        _field(u16_vec, "dests"),
                        _field(u16_vec, "weights"),
                        _field(u64, "version_key", "u64"),
                    ],
                    1,
                ),
                (
                    "commit_timelocked_mechanism_weights",
                    [
                        _field(netuid, "netuid", "NetUid"),
                        _field(mechid, "mecid", "MechId"),
                        _field(bounded_bytes, "commit", "BoundedVec"),
                        _field(u64, "reveal_round", "u64"),
                        _field(u16, "commit_reveal_version", "u16"),
                    ],
                    2,
                ),
            ]
        ),
        ("pallet_subtensor", "pallet", "Call"),
    )
    runtime_call = reg.add(
        _variant(
            [
                ("SubtensorModule", [_field(subtensor_call)], 7),
                ("Commitments", [_field(commitments_call)], 18),
            ]
        ),
        ("node_subtensor_runtime", "RuntimeCall"),
    )
    unit = reg.add(_tuple([]))
    extrinsic = reg.add(
        _composite([_field(byte_vec)]),
        ("sp_runtime", "generic", "unchecked_extrinsic", "UncheckedExtrinsic"),
        (("Address", account), ("Call", runtime_call), ("Signature", unit), ("Extra", unit)),
    )
    runtime = reg.add(_composite([]), ("node_subtensor_runtime", "Runtime"))

    def pallet(name: str, calls: int, index: int) -> bytes:
        # name, storage: None, calls, event: None, constants: [], error: None, index
        return (
            _str(name)
            + _opt(None)
            + _opt(_compact(calls))
            + _opt(None)
            + _vec([])
            + _opt(None)
            + bytes([index])
        )

    body = (
        reg.encode()
        + _vec([pallet("SubtensorModule", subtensor_call, 7), pallet("Commitments", commitments_call, 18)])
        + _compact(extrinsic)
        + bytes([4])
        + _vec([])
        + _compact(runtime)
    )
    return b"meta" + bytes([14]) + body, {"Registration": registration, "CommitmentInfo": info}


@functools.lru_cache(maxsize=1)
def fake_runtime() -> bittensor_core.Runtime:
    """The SDK's codec loaded with :func:`build_metadata` (cached: building it takes a few ms)."""
    metadata, _ids = build_metadata()
    return bittensor_core.Runtime(metadata, SPEC_VERSION, TRANSACTION_VERSION, SS58_FORMAT)


def type_string(name: str) -> str:
    """The codec's type string for a named type of :func:`build_metadata` (``scale_info::<id>``)."""
    return f"scale_info::{build_metadata()[1][name]}"
