"""End to end: models → checks → losses → scoring → table/JSON, the CLI, caches and Hub references."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from sn29_growth.checkpoint import save_model
from sn29_growth.eval.evaluate import EvaluationResult, ModelRef, evaluate_models
from sn29_growth.hub.protocol import RepoFile
from sn29_growth.tiny import build_tiny

N = 10  # samples per evaluation: one group of the packaged group_samples (10)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    """Saved tiny checkpoints: two Llamas, a copy of the first, a Phi3, and broken variants."""
    root = tmp_path_factory.mktemp("models")

    def save(model, name, tok=tokenizer):
        save_model(model, root / name, tokenizer=tok)
        return root / name

    out = {
        "a": save(build_tiny("llama-gqa", seed=1, init_std=0.2), "a"),
        "b": save(build_tiny("llama-gqa", seed=2, init_std=0.2), "b"),
        "phi3": save(build_tiny("phi3", seed=1, init_std=0.2), "phi3"),
    }
    out["a_copy"] = root / "a_copy"
    shutil.copytree(out["a"], out["a_copy"])
    nan = build_tiny("llama-gqa", seed=3, init_std=0.2)
    with torch.no_grad():
        nan.model.layers[0].mlp.up_proj.weight[1, 1] = float("nan")
    out["nan"] = save(nan, "nan")
    out["pickle"] = root / "pickle"
    shutil.copytree(out["b"], out["pickle"])
    (out["pickle"] / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    from test_eval_tokenize import bos_tokenizer

    out["bos"] = save(
        build_tiny("llama-gqa", seed=4, init_std=0.2, vocab_size=1025), "bos", tok=bos_tokenizer()
    )
    return out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One loss cache for the module: a model evaluated on the same samples again is not recomputed."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run(shared_cache):
    def _run(paths, **kw) -> EvaluationResult:
        kw.setdefault("samples", N)
        kw.setdefault("cache_dir", shared_cache)
        return evaluate_models([str(p) for p in paths], **kw)

    return _run


def test_two_models_side_by_side(run, models, tmp_path, corpus, tokenizer):
    result = run([models["a"], models["b"]], names=["base", "grown"])
    assert result.competition == "c00"  # inferred from LlamaForCausalLM
    assert result.dataset.startswith("local") and "offline default" in result.dataset_note
    assert result.device == "cpu" and result.dtype == "fp32"
    assert len(result.sample_ids) == N and result.scored_groups == N // 10
    base, grown = result.models
    assert (base.block, grown.block) == (0, 1)
    assert base.rejection is None and grown.rejection is None
    assert base.tokenizer == "own" and len(base.losses) == N and base.n_inf == 0
    assert math.isclose(base.win_rate + grown.win_rate, 1.0)
    assert math.isclose(base.weight + grown.weight, 1.0)
    assert base.wins + grown.wins == result.scored_groups

    # the per-sample losses are the naive batch-1 summed cross-entropy of the chosen samples
    from sn29_growth.lm import corpus_loss
    from sn29_growth.loading import load_model

    texts = {s.id: s.text for s in corpus.held_out}
    ids = [torch.tensor(tokenizer(texts[i])["input_ids"] + [0]) for i in result.sample_ids]
    want = corpus_loss(load_model(models["b"]), ids).summed_losses
    assert all(abs(g - w) <= 1e-4 * w for g, w in zip(grown.losses, want, strict=True))

    table = result.format_table()
    assert "competition c00 · dataset: local" in table and "offline default" in table
    for word in ("mean summed loss", "+inf", "win rate", "weight", "base", "grown"):
        assert word in table
    doc = json.loads(result.to_json_text())
    assert doc["samples"] == list(result.sample_ids)
    assert [m["name"] for m in doc["models"]] == ["base", "grown"]
    assert doc["models"][1]["losses"] == list(grown.losses)
    assert math.isclose(sum(m["weight"] for m in doc["models"]), 1.0)


def test_older_model_keeps_ties(run, models, tmp_path):
    """An identical copy committed later never takes a sample: the older model holds every group."""
    result = run([models["a"], models["a_copy"]])
    first, second = result.models
    assert first.losses == second.losses
    assert (first.win_rate, second.win_rate) == (1.0, 0.0)
    assert (first.weight, second.weight) == (1.0, 0.0)
    swapped = run([models["a_copy"], models["a"]])
    assert swapped.models[0].win_rate == 1.0  # age is argument order, not content


def test_rejections_are_rows_not_crashes(run, models, tmp_path):
    result = run([models["a"], models["phi3"], models["pickle"], models["bos"], models["nan"]])
    rows = {Path(m.name).name: m for m in result.models}
    assert rows["a"].rejection is None and rows["a"].win_rate == 1.0
    assert "Phi3ForCausalLM is not allowed in c00" in rows["phi3"].rejection
    assert "pickle-format weights" in rows["pickle"].rejection
    assert "adds a BOS token" in rows["bos"].rejection
    nan = rows["nan"]
    assert nan.rejection is None and nan.n_inf == N and "non-finite weights" in nan.note
    assert nan.win_rate == 0.0 and nan.weight == 0.0
    table = result.format_table()
    assert table.count("rejected:") == 3 and "non-finite weights" in table
    doc = result.to_json()
    assert doc["models"][1]["losses"] is None and doc["models"][4]["losses"] == [None] * N


def test_token_ids_beyond_the_embedding_are_rejected(run, models, tmp_path, tokenizer):
    small = tmp_path / "small_vocab"
    save_model(build_tiny("llama-gqa", seed=5, vocab_size=512), small, tokenizer=tokenizer)
    result = run([models["a"], small])
    assert "token id 1023 is not below the model's vocab_size 512" in result.models[1].rejection


def test_phi3_infers_c01(run, models, tmp_path):
    result = run([models["phi3"]])
    assert result.competition == "c01" and result.models[0].win_rate == 1.0
    with pytest.raises(ValueError, match="not found"):
        run([models["phi3"]], competition="c99")


def test_loss_cache_skips_loading(run, models, tmp_path, monkeypatch):
    first = run([models["a"], models["b"]], cache_dir=tmp_path)
    assert len(list((tmp_path / "losses").rglob("*.json"))) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although every loss was cached")

    monkeypatch.setattr("sn29_growth.loading.load_model", refuse)
    second = run([models["a"], models["b"]], cache_dir=tmp_path)
    assert [m.losses for m in second.models] == [m.losses for m in first.models]
    third = run([models["a"]], cache_dir=tmp_path, seed=1)  # other samples are not cached: it loads
    assert "was loaded" in third.models[0].rejection


def test_user_file_dataset(run, models, tmp_path):
    data = tmp_path / "texts.txt"
    data.write_text(
        "the first line of text\nanother line, a little longer than the first\n", encoding="utf-8"
    )
    result = run([models["a"]], dataset=str(data), samples=None)
    assert result.sample_ids == ("texts.txt:1", "texts.txt:2") and result.dataset_note is None
    assert all(v > 0 for v in result.models[0].losses)


def test_model_refs_and_arguments(run, models, tmp_path):
    assert ModelRef.parse(models["a"]).path == models["a"]
    ref = ModelRef.parse("alice/llama-grown@0123456789abcdef0123456789abcdef01234567")
    assert (ref.repo_id, ref.revision) == ("alice/llama-grown", "0123456789abcdef0123456789abcdef01234567")
    assert ModelRef.parse("alice/llama").revision == "main"
    with pytest.raises(ValueError, match="not a directory"):
        ModelRef.parse(str(tmp_path / "nope" / "deeper" / "x"))
    with pytest.raises(ValueError, match="distinct name"):
        run([models["a"], models["b"]], names=["x", "x"])


class FakeHub:
    """A HubClient serving local directories as repositories; records what was downloaded."""

    def __init__(self, repos: dict[str, Path], sizes: dict[str, int] | None = None):
        self.repos = repos
        self.sizes = sizes or {}
        self.downloads: list[tuple[str, tuple[str, ...]]] = []

    def resolve_revision(self, repo_id, revision="main"):
        return "ab" * 20

    def repo_files(self, repo_id, revision):
        root = self.repos[repo_id]
        return [RepoFile(p.name, self.sizes.get(p.name, p.stat().st_size)) for p in sorted(root.iterdir())]

    def download(self, repo_id, revision, *, cache_dir, allow_patterns=("*",)):
        from fnmatch import fnmatch

        self.downloads.append((repo_id, tuple(allow_patterns)))
        out = Path(cache_dir) / repo_id.replace("/", "--") / revision
        out.mkdir(parents=True, exist_ok=True)
        for p in self.repos[repo_id].iterdir():
            if any(fnmatch(p.name, pat) for pat in allow_patterns):
                shutil.copy(p, out / p.name)
        return out


def test_hub_models_are_checked_before_weights_are_downloaded(run, models, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = FakeHub({"alice/base": models["a"]})
    big = FakeHub({"bob/huge": models["b"]}, sizes={"model.safetensors": 43 * 10**9})

    result = run(["alice/base"], hub=hub)
    assert result.models[0].rejection is None and result.models[0].name == "alice/base"
    assert hub.downloads[0] == ("alice/base", ("config.json",))  # config first, for the checks
    assert len(hub.downloads) == 2

    rejected = run(["bob/huge"], hub=big)
    assert "above the limit of 42,000,000,000" in rejected.models[0].rejection
    assert big.downloads == [("bob/huge", ("config.json",))]  # the weights were never fetched


def test_cli_table_and_json(run, models, tmp_path, capsys):
    from sn29_growth.cli import main

    args = [
        "evaluate",
        str(models["a"]),
        str(models["b"]),
        "--samples",
        str(N),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "competition c00 · dataset: local" in table and "win rate" in table
    assert "tokenization: exact, on the network's stack (transformers 4.44.0 / tokenizers 0.19.1)" in table
    assert main([*args, "--json", "--no-isolate"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seed"] == 0 and len(doc["models"]) == 2 and len(doc["models"][0]["losses"]) == N
    assert main(["evaluate", str(tmp_path / "missing-dir")]) == 2
    assert f"{tmp_path / 'missing-dir'}: not found" in capsys.readouterr().err


def test_cli_prints_hostile_rows_instead_of_a_traceback(models, tmp_path, capsys):
    """``sn29 evaluate`` isolates each model (its default): a config nested 100k levels deep, a tokenizer
    that makes the tokenizers library panic and a GPT-2 config claiming LlamaForCausalLM are rows with
    reasons; the honest model's losses equal the in-process ones."""
    from sn29_growth.cli import main

    nested = tmp_path / "nested"
    shutil.copytree(models["a"], nested)
    (nested / "config.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    panic = tmp_path / "panic"
    shutil.copytree(models["b"], panic)
    tok = json.loads((panic / "tokenizer.json").read_text())
    tok["normalizer"] = {"type": "Replace", "pattern": {"Regex": ""}, "content": "x"}
    (panic / "tokenizer.json").write_text(json.dumps(tok))
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(models["b"], gpt2)
    config = json.loads((gpt2 / "config.json").read_text())
    (gpt2 / "config.json").write_text(json.dumps(dict(config, model_type="gpt2")))

    args = [
        "evaluate",
        str(nested),
        str(models["a"]),
        str(panic),
        str(gpt2),
        "--samples",
        str(N),
        "--no-cache",
    ]
    assert main([*args, "--competition", "c00"]) == 0
    table = capsys.readouterr().out
    assert "nested 100000 levels deep" in table and "PanicException" in table and "model_type 'gpt2'" in table
    assert main([*args, "--json"]) == 0  # the competition is inferred from the first readable model
    doc = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert [doc[str(p)]["rejection"] is not None for p in (nested, panic, gpt2)] == [True, True, True]
    assert doc[str(models["a"])]["rejection"] is None and doc[str(models["a"])]["network"] == "ok"
    assert main([*args, "--json", "--no-isolate"]) == 0
    inline = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert inline[str(models["a"])]["losses"] == doc[str(models["a"])]["losses"]
    assert "PanicException" in inline[str(panic)]["rejection"]


def _cached_hub_tokenizer(repo_id: str, tokenizer) -> None:
    """A Hub tokenizer laid out by hand in the (offline) Hugging Face cache, as a competition names one."""
    from huggingface_hub import constants

    sha = "c" * 40
    root = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(sha)
    from sn29_growth.network.tokenizer import save_tokenizer

    save_tokenizer(tokenizer, root / "snapshots" / sha)
    (root / ".no_exist" / sha).mkdir(parents=True, exist_ok=True)  # the Hub said: no config.json here
    (root / ".no_exist" / sha / "config.json").touch()


def test_an_unusable_own_tokenizer_falls_back_to_the_competition_s(models, tmp_path, tokenizer):
    """As the reference does: a model's own tokenizer that cannot be used (here it makes the tokenizers
    library panic) is replaced by the competition's tokenizer, and the row says so; with no competition
    tokenizer the model is rejected."""
    from sn29_growth.eval.competitions import Competition

    _cached_hub_tokenizer("test-org/competition-tok", tokenizer)
    panic = tmp_path / "panic"
    shutil.copytree(models["a"], panic)
    tok = json.loads((panic / "tokenizer.json").read_text())
    tok["normalizer"] = {"type": "Replace", "pattern": {"Regex": ""}, "content": "x"}
    (panic / "tokenizer.json").write_text(json.dumps(tok))
    entry = {"reward": 1.0, "model_types": ["LlamaForCausalLM"], "model_size": 10**9, "parameters": 10**8,
             "dataset": "local", "tokenizer": "test-org/competition-tok", "free_tokenizer": True,
             "max_sequence_len": 4096}  # fmt: skip
    comp = Competition.from_dict("c00", entry)
    kw = dict(samples=N, cache_dir=False, competition=comp, free_tokenizer=True, fallback_tokenizer=True)
    result = evaluate_models([str(models["a"]), str(panic)], **kw)
    honest, fallen = result.models
    assert fallen.rejection is None and fallen.tokenizer == "test-org/competition-tok"
    assert "own tokenizer unusable" in fallen.note and "PanicException" in fallen.note
    assert fallen.losses == honest.losses  # the same weights, the same (embedded) tokenizer
    alone = evaluate_models([str(panic)], **dict(kw, fallback_tokenizer=False))
    assert "PanicException" in alone.models[0].rejection


def test_a_model_s_own_tokenizer_needs_a_max_sequence_len(models):
    from sn29_growth.eval.competitions import Competition

    entry = {"reward": 1.0, "model_types": ["LlamaForCausalLM"], "model_size": 10**9, "parameters": 10**8,
             "dataset": "local", "free_tokenizer": True}  # fmt: skip
    result = evaluate_models(
        [str(models["a"])], samples=N, cache_dir=False, competition=Competition.from_dict("c00", entry)
    )
    assert "sets no max_sequence_len" in result.models[0].rejection
    zero = Competition.from_dict("c00", {**entry, "max_sequence_len": 0})  # 0: no limit
    assert (
        evaluate_models([str(models["a"])], samples=N, cache_dir=False, competition=zero).models[0].rejection
        is None
    )


def test_sn29_train_output_is_a_valid_model_folder(models, tmp_path):
    """Our own outputs are valid inputs: the optimizer checkpoints under ``checkpoints/`` are not model files."""
    from sn29_growth.train import BatchConfig, CheckpointConfig, TrainConfig, train

    config = TrainConfig(steps=2, eval_every=0, batch=BatchConfig(batch_size=2, seq_len=16, eval_windows=2),
                         checkpoint=CheckpointConfig(save_every=1), device="cpu", progress=False)  # fmt: skip
    train(models["a"], tmp_path / "trained", config)
    assert list((tmp_path / "trained" / "checkpoints").rglob("optimizer.pt"))
    result = evaluate_models([str(tmp_path / "trained")], samples=N, cache_dir=False)
    assert result.models[0].rejection is None and result.models[0].network == "ok"
