"""Hostile files of a model folder: bounded in size and in parse cost, parsed only in the model's worker,
never loaded when scoring does not need them, the cheap checks first, every reason bounded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sn29_growth.checkpoint import (
    TOKENIZER_JSON_LIMITS,
    CheckpointFileError,
    JsonLimits,
    parse_json_bounded,
    save_model,
)
from sn29_growth.eval.competitions import default_competitions
from sn29_growth.tiny import build_tiny

C00 = default_competitions()["c00"]


@pytest.fixture(scope="module")
def model(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("hostile") / "model"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=tokenizer)
    return path


def _copy(model: Path, tmp: Path, name: str = "copy") -> Path:
    out = tmp / name
    shutil.copytree(model, out)
    return out


# ------------------------------------------------------------------------------------ bounded JSON


def test_empty_containers_count_against_the_value_limit():
    small = JsonLimits(max_bytes=1000, max_depth=4, max_values=20)
    with pytest.raises(CheckpointFileError, match="JSON values"):
        parse_json_bounded(b"[" + b"[]," * 14 + b"[]]", small, "t.json")


def test_ten_million_empty_lists_hit_the_limit_quickly():
    data = b"[" + b"[]," * 9_999_999 + b"[]]"
    started = time.perf_counter()
    with pytest.raises(CheckpointFileError, match="JSON values, above the limit"):
        parse_json_bounded(data, TOKENIZER_JSON_LIMITS, "tokenizer.json")
    assert time.perf_counter() - started < 5


# ------------------------------------------------------------------------------------ file sizes


@pytest.mark.parametrize(
    "name",
    [
        "chat_template.jinja",
        "chat_template.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "special_tokens_map.json",
        "generation_config.json",
    ],
)
def test_every_file_a_loader_may_read_has_a_size_limit(name):
    from sn29_growth.checkpoint import FILE_SIZE_LIMITS
    from sn29_growth.eval.checks import check_files

    files = {"config.json": 100, "model.safetensors": 1000, name: FILE_SIZE_LIMITS[name] + 1}
    reason = check_files(files, C00)
    assert reason is not None and name in reason and "above the limit" in reason


# ------------------------------------------------------------------------------------ tokenizer folder


def test_the_tokenizer_loads_from_a_folder_of_the_files_scoring_needs(model, tmp_path):
    from sn29_growth.eval.tokenizers import emulated_tokenizer, staged_tokenizer_folder

    folder = _copy(model, tmp_path)
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "generation_config.json").write_text("{}")
    staged = staged_tokenizer_folder(folder)
    names = sorted(p.name for p in Path(staged.name).iterdir())
    assert "chat_template.jinja" not in names and "model.safetensors" not in names
    assert "tokenizer.json" in names and "config.json" in names
    assert emulated_tokenizer(folder).chat_template is None  # transformers 5 would read the template


def test_an_oversized_tokenizer_file_is_refused_before_loading(model, tmp_path, monkeypatch):
    from sn29_growth import checkpoint
    from sn29_growth.eval.tokenizers import TokenizerUnusable, staged_tokenizer_folder

    folder = _copy(model, tmp_path)
    monkeypatch.setitem(checkpoint.FILE_SIZE_LIMITS, "merges.txt", 100)
    (folder / "merges.txt").write_text("a b\n" * 100)
    with pytest.raises(TokenizerUnusable, match="merges.txt is 400 bytes, above the limit of 100"):
        staged_tokenizer_folder(folder)


# ------------------------------------------------------------------------------------ the parent


def test_the_parent_of_an_isolated_evaluation_parses_no_tokenizer_file(model, tmp_path, monkeypatch):
    from sn29_growth import checkpoint
    from sn29_growth.eval import worker
    from sn29_growth.eval.evaluate import evaluate_models

    parsed = []
    real = checkpoint.parse_json_bounded
    monkeypatch.setattr(
        checkpoint, "parse_json_bounded", lambda d, lim, where: parsed.append(where) or real(d, lim, where)
    )
    answered = worker.WorkerResult(True, {"models": {}}, "", 0.1)
    monkeypatch.setattr(worker, "run_in_worker", lambda *a, **k: answered)
    evaluate_models([str(model)], isolate=True, samples=2, cache_dir=None)
    assert parsed and not [w for w in parsed if Path(w).name.startswith("tokenizer")], parsed


# ------------------------------------------------------------------------------------ memory


def test_the_worker_memory_limit_is_sized_from_the_model_with_a_floor():
    from sn29_growth.eval.memory import MEMORY_FLOOR_BYTES, worker_memory_limit

    assert worker_memory_limit(1000, "cpu") == MEMORY_FLOOR_BYTES
    big = 40 * 10**9
    assert worker_memory_limit(big, "cpu") > 2 * big
    assert worker_memory_limit(big, "cuda") is None  # CUDA maps large private ranges: not applied


def test_a_memory_limit_turns_an_allocation_into_a_memory_error():
    code = (
        "from sn29_growth.eval.memory import apply_memory_limit\n"
        "apply_memory_limit(512 << 20)\n"
        "try:\n    bytearray(2 << 30)\nexcept MemoryError:\n    print('MemoryError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "MemoryError", out.stderr


def test_a_memory_error_in_evaluation_is_a_rejection_naming_the_limit(model, monkeypatch):
    from sn29_growth import loading
    from sn29_growth.eval import memory
    from sn29_growth.eval.evaluate import evaluate_models

    def exhausted(*a, **k):
        raise MemoryError

    monkeypatch.setattr(loading, "load_model", exhausted)
    monkeypatch.setattr(memory, "current_memory_limit", lambda: 3 << 30)
    row = evaluate_models([str(model)], samples=2, cache_dir=None).models[0]
    assert "out of memory" in row.rejection and "memory limit of 3.0 GiB" in row.rejection


# ------------------------------------------------------------------------------------ cheap first


def _added_tokens(folder: Path, n: int, first: int) -> None:
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"] += [
        {
            "id": first + i,
            "content": f"<extra_{i}>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
        for i in range(n)
    ]
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def test_token_ids_beyond_vocab_size_are_rejected_before_any_tokenization(model, tmp_path, monkeypatch):
    from sn29_growth.eval import tokenizers
    from sn29_growth.eval.evaluate import evaluate_models

    folder = _copy(model, tmp_path)
    _added_tokens(folder, 2000, 1024)

    def never(*a, **k):
        raise AssertionError("tokenizer loaded")

    monkeypatch.setattr(tokenizers, "load_tokenizer", never)
    row = evaluate_models([str(folder)], samples=2, cache_dir=None).models[0]
    assert row.rejection == "token id 3023 is not below the model's vocab_size 1024"


def test_tokenizer_files_max_id():
    from sn29_growth.checkpoint import tokenizer_files_max_id

    tokenizer_json = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 7}}, "added_tokens": [{"id": 9}]}
    assert tokenizer_files_max_id(tokenizer_json) == 9
    unigram = {"model": {"type": "Unigram", "vocab": [["a", 0.0]] * 5}, "added_tokens": []}
    assert tokenizer_files_max_id(unigram, {"x": 11}, {"12": {}}) == 12
    assert tokenizer_files_max_id(unigram) == 4


# ------------------------------------------------------------------------------------ reasons


def test_quoted_values_and_reasons_are_bounded(model, tmp_path):
    from sn29_growth.eval.checks import check_config
    from sn29_growth.eval.results import ModelResult
    from sn29_growth.reasons import MAX_REASON_CHARS
    from sn29_growth.validator.state import ModelRecord

    config = json.loads((model / "config.json").read_text())
    reason = check_config(dict(config, hidden_act="x" * 900_000), C00)
    assert reason is not None and "hidden_act" in reason and len(reason) < 300
    row = ModelResult(name="m", block=0, rejection="y" * 900_000, note="z" * 900_000)
    assert len(row.rejection) <= MAX_REASON_CHARS and len(row.note) <= MAX_REASON_CHARS
    assert row.rejection.endswith("characters)")
    rec = ModelRecord(hotkey="h", uid=0, commitment="c", competition="c00", block=1)
    rec.reason = "w" * 900_000
    assert len(rec.reason) <= MAX_REASON_CHARS
