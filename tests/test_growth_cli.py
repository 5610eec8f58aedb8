"""``sn29 grow`` end to end: files written, loading, --verify, recipes, the Hub path, bad input, atomicity."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from growth_helpers import cli, tiny

from sn29_growth.io import INDEX_NAME, CheckpointError, save_shards


def _grow_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert cli(["grow", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_grow_every_dimension_writes_a_loadable_verified_checkpoint(save_tiny, tmp_path, capsys):
    src = save_tiny(tiny("llama-gqa"))
    dst = tmp_path / "grown"
    args = ["--hidden-size", 128, "--num-attention-heads", 16, "--num-key-value-heads", 4]
    args += ["--intermediate-size", 256, "--num-layers", 3, "--vocab-size", 1100, "--seed", 3]
    report = _grow_json(capsys, src, dst, *args, "--verify", "--probe", "--max-shard-size", "200KB")
    assert report["ok"] and report["parameters"]["after"] > 3 * report["parameters"]["before"]
    (fp32,) = report["verification"]["checks"]
    assert fp32["dtype"] == "float32" and fp32["ok"] and 0 < fp32["loss_delta"] < 0.0716  # log(1 + 76/1024)
    assert fp32["max_abs_logit_diff"] < 1e-4
    assert report["probe"]["stuck"] == [] and report["probe"]["lines_checked"] > 0

    names = {p.name for p in dst.iterdir()}
    assert {"config.json", INDEX_NAME, "tokenizer.json", "growth_recipe.json", "README.md"} <= names
    index = json.loads((dst / INDEX_NAME).read_text())
    assert len(set(index["weight_map"].values())) > 1 and all(
        (dst / f).is_file() for f in index["weight_map"].values()
    )
    config = json.loads((dst / "config.json").read_text())
    assert (config["hidden_size"], config["head_dim"], config["norm_divisor"], config["vocab_size"]) == (
        128,
        8,
        64,
        1100,
    )

    recipe = json.loads((dst / "growth_recipe.json").read_text())
    assert recipe["seed"] == 3 and recipe["spec"]["steps"][0]["hidden_size"] == 128
    assert recipe["package"]["version"] and recipe["source"]["ref"] == str(src)
    assert "revision" in recipe["source"] and recipe["verification"]["ok"]
    assert "norm_divisor" in (dst / "README.md").read_text()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import transformers_llama  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(dst)
    assert type(model).__module__ == "transformers_llama" and model.config.num_hidden_layers == 3
    assert len(AutoTokenizer.from_pretrained(dst)) == 1100
    assert not list(tmp_path.glob(".*partial"))


def test_bf16_source_and_dtype_cast(save_tiny, tmp_path, capsys):
    src = save_tiny(copy.deepcopy(tiny("phi3")).to(torch.bfloat16), "bf16")  # .to() is in place
    report = _grow_json(capsys, src, tmp_path / "a", "--hidden-size", 96, "--num-layers", 3, "--verify")
    checks = {c["dtype"]: c for c in report["verification"]["checks"]}
    assert set(checks) == {"float32", "bfloat16"} and all(c["ok"] for c in checks.values())
    assert checks["float32"]["loss_delta"] == pytest.approx(0, abs=1e-5)  # exact even in bf16 storage
    stock = _grow_json(
        capsys, src, tmp_path / "b", "--hidden-size", 128, "--hidden-method", "stock", "--verify"
    )
    assert stock["ok"]  # gains folded in bf16 round: checked with a rounding tolerance
    f32 = save_tiny(tiny("llama-mha"), "f32")
    cast = _grow_json(capsys, f32, tmp_path / "c", "--intermediate-size", 192, "--dtype", "bf16", "--verify")
    assert cast["plan"]["dtype"] == "bfloat16" and cast["ok"]
    assert json.loads((tmp_path / "c" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_recipe_runs_several_steps(save_tiny, tmp_path, capsys):
    src = save_tiny(tiny("llama-tied"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "seed: 5\nsteps:\n"
        "  - {hidden_size: 128, num_attention_heads: 8, hidden_method: clone}\n"
        "  - {num_layers: 4, layer_placement: append}\n"
        "  - {intermediate_size: 256, hidden_method: stock}\n"
    )
    report = _grow_json(capsys, src, tmp_path / "out", "--recipe", recipe, "--verify")
    assert report["ok"] and len(report["plan"]["steps"]) == 3
    assert report["plan"]["target"]["num_hidden_layers"] == 4
    saved = json.loads((tmp_path / "out" / "growth_recipe.json").read_text())
    assert saved["seed"] == 5 and len(saved["spec"]["steps"]) == 3


def test_max_params_applies_the_planned_shape(save_tiny, tmp_path, capsys):
    from sn29_growth.arch import Shape
    from sn29_growth.growth.fit import plan_options

    src = save_tiny(tiny("llama-gqa"))
    best = plan_options(Shape.from_config(json.loads((src / "config.json").read_text())), 500_000)[0]
    report = _grow_json(capsys, src, tmp_path / "out", "--max-params", "0.5M")
    assert report["parameters"]["after"] == best.parameters <= 500_000
    assert report["plan"]["target"]["num_hidden_layers"] == best.shape.num_hidden_layers


def test_hub_source_goes_through_fetch_model(save_tiny, tmp_path, capsys, monkeypatch):
    import sn29_growth.hub

    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "cache" / "snapshots" / sha
    shutil.copytree(save_tiny(tiny("llama-mha")), snapshot)
    calls = []
    monkeypatch.setattr(sn29_growth.hub, "fetch_model", lambda ref, **kw: calls.append(ref) or snapshot)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the Hub, stood in for by fetch_model
    report = _grow_json(capsys, "alice/tiny@main", tmp_path / "out", "--num-layers", 3)
    assert calls == ["alice/tiny@main"]
    assert report["source"] == {"ref": "alice/tiny@main", "path": str(snapshot), "revision": sha}
    assert json.loads((tmp_path / "out" / "growth_recipe.json").read_text())["source"]["revision"] == sha


def _sharded(save_tiny, tmp_path):
    """The tiny model re-saved as several shards with an index."""
    src = save_tiny(tiny("llama-gqa"), "sharded")
    from safetensors.torch import load_file

    sd = load_file(src / "model.safetensors")
    (src / "model.safetensors").unlink()
    save_shards(sd, src, max_shard_bytes=150_000)
    return src


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--hidden-size", "32"], "--hidden-size 32 is smaller"),
        (["--hidden-size", "100"], "--hidden-size 100 is not a multiple of head_dim"),
        (
            ["--num-attention-heads", "16", "--num-key-value-heads", "3"],
            "--num-key-value-heads 3 does not divide",
        ),
        (["--num-layers", "1"], "--num-layers 1 is smaller"),
        (["--num-layers", "4", "--layer-positions", "0"], "--layer-positions must name exactly 2"),
        ([], "nothing to grow"),
    ],
)
def test_bad_flags_are_named(save_tiny, tmp_path, argv, match):
    src = save_tiny(tiny("llama-gqa"))
    with pytest.raises(ValueError, match=match):
        cli(["grow", str(src), str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


def test_bad_checkpoints_are_named(save_tiny, tmp_path):
    src = _sharded(save_tiny, tmp_path)
    shards = sorted(src.glob("model-*.safetensors"))
    assert len(shards) > 2
    out = str(tmp_path / "out")
    with pytest.raises(FileExistsError, match="DST"):
        cli(["grow", str(src), str(src), "--num-layers", "3"])
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=shards[1].name):
        cli(["grow", str(src), out, "--num-layers", "3"])
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"{shards[1].name}: missing shard"):
        cli(["grow", str(src), out, "--num-layers", "3"])
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(
        json.dumps(dict(config, model_type="gpt2", architectures=["GPT2LMHeadModel"]))
    )
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        cli(["grow", str(src), out, "--num-layers", "3"])
    with pytest.raises(FileNotFoundError, match="recipe"):
        cli(["grow", str(src), out, "--recipe", str(tmp_path / "none.yaml")])
    assert not (tmp_path / "out").exists()


def test_missing_tensor_and_shape_mismatch(save_tiny, tmp_path):
    src = save_tiny(tiny("llama-mha"))
    from safetensors.torch import load_file, save_file

    sd = load_file(src / "model.safetensors")
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing.*model.layers.1.mlp.up_proj.weight"):
        cli(["grow", str(src), str(tmp_path / "out"), "--num-layers", "3"])
    sd["model.layers.1.mlp.up_proj.weight"] = torch.zeros(10, 64)
    save_file(sd, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match="model.safetensors: tensor 'model.layers.1.mlp.up_proj.weight' has shape"
    ):
        cli(["grow", str(src), str(tmp_path / "out"), "--num-layers", "3"])


def test_failures_leave_nothing_behind(save_tiny, tmp_path, capsys, monkeypatch):
    import sn29_growth.growth.execute as execute

    src = save_tiny(tiny("llama-gqa"))
    real = execute.grow_tensor

    def perturbed(name, tensor, plan):
        out = real(name, tensor, plan)
        return {k: (v * 1.01 if k == "model.norm.weight" else v) for k, v in out.items()}

    monkeypatch.setattr(execute, "grow_tensor", perturbed)
    capsys.readouterr()
    assert cli(["grow", str(src), str(tmp_path / "out"), "--num-layers", "3", "--verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and not report["verification"]["checks"][0]["ok"]
    assert not (tmp_path / "out").exists()

    def broken(name, tensor, plan):
        if "layers.1" in name:
            raise RuntimeError("disk on fire")
        return real(name, tensor, plan)

    monkeypatch.setattr(execute, "grow_tensor", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli(["grow", str(src), str(tmp_path / "out"), "--num-layers", "3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_zeros_init_probe_reports_stuck_slices(save_tiny, tmp_path, capsys):
    src = save_tiny(tiny("llama-mha"))
    report = _grow_json(capsys, src, tmp_path / "z", "--intermediate-size", 256, "--init", "zeros", "--probe")
    assert report["ok"]  # zeros is a deliberate choice: reported, not an error
    stuck = {s["tensor"] for s in report["probe"]["stuck"]}
    assert "model.layers.0.mlp.down_proj.weight" in stuck and "model.layers.1.mlp.gate_proj.weight" in stuck


def test_standalone_entry_point_exit_codes(save_tiny, tmp_path, capsys):
    from sn29_growth.commands.grow import main

    src = save_tiny(tiny("llama-mha"))
    assert main([str(src), str(tmp_path / "o"), "--hidden-size", "48"]) == 2
    assert "--hidden-size 48 is smaller" in capsys.readouterr().err
    assert main([str(src), str(tmp_path / "o"), "--hidden-size", "128"]) == 0
    assert "hidden_size          64 -> 128" in capsys.readouterr().out


def test_recipe_new_slices_match_the_growth_masks(save_tiny, tmp_path, capsys):
    from sn29_growth.growth.engine import new_masks
    from sn29_growth.growth.resolve import resolve_plan
    from sn29_growth.growth.spec import GrowthSpec, GrowthStep
    from sn29_growth.loading import load_model
    from sn29_growth.train.recipe import build_masks, read_new_slices

    src = save_tiny(tiny("llama-tied"))
    flags = ["--hidden-size", 128, "--num-attention-heads", 8, "--num-key-value-heads", 4, "--num-layers", 3]
    _grow_json(capsys, src, tmp_path / "out", *flags, "--vocab-size", 1040)
    model = load_model(tmp_path / "out")
    masks = build_masks(model, read_new_slices(tmp_path / "out"))  # what training will re-warm
    step = GrowthStep(
        hidden_size=128, num_attention_heads=8, num_key_value_heads=4, num_hidden_layers=3, vocab_size=1040
    )
    plan = resolve_plan(GrowthSpec((step,)), json.loads((src / "config.json").read_text()))
    expected = {n: m.dense() for n, m in new_masks(plan).items() if m.any}
    assert set(masks) == set(expected)
    for name, mask in expected.items():
        assert torch.equal(masks[name], mask), name
    assert masks["model.layers.2.mlp.down_proj.weight"].all()  # the inserted block is new as a whole


def test_hidden_growth_adds_heads_so_the_network_can_load_it(save_tiny, tmp_path, capsys):
    from sn29_growth.network.rules import check_model

    src = save_tiny(tiny("llama-gqa"))  # hidden 64 = 8 heads x head_dim 8, 2 kv heads
    report = _grow_json(capsys, src, tmp_path / "wide", "--hidden-size", 128, "--verify")
    assert report["ok"] and report["network"]["ok"]
    config = json.loads((tmp_path / "wide" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (16, 2, 8)
    assert check_model(tmp_path / "wide").ok

    from sn29_growth.commands.grow import main

    assert main([str(src), str(tmp_path / "x"), "--hidden-size", "128", "--num-attention-heads", "8"]) == 2
    err = capsys.readouterr().err
    assert "could not load it; use --num-attention-heads 16, or --allow-off-network-shapes" in err
    assert not (tmp_path / "x").exists()

    flags = ["--hidden-size", "128", "--num-attention-heads", "8", "--allow-off-network-shapes"]
    assert cli(["grow", str(src), str(tmp_path / "off"), *flags]) == 0
    assert "will not load on the network's validators" in capsys.readouterr().out
    off = check_model(tmp_path / "off")
    assert not off.ok and [f.code for f in off.errors] == ["head_dim"]


def test_verify_refuses_an_output_the_network_cannot_load(save_tiny, tmp_path, capsys):
    src = save_tiny(tiny("llama-gqa"))
    config = json.loads((src / "tokenizer_config.json").read_text())
    (src / "tokenizer_config.json").write_text(json.dumps(dict(config, tokenizer_class="TokenizersBackend")))
    assert cli(["grow", str(src), str(tmp_path / "o"), "--num-layers", "3", "--verify"]) == 1
    captured = capsys.readouterr()
    assert "network check" in captured.err and "TokenizersBackend" in captured.err
    assert not (tmp_path / "o").exists()
    assert cli(["grow", str(src), str(tmp_path / "o"), "--num-layers", "3"]) == 0  # reported, not enforced
    assert "NOT network-compatible" in capsys.readouterr().out
