"""Pure parts of the Hub side: file policy, value objects, retry policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sn29_growth.hub import HubUnavailable, ModelRef, RepoFile, RepoNotFound
from sn29_growth.hub.policy import (
    MODEL_FILE_PATTERNS,
    Selection,
    is_model_file,
    missing_model_files,
    select_files,
    select_upload,
)
from sn29_growth.hub.protocol import (
    DownloadIncomplete,
    HubError,
    HubOffline,
    IntegrityError,
    UnsupportedRepo,
    is_commit_sha,
)
from sn29_growth.hub.retry import RetryPolicy, call_with_retries


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("config.json", True),
        ("generation_config.json", True),
        ("model.safetensors", True),
        ("model-00001-of-00004.safetensors", True),
        ("model.safetensors.index.json", True),
        ("tokenizer.json", True),
        ("tokenizer_config.json", True),
        ("special_tokens_map.json", True),
        ("tokenizer.model", True),
        ("pytorch_model.bin", False),
        ("pytorch_model.bin.index.json", False),
        ("model.pt", False),
        ("optimizer.pth", False),
        ("evil.pkl", False),
        ("modeling_llama.py", False),
        ("original/consolidated.safetensors", False),
        ("sub/config.json", False),
        (".hidden.safetensors", False),
        ("README.md", False),
        (".gitattributes", False),
        ("x.safetensors.bin", False),
    ],
)
def test_model_file_policy(path, allowed):
    assert is_model_file(path) is allowed


def test_allow_patterns_cannot_widen_the_policy():
    files = [
        RepoFile(p, 1) for p in ("config.json", "model.safetensors", "model.bin", "a.py", "dir/x.safetensors")
    ]
    sel = select_files(files, ["*", "*/*"])
    assert sel.paths == ("config.json", "model.safetensors")
    assert sel.skipped == ("a.py", "dir/x.safetensors", "model.bin")
    assert sel.total_bytes == 2
    assert select_files(files, ["*.safetensors"]).paths == ("model.safetensors",)


@pytest.mark.parametrize(
    ("listing", "named"),
    [
        ([("config.json", 1), ("model.safetensors", 2), ("model.safetensors", 2)], "'model.safetensors'"),
        ([("config.json", 1), ("model.safetensors", 2), ("model.safetensors", 9)], "'model.safetensors'"),
        ([("config.json", 1), ("model.safetensors", 2), ("README.md", 3), ("README.md", 3)], "'README.md'"),
        (
            [("config.json", 1), ("config.json", 1), ("a.safetensors", 2), ("a.safetensors", 2)],
            "'a.safetensors', 'config.json'",
        ),
    ],
)
def test_listing_naming_a_path_twice_rejects_the_repository(listing, named):
    # A ValueError here used to escape the validator's per-model handling and roll back the whole step.
    files = [RepoFile(path, size) for path, size in listing]
    with pytest.raises(UnsupportedRepo, match="more than once") as info:
        select_files(files)
    assert named in str(info.value)
    assert isinstance(info.value, HubError) and not info.value.retryable
    assert select_files({f.path: f for f in files}.values()).total_bytes > 0  # distinct: fine


def test_selection_itself_still_refuses_a_path_twice():
    with pytest.raises(ValueError, match="twice"):
        Selection(selected=(RepoFile("config.json", 1), RepoFile("config.json", 1)), skipped=())


def test_missing_model_files():
    assert missing_model_files(["config.json", "model.safetensors"]) == []
    assert missing_model_files(["config.json", "pytorch_model.bin"]) == ["*.safetensors"]
    assert missing_model_files([]) == ["config.json", "*.safetensors"]


def test_upload_selection():
    names = ["config.json", "model.safetensors", "README.md", "train.py", "optimizer.pt", ".gitattributes"]
    assert select_upload(names) == ["README.md", "config.json", "model.safetensors"]
    assert select_upload(names, MODEL_FILE_PATTERNS) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "../etc/passwd", "size": 1},
        {"path": "/abs", "size": 1},
        {"path": "a/../b", "size": 1},
        {"path": "dir/", "size": 1},
        {"path": "", "size": 1},
        {"path": "a\\b", "size": 1},
        {"path": "a", "size": -1},
        {"path": "a", "size": 1, "sha256": "ABC"},
        {"path": "a", "size": 1, "blob_id": "z" * 40},
    ],
)
def test_repo_file_validation(kwargs):
    with pytest.raises(ValueError):
        RepoFile(**kwargs)


def test_model_ref_parse():
    assert ModelRef.parse("org/name") == ModelRef("org/name", "main")
    assert ModelRef.parse("org/name@" + "a" * 40).revision == "a" * 40
    assert ModelRef.parse("org/name@v1.0") == ModelRef("org/name", "v1.0")
    for bad in ("name", "org/name@", "a/b/c", "org/na me", "../x", "org/..", "org/name@a b"):
        with pytest.raises(ValueError):
            ModelRef.parse(bad)


_part = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
_rev = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,40}", fullmatch=True).filter(lambda r: ".." not in r)


@given(_part, _part, _rev)
def test_model_ref_round_trip(namespace, name, revision):
    ref = ModelRef(f"{namespace}/{name}", revision)
    assert ModelRef.parse(str(ref)) == ref


def test_commit_sha():
    assert is_commit_sha("0123456789abcdef0123456789abcdef01234567")
    assert not is_commit_sha("main")
    assert not is_commit_sha("0123456789ABCDEF0123456789ABCDEF01234567")


def test_error_hierarchy_and_retryability():
    assert HubUnavailable.retryable and DownloadIncomplete.retryable
    assert not HubOffline.retryable and issubclass(HubOffline, HubUnavailable)
    assert issubclass(DownloadIncomplete, IntegrityError) and not IntegrityError.retryable
    assert not RepoNotFound.retryable


def test_retry_policy_delays():
    policy = RetryPolicy(attempts=5, backoff_s=1.0, max_backoff_s=4.0)
    assert [policy.delay(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 4.0]
    for bad in ({"attempts": 0}, {"backoff_s": -1}, {"backoff_s": 2.0, "max_backoff_s": 1.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_call_with_retries_retries_only_retryable_errors():
    waits: list[float] = []
    outcomes = [HubUnavailable("503"), DownloadIncomplete("cut"), "ok"]

    def flaky():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert (
        call_with_retries(flaky, RetryPolicy(attempts=3, backoff_s=0.5), what="x", sleep=waits.append) == "ok"
    )
    assert waits == [0.5, 1.0]

    calls = []

    def missing():
        calls.append(1)
        raise RepoNotFound("nope")

    with pytest.raises(RepoNotFound):
        call_with_retries(missing, RetryPolicy(attempts=5), what="x", sleep=waits.append)
    assert len(calls) == 1

    def down():
        calls.append(1)
        raise HubUnavailable("503")

    calls.clear()
    with pytest.raises(HubUnavailable):
        call_with_retries(down, RetryPolicy(attempts=4, backoff_s=0.0), what="x", sleep=lambda s: None)
    assert len(calls) == 4
