"""``sn29 evaluate`` holds no silent surprises: models of mixed architectures are each evaluated in their
own competition, a named competition refuses the models it does not accept before evaluating anything, and
a Hub model whose files cannot be fetched is "not evaluated" (exit code 1), never a rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sn29_growth.checkpoint import save_model
from sn29_growth.cli import main as sn29
from sn29_growth.eval.competitions import default_competitions
from sn29_growth.eval.evaluate import evaluate_models, group_by_competition
from sn29_growth.hub.protocol import HubOffline, RepoFile
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer

FAST = ["--samples", "10", "--no-isolate", "--no-cache", "--device", "cpu", "--dataset", "local"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for kind, name in (("llama-gqa", "llama"), ("phi3", "phi3")):
        save_model(build_tiny(kind, seed=0), root / name, tokenizer=embedded_tokenizer())
    return root


def test_mixed_architectures_get_one_table_per_competition(folders, capsys):
    llama, phi3 = str(folders / "llama"), str(folders / "phi3")
    assert sn29(["evaluate", llama, phi3, *FAST]) == 0
    out = capsys.readouterr().out
    c00, c01 = out.split("\n\n")
    assert c00.startswith("competition c00") and llama in c00 and phi3 not in c00
    assert c01.startswith("competition c01") and phi3 in c01
    assert "rejected" not in out
    assert sn29(["evaluate", phi3, llama, *FAST, "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["competition"] for d in docs] == ["c01", "c00"]  # in the order of each group's first model
    assert [[m["name"], m["block"], m["weight"]] for d in docs for m in d["models"]] == [
        [phi3, 0, 1.0],
        [llama, 1, 1.0],
    ]  # ages follow the argument order across the tables


def test_a_named_competition_refuses_what_it_does_not_accept_before_evaluating(folders, capsys):
    llama, phi3 = str(folders / "llama"), str(folders / "phi3")
    assert sn29(["evaluate", llama, phi3, *FAST, "--competition", "c00"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"--competition c00 does not accept {phi3} (Phi3ForCausalLM)" in captured.err
    assert sn29(["evaluate", llama, *FAST, "--competition", "c00"]) == 0


def test_models_of_no_competition_go_with_the_first_group():
    table = default_competitions()
    groups = group_by_competition(table, [None, "Phi3ForCausalLM", "GPT2", "LlamaForCausalLM"])
    assert [(c.name, members) for c, members in groups] == [("c01", [0, 1, 2]), ("c00", [3])]
    with pytest.raises(ValueError, match="no competition accepts architecture GPT2"):
        group_by_competition(table, ["GPT2", None])


class _ConfigOnlyHub:
    """A Hub that serves a repository's listing and config.json but not its weights (offline, cache partial)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def resolve_revision(self, repo_id, revision="main"):
        return "a" * 40

    def repo_files(self, repo_id, revision):
        return [RepoFile(p.name, p.stat().st_size) for p in self.folder.iterdir()]

    def download(self, repo_id, revision, *, cache_dir, allow_patterns=()):
        if tuple(allow_patterns) == ("config.json",):
            return self.folder
        raise HubOffline(f"{repo_id}@{revision}: offline mode and not in the cache {cache_dir}")


def test_a_hub_model_that_cannot_be_fetched_is_not_evaluated(folders):
    result = evaluate_models(
        [str(folders / "llama"), "org/grown"],
        hub=_ConfigOnlyHub(folders / "llama"),
        dataset="local",
        samples=4,
        cache_dir=False,
        device="cpu",
    )
    local, hub = result.models
    assert hub.unavailable and "could not be fetched: HubOffline" in hub.rejection
    assert result.not_evaluated == (hub,) and local.rejection is None
    assert "not evaluated: could not be fetched" in result.format_table()
    assert hub.to_json()["not_evaluated"] is True


def test_sn29_evaluate_exits_1_when_a_cached_hub_model_cannot_be_fetched_offline(
    folders, tmp_path, capsys, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--org--grown").mkdir()  # in the cache, but not the whole model
    assert sn29(["evaluate", str(folders / "llama"), "org/grown", *FAST]) == 1
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if "org/grown" in line)
    assert "not evaluated: could not be fetched" in row
    assert "not evaluated (files could not be fetched): org/grown" in captured.err
