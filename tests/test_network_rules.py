"""The pure rule set behind ``sn29 check``: each rule names the file and what the network would do."""

from __future__ import annotations

import json

import pytest

from sn29_growth.cli import main as cli
from sn29_growth.network.rules import check_model, config_findings, tokenizer_findings


def llama(**overrides):
    base = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "rope_theta": 500000.0,
        "torch_dtype": "bfloat16",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def codes(findings, severity="error"):
    return sorted({f.code for f in findings if f.severity == severity})


def test_a_network_config_has_no_findings():
    assert config_findings(llama()) == []
    assert config_findings(llama(norm_divisor=48, head_dim=None)) == []


@pytest.mark.parametrize(
    ("overrides", "code", "blocks", "words"),
    [
        (
            {"rope_theta": None, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}},
            "rope",
            False,
            "rope_theta=10000",
        ),
        ({"dtype": "bfloat16", "torch_dtype": None}, "dtype", False, "torch_dtype"),
        ({"head_dim": 16}, "head_dim", True, "computes head_dim"),
        ({"hidden_size": 60}, "head_dim", True, "not a multiple"),
        ({"num_key_value_heads": 3}, "kv_heads", True, "does not divide"),
        ({"partial_rotary_factor": 0.5}, "rope", False, "partial_rotary_factor"),
        ({"rope_scaling": {"rope_type": "mrope"}}, "rope", True, "mrope"),
        ({"auto_map": {"AutoModelForCausalLM": "x.Y"}}, "auto_map", True, "changes the code"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config", True, "changes the code"),
        ({"model_type": "gpt2"}, "model_type", True, "llama and phi3"),
        ({"architectures": ["MistralForCausalLM"]}, "architectures", True, "chosen by model_type"),
        ({"norm_divisor": -1}, "norm_divisor", True, "norm_divisor"),
    ],
)
def test_each_config_rule(overrides, code, blocks, words):
    findings = [f for f in config_findings(llama(**overrides)) if f.code == code]
    assert findings, config_findings(llama(**overrides))
    assert findings[0].file == "config.json" and words in findings[0].message
    assert findings[0].blocks_loading is blocks


def test_rope_parameters_agreeing_with_the_legacy_keys_is_fine():
    ok = llama(rope_parameters={"rope_theta": 500000.0, "rope_type": "default"})
    assert config_findings(ok) == []


def test_phi3_rope_scaling_rules():
    phi = {
        "model_type": "phi3",
        "architectures": ["Phi3ForCausalLM"],
        "hidden_size": 64,
        "num_attention_heads": 4,
    }
    assert config_findings(phi) == []
    yarn = dict(phi, rope_scaling={"type": "yarn", "factor": 2.0})
    assert codes(config_findings(yarn)) == ["rope"]
    extra = dict(phi, rope_scaling={"type": "longrope", "short_factor": [1], "long_factor": [1], "factor": 2})
    assert "exactly type, short_factor and long_factor" in config_findings(extra)[0].message


def test_tokenizer_rules():
    v5_config = {"tokenizer_class": "TokenizersBackend", "backend": "tokenizers"}
    v5_json = {"model": {"type": "BPE", "merges": [["a", "b"]]}, "normalizer": {"type": "ByteLevel"}}
    found = tokenizer_findings(v5_config, v5_json)
    assert codes(found) == ["component", "merges", "tokenizer_class"]
    assert codes(found, "warning") == ["clean_up"]
    assert all(f.blocks_loading for f in found if f.severity == "error")
    fine = tokenizer_findings(
        {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False},
        {
            "model": {"type": "BPE", "merges": ["a b"]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}]},
        },
    )
    assert fine == []
    nested = tokenizer_findings(
        None,
        {
            "model": {"type": "BPE"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "FixedLength"}]},
        },
    )
    assert "FixedLength" in nested[0].message


def test_check_model_reads_a_folder_and_never_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(llama(head_dim=16)))
    (tmp_path / "tokenizer.json").write_bytes(b'{"model": ' * 100 + b"1" + b"}" * 100)
    result = check_model(tmp_path)
    assert not result.ok
    assert codes(result.findings) == ["head_dim", "unreadable"]
    assert "the network's stack cannot load it" in result.loading_problem()
    assert check_model(tmp_path / "missing").errors[0].code == "missing"


def test_sn29_check_command(tmp_path, save_tiny, capsys):
    from sn29_growth.tiny import build_tiny

    good = save_tiny(build_tiny("llama-gqa", seed=0))
    assert cli(["check", str(good)]) == 0
    assert "loads and scores alike" in capsys.readouterr().out
    bad = tmp_path / "v5"
    build_tiny("llama-gqa", seed=0).save_pretrained(bad)  # transformers 5's own format
    from sn29_growth.tokenizer import embedded_tokenizer

    embedded_tokenizer().save_pretrained(bad)
    assert cli(["check", str(good), str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in report] == [True, False]
    assert {f["code"] for f in report[1]["findings"]} >= {"dtype", "tokenizer_class", "merges"}
