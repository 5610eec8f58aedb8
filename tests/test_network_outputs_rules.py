"""Every folder our tools upload passes the network rule set; a transformers-5 folder fails it, by code.

The outputs are built once per session by ``tests/network_outputs.py`` (base, grown, trained, converted
to stock, vocabulary-grown; Llama with Llama-3 RoPE scaling and Phi3). ``test_network_parity.py``
(``-m slow``) proves the same folders load and score alike on the real transformers 4.44.
"""

from __future__ import annotations

import pytest
from network_outputs import (
    ARCHS,
    GROWN_VOCAB,
    KINDS,
    LLAMA3_ROPE,
    LLAMA_THETA,
    network_outputs,
    read_json,
    transformers5_config_folder,
    transformers5_folder,
)

from sn29_growth.network.rules import check_model
from sn29_growth.network.tokenizer import NETWORK_TOKENIZER_CLASS, tokenizer_json_size

OUTPUTS = [(arch, kind) for arch in ARCHS for kind in KINDS]


@pytest.mark.parametrize(("arch", "kind"), OUTPUTS, ids=[f"{a}-{k}" for a, k in OUTPUTS])
def test_every_output_passes_the_rules(arch, kind):
    path = network_outputs(arch)[kind]
    check = check_model(path)
    assert check.ok, check.format()
    assert check.findings == (), check.format()  # not even a warning (clean_up, missing tokenizer)
    assert check.loading_problem() is None


@pytest.mark.parametrize(("arch", "kind"), OUTPUTS, ids=[f"{a}-{k}" for a, k in OUTPUTS])
def test_outputs_are_written_in_the_legacy_keys(arch, kind):
    path = network_outputs(arch)[kind]
    config = read_json(path / "config.json")
    assert not {"rope_parameters", "dtype", "partial_rotary_factor"} & set(config), sorted(config)
    assert config["torch_dtype"] == "float32"
    assert config["hidden_size"] == config["num_attention_heads"] * config.get("head_dim", 0)
    assert config["architectures"] == [{"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}[arch]]
    if arch == "llama":
        assert config["rope_theta"] == LLAMA_THETA and config["rope_scaling"] == LLAMA3_ROPE
    else:
        assert config["rope_theta"] == 10000.0 and config.get("rope_scaling") is None
    grown = kind != "base"
    assert config["hidden_size"] == (128 if grown else 64)
    assert config["num_hidden_layers"] == (3 if grown else 2)
    assert config.get("norm_divisor") == (64 if kind in ("grown", "trained", "vocab") else None)
    if kind == "stock":  # the divisor folded into gains and eps: eps * D / d
        assert config["rms_norm_eps"] == pytest.approx(1e-5 * 64 / 128)
    tok_config = read_json(path / "tokenizer_config.json")
    assert tok_config["tokenizer_class"] == NETWORK_TOKENIZER_CLASS
    assert tok_config["clean_up_tokenization_spaces"] is False
    tok = read_json(path / "tokenizer.json")
    assert all(isinstance(m, str) and m.count(" ") == 1 for m in tok["model"]["merges"])
    assert tokenizer_json_size(tok) == config["vocab_size"] == (GROWN_VOCAB if kind == "vocab" else 1024)


def _codes(check) -> dict[str, tuple[str, bool]]:
    return {f.code: (f.file, f.blocks_loading) for f in check.errors}


def test_a_transformers5_llama_folder_fails_with_the_expected_findings(tmp_path):
    check = check_model(transformers5_folder(tmp_path, "llama"))
    assert not check.ok
    codes = _codes(check)
    assert codes == {
        "rope": ("config.json", False),  # rope_parameters (theta 500000, llama3) unread: 4.44 runs 10000
        "tokenizer_class": ("tokenizer_config.json", True),  # TokenizersBackend
        "merges": ("tokenizer.json", True),  # [a, b] pairs
    }, check.format()
    rope = next(f for f in check.errors if f.code == "rope")
    assert "500000" in rope.message and "10000" in rope.message
    assert "TokenizersBackend" in next(f.message for f in check.errors if f.code == "tokenizer_class")
    assert check.loading_problem() is not None


def test_a_transformers5_phi3_folder_fails_with_the_expected_findings(tmp_path):
    check = check_model(transformers5_folder(tmp_path, "phi3"))
    codes = _codes(check)
    # Phi3's default RoPE (theta 10000, no scaling) means the same in both stacks: no rope finding
    assert codes == {
        "tokenizer_class": ("tokenizer_config.json", True),
        "merges": ("tokenizer.json", True),
    }, check.format()
    assert "dtype" in {f.code for f in check.warnings}  # scores do not change: a warning
    assert check.loading_problem() is not None


def test_a_transformers5_config_with_network_tokenizer_files_fails_on_the_config_only(tmp_path):
    check = check_model(transformers5_config_folder(tmp_path, "llama"))
    assert set(_codes(check)) == {"rope"}, check.format()
    assert "dtype" in {f.code for f in check.warnings}
    assert check.loading_problem() is None  # 4.44 loads it, and computes something else (see -m slow)
    config = read_json(tmp_path / "llama-transformers5-config" / "config.json")
    assert "rope_theta" not in config and config["rope_parameters"]["rope_theta"] == LLAMA_THETA
