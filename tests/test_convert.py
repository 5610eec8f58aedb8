"""sn29 convert: the stock form scores identically in a process that never imports our packages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sn29_growth.cli import main
from sn29_growth.convert import to_divisor, to_stock
from sn29_growth.lm import corpus_loss
from sn29_growth.loading import load_model
from sn29_growth.tiny import build_tiny

STOCK_SCRIPT = r"""
import json, sys, torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
seqs = json.load(open(sys.argv[2]))
tot, n = 0.0, 0
with torch.no_grad():
    for ids in seqs:
        t = torch.tensor([ids])
        tot += F.cross_entropy(m(t).logits[0, :-1].float(), t[0, 1:], reduction="sum").item()
        n += len(ids) - 1
bad = [k for k in sys.modules if k.startswith(("transformers_llama", "transformers_phi3", "sn29_growth"))]
print(json.dumps({"loss": tot / n, "patched_modules": bad, "cls": type(m).__module__}))
"""


@pytest.mark.parametrize("variant", ["llama-gqa", "phi3"])
def test_to_stock_scores_identically_in_plain_transformers(variant, save_tiny, held_out_ids, tmp_path):
    src = save_tiny(build_tiny(variant, seed=7, init_std=0.1, norm_divisor=40))
    dst = tmp_path / "stock"
    assert main(["convert", "--to-stock", str(src), str(dst)]) == 0
    cfg = json.loads((dst / "config.json").read_text())
    assert "norm_divisor" not in cfg and cfg["rms_norm_eps"] == pytest.approx(1e-5 * 40 / 64)
    ours = corpus_loss(load_model(src), held_out_ids[:6]).mean_token_loss
    seqs = tmp_path / "seqs.json"
    seqs.write_text(json.dumps([ids.tolist() for ids in held_out_ids[:6]]))
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT, str(dst), str(seqs)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["patched_modules"] == [] and result["cls"].startswith("transformers.models")
    assert abs(result["loss"] - ours) <= 1e-5


def test_round_trip_back_to_divisor(save_tiny, held_out_ids, tmp_path):
    src = save_tiny(build_tiny("llama-tied", seed=8, init_std=0.1, norm_divisor=48))
    stock = tmp_path / "stock"
    back = tmp_path / "back"
    to_stock(src, stock)
    report = to_divisor(stock, back, 48)
    assert json.loads((back / "config.json").read_text())["norm_divisor"] == 48
    assert report.rms_norm_eps == pytest.approx(1e-5)
    a = load_model(src)
    b = load_model(back)
    with torch.no_grad():
        for ids in held_out_ids[:4]:
            torch.testing.assert_close(a(ids[None]).logits, b(ids[None]).logits, rtol=1e-5, atol=1e-5)


def test_bf16_rounding_error_is_reported(save_tiny, tmp_path):
    src = save_tiny(build_tiny("llama-mha", seed=9, norm_divisor=40).to(torch.bfloat16))
    report = to_stock(src, tmp_path / "stock")
    assert report.dtype == "bfloat16"
    assert 0 < report.max_relative_rounding_error <= 2**-8
    # A power-of-4 ratio d/D (64/16) rescales bf16 gains exactly.
    src4 = save_tiny(build_tiny("llama-mha", seed=9, norm_divisor=16).to(torch.bfloat16), name="p4")
    assert to_stock(src4, tmp_path / "stock4").max_relative_rounding_error == 0.0


def test_convert_errors_are_clear(save_tiny, tmp_path, capsys):
    stock = save_tiny(build_tiny("llama-mha", seed=0))
    assert main(["convert", "--to-stock", str(stock), str(tmp_path / "x")]) == 2
    assert "no norm_divisor" in capsys.readouterr().err
    div = save_tiny(build_tiny("llama-mha", seed=0, norm_divisor=32), name="div")
    assert main(["convert", "--to-stock", str(div), str(stock)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_index_naming_a_missing_shard_fails_and_leaves_nothing(tmp_path, capsys):
    from sn29_growth.growth.synthetic import llama_config, write_random_checkpoint

    src = write_random_checkpoint(tmp_path / "src", llama_config(norm_divisor=32), max_shard_bytes=200_000)
    shards = sorted(src.glob("*.safetensors"))
    assert len(shards) >= 3
    shards[1].unlink()
    assert main(["convert", "--to-stock", str(src), str(tmp_path / "dst")]) == 2
    assert f"{shards[1].name}: missing shard" in capsys.readouterr().err
    assert not (tmp_path / "dst").exists() and not list(tmp_path.glob(".dst*"))


def test_a_destination_inside_the_source_is_refused(save_tiny, tmp_path, capsys):
    from growth_helpers import cli as grow_cli

    div = save_tiny(build_tiny("llama-mha", seed=0, norm_divisor=32), name="div")
    assert main(["convert", "--to-stock", str(div), str(div / "stock")]) == 2
    assert "is inside SRC" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is inside SRC"):
        grow_cli(["grow", str(div), str(div / "grown"), "--num-layers", "3"])
    assert sorted(p.name for p in div.iterdir()) == sorted(
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ]
    )


def test_to_network_rewrites_a_transformers5_folder_and_nothing_else(tmp_path, capsys):
    from sn29_growth.network.rules import check_model
    from sn29_growth.tokenizer import embedded_tokenizer

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}  # fmt: skip
    src = tmp_path / "v5"
    build_tiny("llama-gqa", seed=0, rope_theta=500000.0, rope_scaling=rope).save_pretrained(src)
    embedded_tokenizer().save_pretrained(src)  # transformers 5's own format throughout
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert not check_model(src).ok
    assert main(["convert", "--to-network", str(src), str(tmp_path / "net")]) == 0
    out = capsys.readouterr().out
    assert "config.json, tokenizer.json, tokenizer_config.json" in out and "loads and scores alike" in out
    net = tmp_path / "net"
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the source is untouched
    assert (net / "model.safetensors").read_bytes() == before["model.safetensors"]
    config = json.loads((net / "config.json").read_text())
    assert (
        config["rope_theta"] == 500000.0
        and config["rope_scaling"] == rope
        and "rope_parameters" not in config
    )
    assert check_model(net).ok
    a, b = load_model(src), load_model(net)
    ids = torch.tensor([[1, 5, 9, 200, 3]])
    assert torch.equal(a(ids).logits, b(ids).logits)  # the same function in our stack
