"""Slow: the package's tokenization equals the reference validator's ``tokenize`` on real tokenizers.

The reference rule is written out on its own in ``tests/reference_tokenize44.py`` and run with the
Python of the network's tokenizer stack (transformers 4.44.0 / tokenizers 0.19.1), one text at a time.
The package's path — :func:`~sn29_growth.eval.tokenizers.load_tokenizer` and
:func:`~sn29_growth.eval.tokenize.tokenize_samples` — must give the same ids (EOS included), capped
flags, failures and rejection verdict for every tokenizer below, as shipped and in constructed
configurations, on texts chosen to hit every step of the rule (the cap and ``max_sequence_len``
boundaries included), and must refuse exactly the tokenizers 4.44 cannot load.

The in-process emulation (:func:`~sn29_growth.eval.tokenizers.emulated_tokenizer`) is measured against
the same reference: :data:`EMULATION_IDENTICAL` names the configurations it agrees on completely, which
``docs/tokenization.md`` reports. ``SN29_PARITY_TABLE=PATH`` writes the measured table (markdown) there.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from real_tokenizers import REAL, real_tokenizer, variant

from sn29_growth.corpus import Sample, load_corpus
from sn29_growth.eval.tokenize import BOS, DECODE, TOO_LONG, TokenizeSettings, tokenize_samples

pytestmark = pytest.mark.slow

REFERENCE = Path(__file__).with_name("reference_tokenize44.py")
CAP = 64
MAX_INVALID = 3
PROBE = "The quick brown fox jumps over the lazy dog."
CUSTOM_TOKEN = "<custom_word>"
CUSTOM_SPECIAL = "<|special_x|>"


def cap_texts() -> list[str]:
    """Texts around the cap of ``CAP`` characters: a space exactly at, one before, one after the cap,
    no space at all, and lengths at and one past the cap."""
    at = "w" * 30 + " " + "x" * (CAP - 31) + " " + "tail words here"
    before = "w" * (CAP - 1) + " " + "tail words here"
    after = "w" * 30 + " " + "x" * (CAP - 30) + " " + "tail words here"
    assert at[CAP] == " " and before[CAP - 1] == " " and after[CAP + 1] == " "
    return [at, before, after, "y" * (CAP * 3), "z" * CAP, "z" * (CAP + 1), "a " * CAP]


def texts() -> list[str]:
    corpus = load_corpus()
    prose = [s.text for s in corpus.held_out[:4]] + [corpus.train[0].text[:300]]
    return [
        PROBE,
        *prose,
        "def f(x):\n    if x:\n\treturn x  # a tab\n    return None\n\nclass A:\n        pass\n",
        "a  b   c    d\t\te\n\n\nf   end   ",
        "line one\r\nline two\r\n\r\nthree",
        "中文文本，测试。日本語のテキストです。한국어 텍스트입니다.",
        "مرحبا بالعالم، هذا نص عربي.",
        "שלום עולם, זה טקסט בעברית.",
        "family 👩\u200d👩\u200d👧\u200d👦 thumbs 👍🏽👍🏿 flag 🏳️\u200d🌈 done",
        "cafe\u0301 n\u0303 Z\u0324\u0308 a\u0300\u0301\u0302",
        "bell\x07 nul\x00 esc\x1b[0m del\x7f vt\x0b ff\x0c",
        "<s> starts and </s> ends",
        "text <|endoftext|> more text",
        "<|begin_of_text|> hello",
        f"an added {CUSTOM_TOKEN} and a special {CUSTOM_SPECIAL} token",
        "Hello , world . I do n't know ; it 's fine ! ok ? yes 'm 've 're",
        " leading space",
        "   three leading spaces",
        "\nnewline first",
        "",
        " ",
        "\n",
        "\t",
        "x",
        "12345678901234567890 3.14159 1,000,000",
        *cap_texts(),
    ]


# ---- the configurations: as shipped and constructed


def edit_tokenizer_json(folder: Path, edit: Callable[[dict], None]) -> Path:
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder


def merges_as_strings(data: dict) -> None:
    """BPE merges written as ``"a b"`` strings, the only form tokenizers 0.19 reads."""
    merges = data["model"]["merges"]
    assert all(" " not in part for pair in merges if isinstance(pair, list) for part in pair)
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in merges]


def extra_added_tokens(data: dict) -> None:
    top = max(t["id"] for t in data["added_tokens"])
    top = max(top, max(data["model"]["vocab"].values()))
    for i, (content, special) in enumerate(((CUSTOM_TOKEN, False), (CUSTOM_SPECIAL, True)), start=1):
        data["added_tokens"].append(
            {
                "id": top + i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": not special,
                "special": special,
            }
        )


def shipped(name: str) -> Callable[[Path], Path]:
    return lambda _dst: real_tokenizer(name)


def configured(
    name: str, json_edit: Callable[[dict], None] | None = None, **config
) -> Callable[[Path], Path]:
    def build(dst: Path) -> Path:
        folder = variant(name, dst, **config)
        return edit_tokenizer_json(folder, json_edit) if json_edit else folder

    return build


NO_BOS = {"add_bos_token": False}
CASES: dict[str, Callable[[Path], Path]] = {
    "cl100k (shipped: GPT3_5Tokenizer)": shipped("cl100k"),
    "cl100k as GPT2TokenizerFast": configured("cl100k", tokenizer_class="GPT2TokenizerFast"),
    "cl100k as PreTrainedTokenizerFast": configured("cl100k", tokenizer_class="PreTrainedTokenizerFast"),
    "cl100k GPT2TokenizerFast + added tokens": configured(
        "cl100k", extra_added_tokens, tokenizer_class="GPT2TokenizerFast"
    ),
    "o200k (shipped: GPT2Tokenizer)": shipped("o200k"),
    "o200k GPT2TokenizerFast add_prefix_space": configured(
        "o200k", tokenizer_class="GPT2TokenizerFast", add_prefix_space=True
    ),
    "llama2 (shipped: add_bos_token)": shipped("llama2"),
    "llama2 add_bos_token false": configured("llama2", **NO_BOS),
    "llama2 add_eos_token true": configured("llama2", add_eos_token=True),
    "llama2 no BOS, add_eos_token true": configured("llama2", add_eos_token=True, **NO_BOS),
    "llama2 no BOS, legacy false": configured("llama2", legacy=False, **NO_BOS),
    "llama2 no BOS, clean-up true": configured("llama2", clean_up_tokenization_spaces=True, **NO_BOS),
    "llama2 no BOS, clean-up unset": configured("llama2", clean_up_tokenization_spaces=None, **NO_BOS),
    "llama3 (shipped: clean-up true)": shipped("llama3"),
    "llama3 clean-up false": configured("llama3", clean_up_tokenization_spaces=False),
    "llama3 clean-up unset": configured("llama3", clean_up_tokenization_spaces=None),
    "qwen3 (shipped: pair merges)": shipped("qwen3"),
    "qwen3 string merges": configured("qwen3", merges_as_strings),
    "qwen3 string merges, add_prefix_space": configured("qwen3", merges_as_strings, add_prefix_space=True),
    "gemma3 (shipped: pair merges)": shipped("gemma3"),
    "gemma3 string merges": configured("gemma3", merges_as_strings),
    "gemma3 string merges, add_bos_token false": configured("gemma3", merges_as_strings, **NO_BOS),
    "unknown class": configured("llama3", tokenizer_class="NotARealTokenizerFast"),
}

LOAD_FAILS = {
    "cl100k (shipped: GPT3_5Tokenizer)",
    "qwen3 (shipped: pair merges)",
    "gemma3 (shipped: pair merges)",
    "unknown class",
}
"""Configurations transformers 4.44 / tokenizers 0.19 cannot load (so the network rejects them)."""

EMULATION_IDENTICAL = {
    "cl100k as PreTrainedTokenizerFast",
    "llama2 (shipped: add_bos_token)",
    "llama2 add_eos_token true",
    "llama2 no BOS, add_eos_token true",
    "llama3 (shipped: clean-up true)",
    "llama3 clean-up false",
    "llama3 clean-up unset",
    "qwen3 string merges",
    "gemma3 string merges",
}
"""Configurations on which the in-process emulation gave exactly the reference's results (measured)."""


# ---- running both sides


def reference_python() -> Path:
    from sn29_growth.network import sidevenv

    try:
        venv = sidevenv.ensure(sidevenv.TOKENIZER_STACK, sidevenv.tokenizer_venv_path())
    except sidevenv.NetworkVenvError as e:
        pytest.skip(f"the network's tokenizer stack cannot be built here: {e}")
    return sidevenv.venv_python(venv)


def run_reference(texts: list[str], jobs: list[dict]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TRANSFORMERS_VERBOSITY"] = "error"
    done = subprocess.run(
        [str(reference_python()), "-I", str(REFERENCE)],
        input=json.dumps({"texts": texts, "jobs": jobs}),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert answer["versions"] == {"transformers": "4.44.0", "tokenizers": "0.19.1"}
    return answer["results"]


def settings_for(first: dict) -> list[tuple[int, int]]:
    """(cap, max_len) runs: neither, the cap, and ``max_sequence_len`` exactly at and one below the id
    count (EOS included) of the first text that passes the round trip without a cap."""
    lengths = [len(ids) for ids, _, status in first["items"] if status is None and len(ids) > 2]
    limit = lengths[0] if lengths else 8
    return [(0, 0), (CAP, 0), (0, limit), (0, limit - 1), (CAP, limit)]


def status(failure: str | None) -> str | None:
    return {None: None, DECODE: "invalid", BOS: "invalid", TOO_LONG: "too_long"}[failure]


def project_runs(load: Callable[[Path], object], folder: Path, samples, runs) -> dict:
    """The package's results in the reference's form, or ``{"load_error": ...}``."""
    try:
        tokenizer = load(folder)
    except Exception as e:  # the exact path raises TokenizerUnusable; the emulation whatever 5 raises
        return {"load_error": f"{type(e).__name__}: {e}"}
    out = []
    for cap, limit in runs:
        tokens = tokenize_samples(tokenizer, samples, TokenizeSettings(cap, limit))
        items = [[None if t.ids is None else list(t.ids), t.capped, status(t.failure)] for t in tokens.items]
        out.append(
            {"items": items, "rejected": tokens.rejection(MAX_INVALID) is not None, "engine": tokens.engine}
        )
    return {"runs": out}


def differences(reference: dict, project: dict) -> tuple[int, int, bool]:
    """(samples that differ, samples compared, whether the verdict differs); a configuration one side
    cannot load counts every sample as different unless both fail to load."""
    runs = reference.get("runs") or project.get("runs") or []
    total = sum(len(r["items"]) for r in runs)
    if "load_error" in reference or "load_error" in project:
        same = "load_error" in reference and "load_error" in project
        return (0 if same else total), total, not same
    differ = sum(
        a != b
        for ref, got in zip(reference["runs"], project["runs"], strict=True)
        for a, b in zip(ref["items"], got["items"], strict=True)
    )
    verdict = any(
        ref["rejected"] != got["rejected"]
        for ref, got in zip(reference["runs"], project["runs"], strict=True)
    )
    return differ, total, verdict


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Per configuration: the reference's results, the exact path's and the emulation's."""
    from sn29_growth.eval.tokenizers import emulated_tokenizer, load_tokenizer

    for name in REAL:
        real_tokenizer(name)  # skips when the files cannot be fetched
    root = tmp_path_factory.mktemp("parity")
    folders = {name: build(root / f"case{i}") for i, (name, build) in enumerate(CASES.items())}
    sample_texts = texts()
    samples = [Sample(f"t#{i}", text) for i, text in enumerate(sample_texts)]
    names = list(folders)
    first = run_reference(
        sample_texts, [{"folder": str(folders[n]), "settings": [[0, 0, MAX_INVALID]]} for n in names]
    )
    runs = {
        n: settings_for(f["runs"][0]) if "runs" in f else [(0, 0)] for n, f in zip(names, first, strict=True)
    }
    jobs = [{"folder": str(folders[n]), "settings": [[c, m, MAX_INVALID] for c, m in runs[n]]} for n in names]
    reference = dict(zip(names, run_reference(sample_texts, jobs), strict=True))
    results = {}
    for n in names:
        results[n] = {
            "reference": reference[n],
            "exact": project_runs(load_tokenizer, folders[n], samples, runs[n]),
            "emulated": project_runs(emulated_tokenizer, folders[n], samples, runs[n]),
        }
    table = os.environ.get("SN29_PARITY_TABLE")
    if table:
        Path(table).write_text(markdown_table(results), encoding="utf-8")
    return results


def verdicts(runs: list[dict]) -> str:
    rejected = sum(r["rejected"] for r in runs)
    return (
        "accepts"
        if rejected == 0
        else "rejects"
        if rejected == len(runs)
        else f"rejects {rejected}/{len(runs)} runs"
    )


def markdown_table(results: dict) -> str:
    lines = [
        "| tokenizer configuration | reference (4.44) | exact path | emulation: samples differing "
        "| emulation: verdict |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        loads = "does not load" if "load_error" in r["reference"] else verdicts(r["reference"]["runs"])
        d, n, v = differences(r["reference"], r["exact"])
        exact = "identical" if d == 0 and not v else f"{d}/{n} differ"
        d, n, v = differences(r["reference"], r["emulated"])
        if "load_error" in r["reference"] and "load_error" not in r["emulated"]:
            share, verdict = "—", "loads what 4.44 rejects"
        else:
            share = f"{d}/{n} ({100 * d / n:.0f} %)" if n else "—"
            verdict = "differs" if v else "same"
        lines.append(f"| {name} | {loads} | {exact} | {share} | {verdict} |")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", list(CASES))
def test_exact_path_equals_the_reference(parity, name):
    r = parity[name]
    reference, exact = r["reference"], r["exact"]
    if name in LOAD_FAILS:
        assert "load_error" in reference, reference.get("runs", [{}])[0].get("items", [])[:1]
        assert "load_error" in exact and "does not load on the network's stack" in exact["load_error"]
        return
    assert "runs" in reference, reference
    assert "runs" in exact, exact
    for ref, got in zip(reference["runs"], exact["runs"], strict=True):
        assert got["engine"] == "transformers 4.44.0 / tokenizers 0.19.1"
        for i, (a, b) in enumerate(zip(ref["items"], got["items"], strict=True)):
            assert a == b, f"sample {i}: reference {a} != package {b}"
        assert got["rejected"] == ref["rejected"]


def test_the_texts_hit_every_branch(parity):
    """Across the configurations the rule's every outcome occurs: capped, invalid, too long, EOS, rejected."""
    seen = set()
    for r in parity.values():
        for run in r["reference"].get("runs", []):
            seen.add("rejected" if run["rejected"] else "accepted")
            for _ids, capped, outcome in run["items"]:
                seen.add(outcome or "ok")
                seen.add("capped" if capped else "whole")
    assert seen == {"rejected", "accepted", "invalid", "too_long", "ok", "capped", "whole"}


def test_emulation_identical_only_where_measured(parity):
    identical = {
        name
        for name, r in parity.items()
        if differences(r["reference"], r["emulated"])[0] == 0
        and not differences(r["reference"], r["emulated"])[2]
    }
    assert identical == EMULATION_IDENTICAL, markdown_table(parity)
