"""Streaming verification: the same verdict as loading both models whole, a few blocks in memory.

Also the bounded trainability probe (a subset of blocks, renamed back), its clean refusal when it
cannot fit in memory, and "n/a" for a growth with nothing to probe.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from growth_helpers import VARIANTS, tiny

from sn29_growth.growth.execute import grow_checkpoint
from sn29_growth.growth.spec import GrowthSpec, GrowthStep
from sn29_growth.growth.streaming_verify import (
    ProbeMemoryError,
    _Checkpoint,
    check_probe_memory,
    compare_streaming,
    layer_map,
    probe_checkpoint,
    probe_layers,
    verify_streaming,
)
from sn29_growth.growth.verify import (
    ProbeResult,
    corpus_sequences,
    probe_trainability,
    verify_growth,
    verify_in_memory,
)

SAMPLES, MAX_LEN = 4, 96
DTYPES = ("float32", "bfloat16")


def _dims(variant: str) -> dict[str, dict]:
    c = tiny(variant).config
    h, k = c.num_attention_heads, c.num_key_value_heads
    return {
        "hidden": dict(hidden_size=96),
        "heads": dict(num_attention_heads=2 * h),
        "kv_heads": dict(num_attention_heads=2 * h, num_key_value_heads=2 * k),
        "mlp": dict(intermediate_size=256),
        "depth": dict(num_hidden_layers=5),
        "vocab": dict(vocab_size=1100),
        "divisor": dict(hidden_size=128, num_hidden_layers=3, hidden_method="divisor"),
        "stock": dict(hidden_size=128, hidden_method="stock"),
        "clone": dict(hidden_size=128, hidden_method="clone"),
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tokenizer):
    from sn29_growth.checkpoint import save_model

    root = tmp_path_factory.mktemp("streaming-src")
    out = {}
    for v in VARIANTS:
        out[v] = root / v
        save_model(tiny(v), out[v], tokenizer=tokenizer)
    return out


def _grow(src, dst, *, off_network=True, **step):
    return grow_checkpoint(src, dst, GrowthSpec((GrowthStep(**step),), off_network=off_network))


def _assert_same(a, b):
    assert a.ok == b.ok and (a.samples, a.tokens) == (b.samples, b.tokens)
    for x, y in zip(a.checks, b.checks, strict=True):
        assert (x.dtype, x.ok, x.loss_tolerance, x.logit_tolerance, x.vocab_bound) == (
            y.dtype,
            y.ok,
            y.loss_tolerance,
            y.logit_tolerance,
            y.vocab_bound,
        )
        assert y.loss_source == pytest.approx(x.loss_source, rel=1e-6, abs=0)
        assert y.loss_grown == pytest.approx(x.loss_grown, rel=1e-6, abs=0)
        tol = 1e-5 if x.dtype == "float32" else 1e-2  # bf16 logits are O(1) with 8-bit mantissas
        assert abs(y.max_abs_logit_diff - x.max_abs_logit_diff) <= tol


CASES = [(v, d) for v in VARIANTS for d in _dims(v)]


@pytest.mark.parametrize(("variant", "dim"), CASES)
def test_streaming_verify_agrees_with_whole_model_verify(variant, dim, sources, tmp_path):
    report = _grow(sources[variant], tmp_path / "grown", **_dims(variant)[dim])
    kw = dict(dtypes=DTYPES, samples=SAMPLES, max_len=MAX_LEN, exact_storage=report.plan.exact_storage)
    old = verify_in_memory(sources[variant], tmp_path / "grown", **kw)
    new = verify_growth(
        sources[variant], tmp_path / "grown", layers=layer_map(report.plan), device="cpu", **kw
    )
    assert old.ok and new.ok
    _assert_same(old, new)
    assert new.to_dict().keys() == old.to_dict().keys()


def test_block_walk_pairs_source_blocks_and_checks_identity_blocks(sources, tmp_path, tokenizer):
    report = _grow(sources["llama-bias"], tmp_path / "g", hidden_size=128, num_hidden_layers=5)
    layers = layer_map(report.plan)
    assert layers == (0, None, 1, None, None)
    seqs = corpus_sequences(tokenizer, samples=2, max_len=64)
    with _Checkpoint(sources["llama-bias"]) as s, _Checkpoint(tmp_path / "g") as g:
        check, stats = compare_streaming(s, g, seqs, dtype="float32", layers=layers)
        check_unpaired, unpaired = compare_streaming(s, g, seqs, dtype="float32", layers=None)
    assert check.ok and (stats.paired_blocks, stats.inserted_blocks) == (2, 3)
    assert stats.identity_dev == 0.0  # zero writers: the residual passes through bit for bit
    assert stats.hidden_dev < 1e-5  # zero-padding: the first 64 dims are the source's hidden state
    # without a map the stacks run one after the other; the verdict is the same
    assert unpaired.paired_blocks == 0 and check_unpaired == check


def test_head_chunks_straddling_the_old_vocabulary_give_the_same_result(sources, tmp_path):
    report = _grow(sources["llama-tied"], tmp_path / "g", vocab_size=1100, hidden_size=96)
    kw = dict(samples=3, max_len=64, layers=layer_map(report.plan), device="cpu")
    whole = verify_streaming(sources["llama-tied"], tmp_path / "g", **kw)
    # 96 fp32 columns × 100 rows: 11 chunks, one of them across the old vocabulary's end (1024)
    chunked = verify_streaming(sources["llama-tied"], tmp_path / "g", head_chunk_bytes=96 * 4 * 100, **kw)
    (a,), (b,) = whole.checks, chunked.checks
    assert b.ok and 0 < b.loss_delta <= b.vocab_bound
    assert b.loss_grown == pytest.approx(a.loss_grown, rel=1e-6) and b.loss_source == pytest.approx(
        a.loss_source, rel=1e-6
    )
    assert b.max_abs_logit_diff == pytest.approx(a.max_abs_logit_diff, abs=1e-6)


def _corrupt(directory, name, fn):
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(path)
    tensors[name] = fn(tensors[name])
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("variant", "tensor", "fn"),
    [
        ("llama-gqa", "model.layers.1.self_attn.q_proj.weight", lambda t: t * 1.5),  # a copied block
        ("phi3", "model.layers.1.mlp.down_proj.weight", lambda t: t + 0.05),  # an inserted identity block
        ("llama-mha", "model.norm.weight", lambda t: t.flip(0)),
        ("llama-tied", "model.embed_tokens.weight", lambda t: t.roll(1, 0)),
    ],
)
def test_a_broken_growth_is_not_ok(variant, tensor, fn, sources, tmp_path):
    report = _grow(sources[variant], tmp_path / "g", hidden_size=96, num_hidden_layers=3)
    _corrupt(tmp_path / "g", tensor, fn)
    kw = dict(samples=3, max_len=64, layers=layer_map(report.plan), device="cpu")
    broken = verify_streaming(sources[variant], tmp_path / "g", **kw)
    assert not broken.ok and not broken.checks[0].ok
    old = verify_in_memory(sources[variant], tmp_path / "g", samples=3, max_len=64)
    assert broken.checks[0].loss_grown == pytest.approx(old.checks[0].loss_grown, rel=1e-6)


def test_streaming_refuses_what_the_loader_refuses(sources, tmp_path):
    from sn29_growth.loading import ModelLoadError

    _grow(sources["llama-gqa"], tmp_path / "g", hidden_size=96)
    _corrupt(tmp_path / "g", "model.layers.0.mlp.up_proj.weight", lambda t: t[:-1])
    with pytest.raises(ModelLoadError, match="up_proj"):
        verify_streaming(sources["llama-gqa"], tmp_path / "g", samples=1, max_len=16)


def test_grow_verify_runs_streaming(sources, tmp_path, monkeypatch):
    import sn29_growth.growth.verify as verify

    def fail(*a, **k):
        raise AssertionError("grow --verify loaded whole models")

    monkeypatch.setattr(verify, "verify_in_memory", fail)
    report = grow_checkpoint(
        sources["phi3"],
        tmp_path / "g",
        GrowthSpec((GrowthStep(intermediate_size=256, num_hidden_layers=3),)),
        verify=True,
    )
    assert report.ok and report.verification.ok and report.verification.checks[0].max_abs_logit_diff < 1e-4


# --- memory -----------------------------------------------------------------------------------------------

MiB = 1 << 20
BOUND = 128 * MiB

# One process verifies a tiny pair (its max RSS is the constant: interpreter, torch, transformers, corpus,
# code paths) and then a large pair; the growth of max RSS between the two is what the model size costs.
_RUNNER = """
import json, resource, sys
import torch
from sn29_growth.growth.streaming_verify import verify_streaming
out = []
for src, dst in json.loads(sys.argv[1]):
    v = verify_streaming(src, dst, dtypes=("float32",), samples=2, max_len=64, device="cpu")
    out.append({"ok": v.ok, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
print("RESULT " + json.dumps(out))
"""


def test_streaming_verify_memory_is_bounded_by_blocks_not_models(tmp_path):
    from sn29_growth.growth.synthetic import llama_config, write_random_checkpoint

    small = write_random_checkpoint(
        tmp_path / "small", llama_config(hidden_size=64, num_attention_heads=4, intermediate_size=192)
    )
    big_cfg = llama_config(
        hidden_size=512, intermediate_size=1536, num_hidden_layers=10, num_attention_heads=8, vocab_size=4096
    )
    big = write_random_checkpoint(tmp_path / "big", big_cfg, dtype=torch.bfloat16, max_shard_bytes=32 * MiB)
    step = dict(hidden_size=768, intermediate_size=2304, num_hidden_layers=16, num_attention_heads=12)
    report = _grow(big, tmp_path / "big-out", off_network=False, num_key_value_heads=12, **step)
    _grow(small, tmp_path / "small-out", hidden_size=96, intermediate_size=288)
    fp32_bytes = 4 * (report.parameters_before + report.parameters_after)
    assert fp32_bytes >= 4 * BOUND  # loading both models whole in fp32 could not stay under the bound

    jobs = [[str(small), str(tmp_path / "small-out")], [str(big), str(tmp_path / "big-out")]]
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(jobs)], capture_output=True, text=True, timeout=300
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-2000:]
    base, peak = json.loads(line.removeprefix("RESULT "))
    assert base["ok"] and peak["ok"]
    grew = (peak["maxrss_kib"] - base["maxrss_kib"]) * 1024
    print(f"max RSS grew {grew / MiB:.0f} MiB; both models in fp32: {fp32_bytes / MiB:.0f} MiB")
    assert grew < BOUND, (
        f"streaming verify grew max RSS by {grew / MiB:.0f} MiB for {fp32_bytes / MiB:.0f} MiB"
    )


# --- the probe --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_ids(tokenizer):
    return corpus_sequences(tokenizer, split="train", samples=3, max_len=96)


def _kinds(result) -> set[tuple[str, bool]]:
    """Stuck tensors by kind: name without the block index, and whether the block was inserted."""
    out = set()
    for s in result.stuck:
        name = s.tensor.removeprefix("model.layers.")
        if name[0].isdigit():
            index, name = name.split(".", 1)
            out.add((name, int(index)))
        else:
            out.add((name, -1))
    return out


def test_probe_layer_choice():
    assert probe_layers((0, None, 1)) == (0, 1, 2)  # shallow: every block
    assert probe_layers((0, None, None, 1, None, None)) == (0, 1)
    assert probe_layers((None, 0, 1, 2, 3, None)) == (0, 1)
    assert probe_layers((0, 1, 2, 3, 4, 5)) == (0,)


@pytest.mark.parametrize("variant", ["llama-gqa", "llama-tied", "phi3"])
@pytest.mark.parametrize("init", ["trainable", "zeros"])
def test_bounded_probe_finds_every_kind_the_full_probe_finds(variant, init, sources, tmp_path, train_ids):
    from sn29_growth.growth.engine import new_masks
    from sn29_growth.loading import load_model

    report = _grow(sources[variant], tmp_path / "g", hidden_size=96, num_hidden_layers=6, init=init)
    layers = layer_map(report.plan)
    bounded = probe_checkpoint(tmp_path / "g", report.plan, train_ids)
    full = probe_trainability(load_model(tmp_path / "g"), new_masks(report.plan), train_ids)
    assert bounded.layers == (0, 1) and full.layers is None
    assert 0 < bounded.lines_checked < full.lines_checked
    assert bounded.ok == full.ok == (init == "trainable")

    def kinds(result):
        return {(n, i if i < 0 else layers[i] is None) for n, i in _kinds(result)}

    assert kinds(bounded) == kinds(full)  # every kind of stuck slice, named by its output block
    assert {i for _, i in _kinds(bounded)} <= {-1, 0, 1}
    assert bounded.to_dict()["layers"] == [0, 1]


def test_probe_refuses_cleanly_when_it_cannot_fit(sources, tmp_path):
    spec = GrowthSpec((GrowthStep(hidden_size=96, num_hidden_layers=6),), off_network=True)
    from sn29_growth.checkpoint import read_model_config
    from sn29_growth.growth.resolve import resolve_plan

    plan = resolve_plan(spec, read_model_config(sources["llama-gqa"]))
    need = check_probe_memory(plan, available=1 << 40)
    assert need > 0
    with pytest.raises(ProbeMemoryError, match=r"needs about .* bytes.*without --probe"):
        check_probe_memory(plan, available=need // 2)


def test_grow_probe_refuses_before_writing(sources, tmp_path, monkeypatch):
    import sn29_growth.growth.streaming_verify as sv

    monkeypatch.setattr(sv, "available_memory", lambda: 1 << 20)
    spec = GrowthSpec((GrowthStep(hidden_size=96),), off_network=True)
    with pytest.raises(ProbeMemoryError, match="without --probe"):
        grow_checkpoint(sources["llama-gqa"], tmp_path / "g", spec, probe=True)
    assert not (tmp_path / "g").exists()


def test_probe_allocator_failure_becomes_a_clean_error(sources, tmp_path, train_ids, monkeypatch):
    import sn29_growth.growth.verify as verify

    report = _grow(sources["llama-gqa"], tmp_path / "g", hidden_size=96)

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(verify, "probe_trainability", oom)
    with pytest.raises(ProbeMemoryError, match="without --probe"):
        probe_checkpoint(tmp_path / "g", report.plan, train_ids)


def test_probe_with_nothing_to_check_says_na(sources, tmp_path, capsys):
    result = ProbeResult(2, 0)
    assert not result.applicable and result.summary.startswith("n/a")
    assert result.lines_checked == 0
    assert result.lines_checked == 0 and json.dumps(result.to_dict())  # still an int in reports
    assert f"{ProbeResult(2, 7).lines_checked}" == "7"

    from growth_helpers import cli

    # --num-layers at its current value: a growth without new slices
    assert cli(["grow", str(sources["llama-gqa"]), str(tmp_path / "g"), "--num-layers", "2", "--probe"]) == 0
    out = capsys.readouterr().out
    assert "probe: n/a" in out
