"""The SN29 commitment string and the salted content hash."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sn29_growth.chain.commitment import (
    HASHED_FILE_PATTERNS,
    MAX_COMMITMENT_BYTES,
    ModelCommitment,
    content_hash,
    directory_hash,
    file_digest,
    hashed_files,
    is_hashed_file,
)

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HASH = base64.b64encode(hashlib.sha256(b"x").digest()).decode()

# The fixed model directory of the test vector: name -> bytes.
MODEL_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n',
    "generation_config.json": b'{"eos_token_id": 2}\n',
    "model-00001-of-00002.safetensors": bytes(range(256)) * 4,
    "model-00002-of-00002.safetensors": b"\x00" * 1000,
    "model.safetensors.index.json": b'{"weight_map": {}}\n',
    "tokenizer.json": b'{"version": "1.0"}\n',
    "tokenizer_config.json": b'{"model_max_length": 4096}\n',
    "special_tokens_map.json": b'{"eos_token": "</s>"}\n',
}
NOT_HASHED = {
    "README.md": b"# a model card\n",
    "growth_recipe.json": b'{"steps": []}\n',
    ".gitattributes": b"*.safetensors filter=lfs\n",
    "training_args.bin": b"\x01\x02",
}
# The test vector, as computed once from MODEL_FILES with hotkey ALICE.
EXPECTED_HASH = "I8/yTF9jzWuUtAgw8dMzQ6WQ/J2Z76AApksBRWqtZVg="


def write_model(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_content_hash_test_vector(tmp_path):
    model = write_model(tmp_path / "model", {**MODEL_FILES, **NOT_HASHED})
    # Independent computation, step by step.
    digests = []
    for name in sorted(MODEL_FILES):
        file_sha = hashlib.sha256(MODEL_FILES[name]).digest()
        digests.append(base64.b64encode(file_sha).decode("ascii"))
    concatenated = "".join(digests)
    dir_hash = base64.b64encode(hashlib.sha256(concatenated.encode("utf-8")).digest()).decode("ascii")
    expected = base64.b64encode(hashlib.sha256((dir_hash + ALICE).encode("utf-8")).digest()).decode("ascii")

    assert content_hash(model, ALICE) == expected
    assert expected == EXPECTED_HASH
    assert len(EXPECTED_HASH) == 44
    assert directory_hash(hashed_files(model)) == dir_hash


def test_hash_is_salted_by_hotkey_and_ignores_unhashed_files(tmp_path):
    bare = write_model(tmp_path / "bare", MODEL_FILES)
    full = write_model(tmp_path / "full", {**MODEL_FILES, **NOT_HASHED})
    assert content_hash(bare, ALICE) == content_hash(full, ALICE)
    assert content_hash(bare, ALICE) != content_hash(bare, BOB)


def test_any_hashed_byte_changes_the_hash(tmp_path):
    base = content_hash(write_model(tmp_path / "a", MODEL_FILES), ALICE)
    for name in ("config.json", "model-00002-of-00002.safetensors", "tokenizer.json"):
        changed = dict(MODEL_FILES)
        changed[name] = MODEL_FILES[name] + b" "
        assert content_hash(write_model(tmp_path / name, changed), ALICE) != base, name


def test_explicit_mapping_equals_directory(tmp_path):
    model = write_model(tmp_path / "model", {**MODEL_FILES, **NOT_HASHED})
    mapping = {name: model / name for name in MODEL_FILES}
    assert content_hash(mapping, ALICE) == content_hash(model, ALICE)
    # Names are hashed in sorted order, whatever the mapping's order.
    reversed_mapping = dict(reversed(list(mapping.items())))
    assert content_hash(reversed_mapping, ALICE) == content_hash(model, ALICE)


def test_hashed_file_selection(tmp_path):
    model = write_model(
        tmp_path / "model", {**MODEL_FILES, **NOT_HASHED, "vocab.json": b"{}", "merges.txt": b""}
    )
    (model / "sub").mkdir()
    (model / "sub" / "extra.safetensors").write_bytes(b"nested")
    assert sorted(hashed_files(model)) == sorted([*MODEL_FILES, "vocab.json", "merges.txt"])
    assert not is_hashed_file("sub/extra.safetensors")
    assert not is_hashed_file("pytorch_model.bin")
    assert "*.safetensors" in HASHED_FILE_PATTERNS and "config.json" in HASHED_FILE_PATTERNS


@pytest.mark.parametrize("missing", ["config.json", "safetensors"])
def test_directory_must_be_a_model(tmp_path, missing):
    files = {n: b for n, b in MODEL_FILES.items() if missing not in n}
    with pytest.raises(ValueError, match="config.json|safetensors"):
        hashed_files(write_model(tmp_path / "m", files))


def test_file_digest_streams_large_files(tmp_path):
    data = bytes(range(251)) * 40_000  # ~10 MB: more than one read chunk
    path = tmp_path / "big.safetensors"
    path.write_bytes(data)
    assert file_digest(path) == base64.b64encode(hashlib.sha256(data).digest()).decode()


def make(**overrides: str) -> ModelCommitment:
    fields = {
        "namespace": "alice",
        "name": "llama-grown",
        "commit": COMMIT,
        "hash": HASH,
        "competition": "c00",
    }
    return ModelCommitment(**{**fields, **overrides})


def test_format_parse_round_trip():
    c = make()
    text = c.format()
    assert text == f"alice:llama-grown:{COMMIT}:{HASH}:c00"
    assert str(c) == text
    assert ModelCommitment.parse(text) == c
    assert c.repo_id == "alice/llama-grown"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", ""),
        ("namespace", "al ice"),
        ("namespace", "-alice"),
        ("namespace", "al--ice"),
        ("name", "llama."),
        ("name", "ll..ama"),
        ("name", "llama.git"),
        ("name", "café"),
        ("commit", COMMIT.upper()),
        ("commit", COMMIT[:-1]),
        ("commit", "g" * 40),
        ("hash", HASH[:-1]),
        ("hash", HASH.replace("=", "A")),
        ("hash", "!" * 44),
        ("hash", base64.b64encode(b"x" * 33).decode()[:44]),
        ("competition", ""),
        ("competition", "C00"),
        ("competition", "c 0"),
    ],
)
def test_invalid_parts_are_named(field, value):
    with pytest.raises(ValueError, match=f"^{field} "):
        make(**{field: value})


def test_parse_errors():
    with pytest.raises(ValueError, match="5 ':'-separated parts"):
        ModelCommitment.parse(f"alice:llama:{COMMIT}:{HASH}")
    with pytest.raises(ValueError, match="5 ':'-separated parts"):
        ModelCommitment.parse(f"alice:llama:{COMMIT}:{HASH}:c00:extra")
    with pytest.raises(ValueError, match="^commit "):
        ModelCommitment.parse(f"alice:llama:main:{HASH}:c00")


def test_byte_bound_counts_the_whole_string_including_competition():
    free = MAX_COMMITMENT_BYTES - 40 - 44 - 4  # characters left for namespace + name + competition
    assert free == 40
    fits = make(namespace="a" * 10, name="b" * 27, competition="c00")
    assert len(fits.format().encode()) == MAX_COMMITMENT_BYTES
    # The repo id alone would be fine; the competition pushes the string over the bound.
    with pytest.raises(ValueError, match="129 bytes, more than the 128-byte limit"):
        make(namespace="a" * 10, name="b" * 27, competition="c000")
    with pytest.raises(ValueError, match="limit"):
        ModelCommitment.parse(fits.format() + "0")


_part = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,8}[A-Za-z0-9_])?", fullmatch=True).filter(
    lambda s: "--" not in s  # the Hub refuses '--' inside a repo id part
)


@given(
    namespace=_part,
    name=_part,
    commit=st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
    digest=st.binary(min_size=32, max_size=32),
    competition=st.from_regex(r"[a-z0-9_-]{1,6}", fullmatch=True),
)
def test_round_trip_property(namespace, name, commit, digest, competition):
    c = ModelCommitment(namespace, name, commit, base64.b64encode(digest).decode(), competition)
    assert ModelCommitment.parse(c.format()) == c
