"""Bounded reads of a model folder's JSON files: hostile files are errors naming the file, never hangs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sn29_growth.checkpoint import (
    CONFIG_LIMITS,
    CheckpointFileError,
    JsonLimits,
    parse_json_bounded,
    read_config,
    read_json,
    write_config,
)

SMALL = JsonLimits(max_bytes=1000, max_depth=4, max_values=20)


def test_a_real_config_reads_back(tmp_path):
    config = json.loads((Path(__file__).parent / "data" / "configs" / "llama-3.2-1b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_config(tmp_path) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x" * 1001, "above the limit of 1,000"),
        (b'{"a": ' * 5 + b"1" + b"}" * 5, "nested 5 levels deep"),
        (b"[" + b"0," * 30 + b"0]", "JSON values"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
    ],
)
def test_limits_and_malformed_input(data, message):
    with pytest.raises(CheckpointFileError, match=message):
        parse_json_bounded(data, SMALL, "f.json")


def test_brackets_and_separators_inside_strings_do_not_count():
    text = json.dumps({"a": "{[{[{[,:,:,:,:,:,:,:,:,:,:,:,:,:,:,:,:,:,:]}]}", "b": 'quote \\" {{{{'})
    assert parse_json_bounded(text.encode(), SMALL, "f.json")["b"] == 'quote \\" {{{{'


def test_a_config_nested_100k_levels_is_rejected_quickly(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    t0 = time.monotonic()
    with pytest.raises(CheckpointFileError, match=r"config.json: nested 100000 levels deep"):
        read_config(tmp_path)
    assert time.monotonic() - t0 < 2


def test_tens_of_megabytes_are_refused_before_reading(tmp_path):
    path = tmp_path / "config.json"
    with path.open("wb") as f:
        f.truncate(30 * 1024 * 1024)
    with pytest.raises(CheckpointFileError, match="above the limit of 1,048,576"):
        read_config(tmp_path)


def test_a_million_keys_are_refused(tmp_path):
    keys = b",".join(b'"%d":0' % i for i in range(1_000_000))
    path = tmp_path / "config.json"
    path.write_bytes(b"{" + keys + b"}")
    with pytest.raises(CheckpointFileError, match="bytes, above the limit"):
        read_config(tmp_path)
    dense = b"[" + b"0," * 400_000 + b"0]"  # under the byte limit, over the value limit
    assert len(dense) < CONFIG_LIMITS.max_bytes
    path.write_bytes(b'{"x": ' + dense + b"}")
    with pytest.raises(CheckpointFileError, match="JSON values, above the limit of 50,000"):
        read_config(tmp_path)


def test_missing_and_non_object(tmp_path):
    with pytest.raises(CheckpointFileError, match="missing"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointFileError, match="not a JSON object"):
        read_config(tmp_path)
    (tmp_path / "tokenizer.json").mkdir()
    with pytest.raises(CheckpointFileError, match="not a regular file"):
        read_json(tmp_path / "tokenizer.json")


def test_write_config_writes_the_network_form(tmp_path):
    written = write_config(
        tmp_path, {"model_type": "llama", "dtype": "bfloat16", "norm_divisor": None, "x": 1}
    )
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk == written == {"model_type": "llama", "torch_dtype": "bfloat16", "x": 1}
