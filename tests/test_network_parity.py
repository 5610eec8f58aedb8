"""The network's real stack (transformers 4.44.0 / tokenizers 0.19.1) scores our outputs as we do.

``-m slow`` tests build (once, cached: ``~/.cache/sn29-growth/network-venv-4.44`` or
``$SN29_NETWORK_VENV``) a side venv with the network's stack, run ``sn29_growth/network/legacy44.py`` in
it on every output of ``tests/network_outputs.py`` and compare with our stack: both load, the same ids
per sample, the same round-trip verdicts, summed losses within relative 1e-5 in fp32. Negative controls
prove the harness can fail: a folder saved by transformers 5 directly, a transformers-5 config, a
tokenizer that cleans up spaces, and 4.44 without the norm_divisor patch.

The tests without the mark are fast and need no side venv: the comparison logic, the norm_divisor
patch of ``legacy44.py`` and its scoring rule, and the venv cache.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess

import pytest
import torch
from network_outputs import (
    ARCHS,
    KINDS,
    LLAMA3_ROPE,
    LLAMA_THETA,
    network_outputs,
    transformers5_config_folder,
    transformers5_folder,
)

from sn29_growth.network import legacy44, parity
from sn29_growth.network.parity import (
    REL_TOL,
    STAMP,
    STAMP_FILE,
    ModelParity,
    ParityReport,
    compare,
    ensure_network_venv,
    relative_difference,
    resolve_venv,
)

SPACED = ("Hello , world", "It is n't here ; is it ?")


def _texts() -> list[str]:
    from sn29_growth.corpus import load_corpus

    return [s.text for s in load_corpus().held_out[:6]] + list(SPACED)


# ------------------------------------------------------------------------------- fast: comparison logic


def _side(ids=(1, 2, 3), ok=True, loss=10.0, error=None, **extra):
    if error:
        return {"load_error": error, "samples": [], **extra}
    return {"load_error": None, "samples": [{"ids": list(ids), "round_trip_ok": ok, "loss": loss}], **extra}


def test_relative_difference():
    assert relative_difference(10.0, 10.0) == 0.0
    assert relative_difference(10.0, 10.0001) == pytest.approx(1e-5, rel=1e-3)
    assert relative_difference(None, None) == 0.0  # both +inf
    assert relative_difference(None, 3.0) == math.inf
    assert relative_difference(0.0, 0.0) == 0.0


def test_compare_one_names_each_kind_of_difference():
    same = parity._compare_one("m", "network", _side(), _side(loss=10.00001), ["t"], REL_TOL)
    assert same.ok and same.verdict == "agrees" and same.max_relative_difference < REL_TOL
    ids = parity._compare_one("m", "network", _side(), _side(ids=(1, 2)), ["t"], REL_TOL)
    assert not ids.ok and ids.ids_equal is False and "token ids differ" in ids.problems[0]
    trip = parity._compare_one("m", "network", _side(ok=False, loss=None), _side(), ["a , b"], REL_TOL)
    assert (
        trip.round_trips_equal is False and "round trip fails on 4.44.0, passes on ours" in trip.problems[0]
    )
    loss = parity._compare_one("m", "ours", _side(loss=10.0), _side(loss=10.01), ["t"], REL_TOL)
    assert loss.verdict == "DIFFERS" and "relative 9.99e-04 > 1e-05" in loss.problems[0]
    fail = parity._compare_one(
        "m", "network", _side(error="tokenizer: ValueError: x"), _side(), ["t"], REL_TOL
    )
    assert fail.verdict == "fails to load on 4.44.0" and not fail.loads_on_network and fail.samples == ()
    missing = _side(loading_info={"missing_keys": ["lm_head.weight"], "unexpected_keys": []})
    random_init = parity._compare_one("m", "network", missing, _side(), ["t"], REL_TOL)
    assert not random_init.ok and "missing keys" in random_init.problems[0]


def test_report_format_and_dict():
    good = parity._compare_one("/x/good", "network", _side(), _side(), ["t"], REL_TOL)
    bad = parity._compare_one("/x/bad", "ours", _side(loss=1.0), _side(loss=2.0), ["t"], REL_TOL)
    report = ParityReport((good, bad), 1, {"transformers": "4.44.0"})
    assert not report.ok and ParityReport((good,), 1).ok and not ParityReport((), 0).ok
    text = report.format()
    assert "max rel. loss diff" in text and "agrees" in text and "DIFFERS" in text and "5.00e-01" in text
    assert text.endswith("NOT ALL AGREE")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and [r["verdict"] for r in d["rows"]] == ["agrees", "DIFFERS"]
    assert report.row("/x/bad", "ours") is bad
    assert isinstance(bad, ModelParity)


# ----------------------------------------------------------------------------- fast: legacy44 itself


def test_legacy44_imports_only_stdlib_torch_and_transformers():
    tree = ast.parse(parity.LEGACY_SCRIPT.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= {
        "__future__",
        "json",
        "math",
        "os",
        "sys",
        "traceback",
        "types",
        "torch",
        "transformers",
        "tokenizers",
    }


class LlamaRMSNorm(torch.nn.Module):  # the attributes of 4.44's class
    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(n) + 0.5)
        self.variance_epsilon = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon) * self.weight


class GemmaRMSNorm(LlamaRMSNorm):
    pass


class _Config:
    def __init__(self, norm_divisor):
        self.norm_divisor = norm_divisor


class _Model(torch.nn.Module):
    def __init__(self, divisor, norm_cls=LlamaRMSNorm):
        super().__init__()
        self.config = _Config(divisor)
        self.layers = torch.nn.ModuleList([LlamaRMSNorm(8), norm_cls(8)])


def test_legacy44_patch_divides_the_sum_of_squares_by_the_divisor():
    model = _Model(4)
    x = torch.randn(3, 8)
    assert legacy44.patch_norm_divisor(model) == 2
    for norm in model.layers:
        want = norm.weight * (x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / 4 + norm.variance_epsilon))
        torch.testing.assert_close(norm(x), want)
        assert not torch.allclose(norm(x), type(norm).forward(norm, x))  # the mean would differ (8 != 4)
    assert legacy44.patch_norm_divisor(_Model(None)) == 0


def test_legacy44_patch_refuses_what_it_cannot_patch():
    with pytest.raises(ValueError, match="cannot patch 1 RMSNorm"):
        legacy44.patch_norm_divisor(_Model(4, norm_cls=GemmaRMSNorm))
    for bad in (0, -1, float("nan"), "64", True):
        with pytest.raises(ValueError, match="norm_divisor"):
            legacy44.patch_norm_divisor(_Model(bad))
    empty = torch.nn.Linear(2, 2)
    empty.config = _Config(4)
    with pytest.raises(ValueError, match="no RMSNorm"):
        legacy44.patch_norm_divisor(empty)


def test_legacy44_rule_matches_our_engine(tokenizer):
    """legacy44's per-sample rule, run on our stack's model, gives our tokenizer rule's ids and losses."""
    from sn29_growth.eval.loss import summed_losses
    from sn29_growth.tiny import build_tiny

    model = build_tiny("llama-gqa", seed=0, init_std=0.1)
    text = _texts()[0]
    got = legacy44.score_text(tokenizer, model, text)
    ids = tokenizer(text)["input_ids"]
    assert got["ids"] == ids and got["round_trip_ok"]
    want = summed_losses(model, [[*ids, tokenizer.eos_token_id]]).losses[0]
    assert relative_difference(got["loss"], want) < 1e-6

    class CleaningTokenizer:  # decodes as 4.44 does when clean_up_tokenization_spaces is on
        eos_token_id = tokenizer.eos_token_id

        def __call__(self, text):
            return tokenizer(text)

        def decode(self, ids):
            return tokenizer.decode(ids).replace(" ,", ",")

    tokenizer_cleaning = CleaningTokenizer()
    failed = legacy44.score_text(tokenizer_cleaning, model, "Hello , world")
    assert failed["round_trip_ok"] is False and failed["loss"] is None and failed["decoded"] == "Hello, world"


# ------------------------------------------------------------------------------------ fast: the venv


def test_a_stamped_venv_is_used_without_running_anything(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / STAMP_FILE).write_text(json.dumps(STAMP))

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a stamped venv must not run anything")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert ensure_network_venv(venv, say=None) == venv
    monkeypatch.setenv(parity.ENV_VAR, str(venv))
    assert resolve_venv() == venv and ensure_network_venv(say=None) == venv
    assert resolve_venv(tmp_path / "other") == tmp_path / "other"


def test_a_stale_stamp_is_not_trusted(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / STAMP_FILE).write_text(
        json.dumps({**STAMP, "versions": {**STAMP["versions"], "transformers": "4.43.0"}})
    )
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "boom")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(parity.NetworkVenvError, match="boom"):
        ensure_network_venv(venv, say=None)
    assert calls[0][-2:] == ["-c", parity._PROBE]  # probed first, then tried to install torch first
    assert calls[1][-1] == parity.TORCH_REQUIREMENT


# ------------------------------------------------------------------------------ slow: the real 4.44

_REPORTS: dict = {}


@pytest.fixture(scope="module")
def network_venv():
    return ensure_network_venv()


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    """Negative controls per arch: transformers 5's own folder, its config alone, a cleaning tokenizer."""
    root = tmp_path_factory.mktemp("network-controls")
    out = {}
    for arch in ARCHS:
        cleanup = root / f"{arch}-cleanup"
        shutil.copytree(network_outputs(arch)["base"], cleanup)
        tok_config = json.loads((cleanup / "tokenizer_config.json").read_text())
        del tok_config["clean_up_tokenization_spaces"]  # 4.44 then defaults to True, 5 to False
        (cleanup / "tokenizer_config.json").write_text(json.dumps(tok_config))
        out[arch] = {
            "transformers5": transformers5_folder(root, arch),
            "transformers5-config": transformers5_config_folder(root, arch),
            "cleanup": cleanup,
        }
    return out


@pytest.fixture(scope="module")
def report_for(network_venv, controls):
    def _get(arch: str) -> ParityReport:
        if arch not in _REPORTS:
            folders = [*network_outputs(arch).values(), *controls[arch].values()]
            _REPORTS[arch] = compare(folders, _texts(), network_venv, readings=("network", "ours"))
            print(f"\n{_REPORTS[arch].format()}")
        return _REPORTS[arch]

    return _get


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_every_output_loads_and_scores_alike_on_the_network(arch, report_for):
    report = report_for(arch)
    outputs = network_outputs(arch)
    base_losses = None
    for kind in KINDS:
        for reading in ("network", "ours"):
            row = report.row(outputs[kind], reading)
            assert row.ok, "\n".join(row.problems)
            assert row.loads_on_network and row.ids_equal and row.round_trips_equal
            assert row.max_relative_difference <= REL_TOL
            assert all(s.round_trip_network and s.loss_network is not None for s in row.samples)
        read = report.row(outputs[kind]).network_read
        assert read["model_class"] == {"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}[arch]
        assert read["head_dim"] == {"llama": 8, "phi3": 16}[arch]
        assert read["torch_dtype"] == "float32" and read["parameter_dtype"] == "float32"
        assert read["norm_divisor"] == (64 if kind in ("grown", "trained", "vocab") else None)
        assert read["vocab_size"] == (1100 if kind == "vocab" else 1024)
        assert read["rope_theta"] == (LLAMA_THETA if arch == "llama" else 10000.0)
        assert read["rope_scaling"] == (LLAMA3_ROPE if arch == "llama" else None)
        losses = [s.loss_network for s in report.row(outputs[kind]).samples]
        if kind == "base":
            base_losses = losses
        elif kind in ("grown", "stock"):  # growth keeps the function, as the network computes it too
            assert max(map(relative_difference, losses, base_losses)) <= REL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_a_transformers5_folder_does_not_load_on_the_network(arch, report_for, controls):
    for reading in ("network", "ours"):
        row = report_for(arch).row(controls[arch]["transformers5"], reading)
        assert not row.ok and row.verdict == "fails to load on 4.44.0"
        assert "TokenizersBackend" in row.network_error


@pytest.mark.slow
def test_a_transformers5_config_runs_a_different_llama_on_the_network(report_for, controls):
    report = report_for("llama")
    folder = controls["llama"]["transformers5-config"]
    meant = report.row(folder, "ours")  # what the author meant: rope_theta 500000 + llama3 scaling
    assert not meant.ok and meant.verdict == "DIFFERS" and meant.ids_equal
    assert meant.max_relative_difference > 100 * REL_TOL, meant.max_relative_difference
    assert meant.network_read["rope_theta"] == 10000.0 and meant.network_read["rope_scaling"] is None
    assert report.row(folder, "network").ok  # our validator reads it as the network does


@pytest.mark.slow
def test_phi3_default_rope_means_the_same_in_both_stacks(report_for, controls):
    folder = controls["phi3"]["transformers5-config"]
    for reading in ("network", "ours"):
        assert report_for("phi3").row(folder, reading).ok


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_a_tokenizer_that_cleans_up_spaces_fails_the_round_trip_on_the_network(arch, report_for, controls):
    """A tokenizer_config.json without clean_up_tokenization_spaces: 4.44 cleans up ' ,' on decode and
    fails the spaced texts' round trip; transformers 5 would not, but our rule applies 4.44's decode, so
    both stacks reject exactly the same samples."""
    row = report_for(arch).row(controls[arch]["cleanup"])
    assert row.ok and row.ids_equal, row.problems
    n = len(_texts())
    failing = [s.index for s in row.samples if not s.round_trip_network]
    assert failing == [n - 2, n - 1]  # exactly the spaced texts
    assert [s.round_trip_ours for s in row.samples] == [s.round_trip_network for s in row.samples]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_without_the_norm_divisor_patch_a_grown_model_differs(arch, network_venv):
    grown = network_outputs(arch)["grown"]
    report = compare([grown], _texts()[:3], network_venv, patch_norm_divisor=False)
    row = report.row(grown)
    assert not row.ok and row.loads_on_network and row.max_relative_difference > 1e-3
    print(f"\n{arch} grown without the patch: max relative loss difference {row.max_relative_difference:.3g}")
