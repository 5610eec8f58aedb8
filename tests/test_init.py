"""``sn29 init CONFIG.json DIR``: seeded random weights for a config, in the network's format, written
atomically, with the tokenizer's files and a warning for special token ids the tokenizer does not have."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from sn29_growth.checkpoint import read_model_config
from sn29_growth.cli import main as sn29
from sn29_growth.init import init_checkpoint, special_token_warnings
from sn29_growth.loading import load_model
from sn29_growth.network.rules import check_model
from sn29_growth.params import count_parameters

CONFIGS = Path(__file__).parent / "data" / "configs"
SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
}


def scaled(name: str, tmp_path: Path, **overrides) -> Path:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    config.update(SMALL)
    if "head_dim" in config:
        config["head_dim"] = SMALL["hidden_size"] // SMALL["num_attention_heads"]
    config.update(overrides)
    path = tmp_path / f"{name}-small-{hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:8]}.json"
    path.write_text(json.dumps(config))
    return path


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_llama_from_a_scaled_down_llama_3_2_config(tmp_path, capsys):
    config = scaled("llama-3.2-1b", tmp_path)
    out = tmp_path / "llama"
    argv = [
        "init",
        str(config),
        str(out),
        "--tokenizer",
        "embedded",
        "--seed",
        "3",
        "--max-shard-size",
        "100KB",
    ]
    assert sn29([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the Llama-3 special ids (128000/128001) do not exist in a 1024-token tokenizer: said, not fatal
    assert any(
        "bos_token_id 128000 does not exist in the tokenizer (1,024 tokens)" in w for w in report["warnings"]
    )
    assert any("eos_token_id 128001" in w for w in report["warnings"])
    assert report["tokenizer_size"] == 1024 and "tokenizer.json" in report["tokenizer_files"]
    assert report["shards"] > 1 and report["dtype"] == "bfloat16" and report["network_ok"]
    assert report["parameters"] == count_parameters(out)["parameters"]

    written = read_model_config(out)
    assert written["torch_dtype"] == "bfloat16" and "dtype" not in written
    assert written["rope_scaling"]["rope_type"] == "llama3" and written["rope_theta"] == 500000.0
    assert written["tie_word_embeddings"] is True and written["architectures"] == ["LlamaForCausalLM"]
    assert check_model(out).ok
    model = load_model(out)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(model(input_ids=ids).logits).all()
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert abs(weight.std().item() - 0.02) < 0.005  # initializer_range
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # nothing partial left

    # the same seed gives the same weights, another seed others
    assert sn29([*argv[:2], str(tmp_path / "again"), *argv[3:]]) == 0
    assert (
        sn29(["init", str(config), str(tmp_path / "other"), "--seed", "4", "--max-shard-size", "100KB"]) == 0
    )
    assert digest(out) == digest(tmp_path / "again") != digest(tmp_path / "other")
    text = capsys.readouterr().out
    assert "warning: config bos_token_id 128000 does not exist in the tokenizer" in text
    assert "network (transformers 4.44 validators): loads and scores alike" in text


def test_phi3_with_a_local_tokenizer_folder(tmp_path, tokenizer):
    from sn29_growth.network.tokenizer import save_tokenizer

    tok_dir = tmp_path / "tok"
    save_tokenizer(tokenizer, tok_dir)
    config = scaled("phi-3-mini-4k", tmp_path, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    report = init_checkpoint(config, tmp_path / "phi", tokenizer=str(tok_dir), dtype="float32", seed=1)
    out = tmp_path / "phi"
    assert report.warnings == () and report.network_ok and report.model_type == "phi3"
    for name in report.tokenizer_files:
        assert (out / name).read_bytes() == (tok_dir / name).read_bytes()  # copied byte for byte
    model = load_model(out)
    assert type(model).__name__ == "Phi3ForCausalLM" and model.dtype == torch.float32
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert read_model_config(out)["torch_dtype"] == "float32"


def test_special_token_warnings():
    config = {"vocab_size": 1000, "bos_token_id": 1, "eos_token_id": [2, 1500], "pad_token_id": None}
    assert special_token_warnings(config, 1200) == [
        "config eos_token_id 1500 does not exist in the tokenizer (1,200 tokens): set it to the tokenizer's id",
        "the tokenizer has 1,200 tokens, more than vocab_size 1,000: ids >= 1,000 have no embedding",
    ]
    assert special_token_warnings(dict(config, eos_token_id=1000), None) == [
        "config eos_token_id 1000 is outside the model's vocabulary (vocab_size 1,000)"
    ]


def test_refusals_leave_nothing_behind(tmp_path, capsys, monkeypatch):
    llama = scaled("llama-3.2-1b", tmp_path)
    cases = [
        (["init", str(llama), str(tmp_path / "a"), "--tokenizer", "org/tokenizer"], "the Hub is offline"),
        (
            ["init", str(llama), str(tmp_path / "b"), "--tokenizer", str(tmp_path / "missing")],
            "missing: not found",
        ),
        (["init", str(tmp_path / "nope.json"), str(tmp_path / "c")], "no such file"),
        (
            ["init", str(scaled("llama-3.2-1b", tmp_path, model_type="gpt2")), str(tmp_path / "d")],
            "model_type 'gpt2'",
        ),
        (
            ["init", str(scaled("llama-3.2-1b", tmp_path, num_hidden_layers=0)), str(tmp_path / "e")],
            "num_hidden_layers 0 is outside",
        ),
        (
            ["init", str(scaled("llama-3.2-1b", tmp_path, head_dim=32)), str(tmp_path / "f")],
            "network's validators",
        ),
        (
            [
                "init",
                str(scaled("llama-3.2-1b", tmp_path, architectures=["Phi3ForCausalLM"])),
                str(tmp_path / "g"),
            ],
            "does not match model_type",
        ),
        (  # an embedding padding index beyond the vocabulary: transformers cannot build the model at all
            ["init", str(scaled("phi-3-mini-4k", tmp_path)), str(tmp_path / "h")],
            "pad_token_id 32000 is outside the vocabulary (vocab_size 1,024)",
        ),
    ]
    for argv, message in cases:
        assert sn29(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
        assert not Path(argv[2]).exists()
    monkeypatch.chdir(tmp_path)
    assert sn29(["init", str(llama), "x", "--tokenizer", "./missing-tok"]) == 2
    assert "--tokenizer ./missing-tok: not found" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert sn29(["init", str(llama), str(tmp_path / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_without_a_tokenizer(tmp_path, capsys):
    config = scaled("llama-3.2-1b", tmp_path, bos_token_id=None, eos_token_id=0)
    assert sn29(["init", str(config), str(tmp_path / "m"), "--dtype", "float16"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer: none" in out and "float16" in out
    check = check_model(tmp_path / "m")
    assert check.ok and [f.code for f in check.findings] == ["no_tokenizer"]


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "phi-3-mini-4k"])
def test_real_configs_scaled_down_pass_the_network_check(tmp_path, name):
    fixed = {"pad_token_id": 0} if name.startswith("phi") else {}  # Phi-3's pad id 32000 is beyond 1024
    report = init_checkpoint(scaled(name, tmp_path, **fixed), tmp_path / name, tokenizer="embedded")
    assert report.network_ok
    load_model(tmp_path / name)
