"""Hostile inputs, table-driven: each has an expected outcome and none crashes the validator loop.

The README's reliability section lists these cases; keep the two in step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from fake_hub_faults import Faults
from safetensors.torch import load_file, save_file
from validator_fakes import files_of, hotkey, make_env, publish

from sn29_growth.chain.commitment import ModelCommitment
from sn29_growth.checkpoint import save_model
from sn29_growth.tiny import build_tiny
from sn29_growth.validator.runner import run


def _h(text: str) -> str:
    """A well-formed (canonical base64 sha256) hash that matches nothing."""
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp_path_factory.mktemp("m") / "base"
    save_model(build_tiny("llama-gqa", seed=0), path, tokenizer=embedded_tokenizer())
    return path


def _variant(base: Path, tmp: Path, *, config=None, weights=None, tokenizer=None, drop=(), add=None) -> Path:
    out = tmp / "variant"
    out.mkdir()
    for name, data in files_of(base).items():
        if name not in drop:
            (out / name).write_bytes(data)
    if config:
        cfg = json.loads((out / "config.json").read_text())
        cfg.update(config)
        (out / "config.json").write_text(json.dumps(cfg))
    if weights:
        sd = load_file(out / "model.safetensors")
        weights(sd)
        save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    if tokenizer:
        tok = json.loads((out / "tokenizer.json").read_text())
        tokenizer(tok)
        (out / "tokenizer.json").write_text(json.dumps(tok))
    for name, data in (add or {}).items():
        (out / name).write_bytes(data)
    return out


def _nan(sd):
    sd["model.layers.0.mlp.down_proj.weight"][0, 0] = math.nan


def _lowercase(tok):
    tok["normalizer"] = {"type": "Lowercase"}


# name -> (setup(env) -> None, expected status, substring of the reason)
def _commit_raw(value):
    def setup(env, base, tmp):
        env["chain"].put(0, value, block=10)

    return setup


def _publish_variant(competition="c00", hash_override=None, **kw):
    def setup(env, base, tmp):
        path = _variant(base, tmp, **kw)
        env["chain"].put(
            0, publish(env["hub"], "eve/model", path, 0, competition, hash_override=hash_override), block=10
        )

    return setup


def _missing_repo(env, base, tmp):
    mc = ModelCommitment("eve", "ghost", "a" * 40, _h("a"), "c00")
    env["chain"].put(0, mc.format(), block=10)


def _pickle_only(env, base, tmp):
    files = {k: v for k, v in files_of(base).items() if not k.endswith(".safetensors")}
    files["pytorch_model.bin"] = b"\x80\x04pickle"
    env["chain"].put(
        0, publish(env["hub"], "eve/pickle", base, 0, files=files, hash_override=_h("b")), block=10
    )


def _hub_fault(faults):
    def setup(env, base, tmp):
        env["chain"].put(0, publish(env["hub"], "eve/model", base, 0), block=10)
        env["hub_client"].set_faults(faults)

    return setup


def _drop_tensor(sd):
    del sd["model.layers.1.mlp.up_proj.weight"]


def _extra_tensor(sd):
    sd["model.layers.1.mlp.extra.weight"] = torch.zeros(4, 4)


def _panic_regex(tok):  # tokenizers panics on an empty Replace pattern: a PanicException (a BaseException)
    tok["normalizer"] = {"type": "Replace", "pattern": {"Regex": ""}, "content": "x"}


def _v5_tokenizer_class(env, base, tmp):
    path = _variant(base, tmp)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps(dict(config, tokenizer_class="TokenizersBackend")))
    env["chain"].put(0, publish(env["hub"], "eve/model", path, 0), block=10)


def _head_dim_off_network(env, base, tmp):
    from sn29_growth.tokenizer import embedded_tokenizer

    path = tmp / "odd"  # hidden 64 with 4 heads of head_dim 8: transformers 4.44 derives head_dim 16
    model = build_tiny("llama-gqa", seed=0, num_attention_heads=4, num_key_value_heads=2)
    save_model(model, path, tokenizer=embedded_tokenizer())
    env["chain"].put(0, publish(env["hub"], "eve/model", path, 0), block=10)


def _duplicate_listing(env, base, tmp):
    env["chain"].put(0, publish(env["hub"], "eve/model", base, 0), block=10)
    client, real = env["hub_client"], env["hub_client"].repo_files
    client.repo_files = lambda repo, rev: (
        (fs := real(repo, rev)) + [f for f in fs if f.path == "model.safetensors"]
    )


def _many_added_tokens(tok):  # ids far beyond the model's vocab_size (1024)
    tok["added_tokens"] += [
        {"id": 1024 + i, "content": f"<x{i}>", "single_word": False, "lstrip": False, "rstrip": False}
        | {"normalized": False, "special": False}
        for i in range(20_000)
    ]


def _empty_lists_tokenizer(env, base, tmp):  # the limit lowered so that a 2 MB file stands for 57 MB
    from sn29_growth.checkpoint import LIMITS_BY_NAME, JsonLimits

    env["monkeypatch"].setitem(LIMITS_BY_NAME, "tokenizer.json", JsonLimits(64 << 20, 64, 1_000_000))
    data = b'{"pad": [' + b"[]," * 700_000 + b"[]]}"
    path = _variant(base, tmp, add={"tokenizer.json": data})
    env["chain"].put(0, publish(env["hub"], "eve/model", path, 0), block=10)


def _disk_full(env, base, tmp):
    env["chain"].put(0, publish(env["hub"], "eve/model", base, 0), block=10)
    env["clients"].store._free_bytes = lambda path: 0


CASES = {
    "malformed commitment": (_commit_raw("not:a:commitment"), "discarded", "malformed commitment"),
    "oversized commitment": (
        _commit_raw("a" * 40 + ":b:" + "c" * 40 + ":" + "D" * 43 + "=:c00"),
        "discarded",
        "128",
    ),
    "unknown competition": (
        _commit_raw(ModelCommitment("a", "b", "c" * 40, _h("d"), "c99").format()),
        "discarded",
        "unknown competition",
    ),
    "missing repo": (_missing_repo, "rejected", "RepoNotFound"),
    "repo over size limit": (
        _publish_variant(add={"model-00002-of-00002.safetensors": b"\0" * 6_000_000}),
        "rejected",
        "above the limit",
    ),
    "pickle-only weights": (_pickle_only, "rejected", "safetensors"),
    "remote code (auto_map)": (
        _publish_variant(config={"auto_map": {"AutoModelForCausalLM": "x.Y"}}),
        "rejected",
        "auto_map",
    ),
    "wrong architecture": (
        _publish_variant(config={"architectures": ["MistralForCausalLM"]}),
        "rejected",
        "not allowed",
    ),
    "parameters over limit": (_publish_variant(config={"intermediate_size": 4096}), "rejected", "parameters"),
    "invalid norm_divisor": (_publish_variant(config={"norm_divisor": -1}), "rejected", "norm_divisor"),
    "NaN weights": (_publish_variant(weights=_nan), "pool", "non-finite"),
    "hash mismatch": (_publish_variant(hash_override=_h("c")), "rejected", "hash mismatch"),
    "tokenizer fails round trips": (_publish_variant(tokenizer=_lowercase), "rejected", "tokeniz"),
    "Hub 5xx": (_hub_fault(Faults(unavailable=100)), "new", "hub unavailable"),
    "Hub timeouts": (_hub_fault(Faults(timeouts=100)), "new", "hub unavailable"),
    "truncated download": (
        _hub_fault(Faults(short={"model.safetensors": 1000})),
        "rejected",
        "IntegrityError",
    ),
    "disk full": (_disk_full, "new", "disk"),
    "config nested 100k levels deep": (
        _publish_variant(add={"config.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000}),
        "rejected",
        "nested 100000 levels deep",
    ),
    "config of tens of MB": (
        _publish_variant(add={"config.json": b'{"pad": "' + b"x" * 20_000_000 + b'"}'}),
        "rejected",
        "config.json is 20,000,011 bytes",
    ),
    "config of 200k values": (
        _publish_variant(config={"pad": [0] * 200_000}),
        "rejected",
        "JSON values, above the limit",
    ),
    "10M layers of width 1": (
        _publish_variant(config={"num_hidden_layers": 10_000_000, "hidden_size": 1, "intermediate_size": 1}),
        "rejected",
        "num_hidden_layers 10000000 is outside 1..1,024",
    ),
    "GPT-2 config claiming LlamaForCausalLM": (
        _publish_variant(config={"model_type": "gpt2", "n_layer": 2}),
        "rejected",
        "model_type 'gpt2'",
    ),
    "Qwen2 config claiming LlamaForCausalLM": (
        _publish_variant(config={"model_type": "qwen2"}),
        "rejected",
        "model_type 'qwen2'",
    ),
    "quantization_config": (
        _publish_variant(
            config={"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
        ),
        "rejected",
        "quantization_config",
    ),
    "a weight tensor missing": (_publish_variant(weights=_drop_tensor), "rejected", "1 tensor(s) missing"),
    "an extra weight tensor": (_publish_variant(weights=_extra_tensor), "rejected", "1 unexpected tensor(s)"),
    "tokenizer that panics": (_publish_variant(tokenizer=_panic_regex), "rejected", "PanicException"),
    "tokenizer class the network cannot load": (_v5_tokenizer_class, "rejected", "TokenizersBackend"),
    "head_dim the network cannot load": (_head_dim_off_network, "rejected", "computes head_dim"),
    "Hub listing naming a file twice": (_duplicate_listing, "rejected", "more than once"),
    "chat template of GBs": (
        _publish_variant(add={"chat_template.jinja": b"{{ x }}" * 500_000}),
        "rejected",
        "chat_template.jinja is 3,500,000 bytes, above the limit",
    ),
    "tokenizer.json of millions of empty lists": (_empty_lists_tokenizer, "rejected", "JSON values"),
    "20k added tokens beyond vocab_size": (
        _publish_variant(tokenizer=_many_added_tokens),
        "rejected",
        "token id 21023 is not below the model's vocab_size 1024",
    ),
    "hidden_act of 900 KB": (
        _publish_variant(config={"hidden_act": "x" * 900_000}),
        "rejected",
        "hidden_act",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, tmp_path, base_dir, monkeypatch):
    from sn29_growth.reasons import MAX_REASON_CHARS

    setup, status, reason = CASES[name]
    config, clients, chain, hub_client, hub = make_env(tmp_path)
    env = {
        "chain": chain,
        "hub": hub,
        "hub_client": hub_client,
        "clients": clients,
        "monkeypatch": monkeypatch,
    }
    setup(env, base_dir, tmp_path)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)  # must not raise
    assert state.step == 1
    if status == "discarded":
        assert hotkey(0) in state.discarded and reason in state.discarded[hotkey(0)]["reason"]
        return
    rec = state.models[hotkey(0)]
    assert rec.status == status, rec
    assert reason.lower() in rec.reason.lower(), rec.reason
    assert len(rec.reason) <= MAX_REASON_CHARS
    if name == "NaN weights":
        assert rec.mean_loss is None and rec.win_rate == 0.0


def test_chain_disconnect_mid_step_keeps_state_and_recovers(tmp_path, base_dir):
    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    assert state.step == 1 and chain.weights
    chain.fail_next = {"commitments": 1, "set_weights": 1}
    state = run(config, clients, max_steps=1, sleep=lambda s: None)  # the step fails: state rolled back
    assert state.step == 1 and state.models[hotkey(0)].status == "pool"
    chain.block += 200
    state = run(config, clients, max_steps=2, sleep=lambda s: None)  # set_weights fails once, then succeeds
    assert state.step == 3 and len(chain.weights) == 2


def test_runner_survives_an_unexpected_error(tmp_path, base_dir, monkeypatch):
    config, clients, chain, _, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/base", base_dir, 0), block=10)
    calls = {"n": 0}

    def flaky(request, timeout):
        calls["n"] += 1
        raise RuntimeError("worker machinery exploded")

    clients.evaluate = flaky
    state = run(config, clients, max_steps=2, sleep=lambda s: None)
    assert calls["n"] == 2 and state.step == 0  # both steps rolled back, the loop carried on
    assert torch.__version__  # the process is still healthy


def test_hostile_models_never_stop_honest_ones_in_the_same_step(tmp_path, base_dir):
    """Every in-process hostile case at once, beside an honest model: the honest model is scored and takes
    the weight in the very first step, and each hostile model is rejected with its own reason."""
    config, clients, chain, hub_client, hub = make_env(tmp_path)
    chain.put(0, publish(hub, "alice/honest", base_dir, 0), block=5)
    hostile = {
        "nested": (dict(add={"config.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000}), "nested"),
        "layers": (dict(config={"num_hidden_layers": 10_000_000, "hidden_size": 1}), "outside"),
        "gpt2": (dict(config={"model_type": "gpt2"}), "gpt2"),
        "missing": (dict(weights=_drop_tensor), "missing"),
        "panic": (dict(tokenizer=_panic_regex), "PanicException"),
    }
    for uid, (name, (kw, _)) in enumerate(hostile.items(), start=1):
        (tmp_path / name).mkdir()
        path = _variant(base_dir, tmp_path / name, **kw)
        chain.put(uid, publish(hub, f"eve/{name}", path, uid), block=10 + uid)
    state = run(config, clients, max_steps=1, sleep=lambda s: None)
    honest = state.models[hotkey(0)]
    assert honest.status == "pool" and honest.win_rate == 1.0 and honest.mean_loss is not None
    assert chain.weights and chain.weights[-1][1] == {0: 1.0}
    state = run(config, clients, max_steps=1, sleep=lambda s: None)  # pend_size 3: the rest come next
    assert state.models[hotkey(0)].status == "pool"
    for uid, (_, (_, reason)) in enumerate(hostile.items(), start=1):
        rec = state.models[hotkey(uid)]
        assert rec.status == "rejected" and reason in rec.reason, rec
