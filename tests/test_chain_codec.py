"""The commitment ``info`` argument through the SDK's real SCALE codec (``bittensor_core.Runtime``).

The runtime metadata is the small hand-built one of ``fake_metadata`` (the Commitments pallet's types);
the codec encoding and decoding it is the one the SDK uses against a live chain.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from fake_metadata import fake_runtime, type_string

from sn29_growth.chain.bittensor_client import MAX_RAW_FIELD_BYTES, commitment_info
from sn29_growth.chain.commitment import MAX_COMMITMENT_BYTES, ModelCommitment

COMMITMENTS_PALLET = 18  # index given to the pallet in fake_metadata
SET_COMMITMENT = 0


def scale_compact(n: int) -> bytes:
    assert n < 1 << 6
    return bytes([n << 2])


def longest_commitment() -> str:
    digest = base64.b64encode(hashlib.sha256(b"model").digest()).decode()
    value = ModelCommitment("a" * 10, "b" * 27, "f" * 40, digest, "c00").format()
    assert len(value.encode()) == MAX_COMMITMENT_BYTES
    return value


@pytest.mark.parametrize("value", ["abc", "alice:llama-grown:x", "ünïcode", longest_commitment()])
def test_info_encodes_as_one_raw_field(value):
    raw = value.encode("utf-8")
    runtime = fake_runtime()
    call = bytes(
        runtime.compose_call("Commitments", "set_commitment", {"netuid": 29, "info": commitment_info(value)})
    )
    # pallet, call, NetUid(u16 LE), Vec<Data> length 1, Data variant Raw<n> has index n + 1, then the n bytes.
    expected = bytes([COMMITMENTS_PALLET, SET_COMMITMENT]) + (29).to_bytes(2, "little") + scale_compact(1)
    expected += bytes([len(raw) + 1]) + raw
    assert call == expected
    decoded = runtime.decode_call(call)
    args = {a["name"]: a["value"] for a in decoded["call_args"]}
    assert args == {"netuid": 29, "info": {"fields": [{f"Raw{len(raw)}": "0x" + raw.hex()}]}}


def test_storage_value_decodes_to_the_shape_the_sdk_reader_reads():
    runtime = fake_runtime()
    value = longest_commitment()
    record = {"deposit": 0, "block": 1234, "info": commitment_info(value)}
    encoded = bytes(runtime.encode(type_string("Registration"), record))
    decoded = runtime.decode(type_string("Registration"), encoded, True)
    assert decoded == {
        "deposit": 0,
        "block": 1234,
        "info": {"fields": [{"Raw128": "0x" + value.encode().hex()}]},
    }


def test_too_long_values_are_refused_before_the_codec():
    assert MAX_RAW_FIELD_BYTES == MAX_COMMITMENT_BYTES == 128
    with pytest.raises(ValueError, match="at most 128"):
        commitment_info("x" * 129)
    with pytest.raises(ValueError, match="non-empty"):
        commitment_info("")
    # The chain's Data enum has no Raw129: the codec refuses it too.
    with pytest.raises(ValueError, match="Raw129"):
        fake_runtime().compose_call(
            "Commitments", "set_commitment", {"netuid": 29, "info": {"fields": [{"Raw129": b"x" * 129}]}}
        )
