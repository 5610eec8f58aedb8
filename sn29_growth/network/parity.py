"""The proof: load model folders with the network's real stack and check it scores them as we do.

Live SN29 validators run transformers 4.44.0 / tokenizers 0.19.1. :func:`ensure_network_venv` builds
that stack once into a side venv (cached; ``SN29_NETWORK_VENV`` overrides where), and :func:`compare`
runs :mod:`sn29_growth.network.legacy44` in it on a list of model folders and texts, computes the same
in our stack (transformers 5: ``AutoTokenizer`` + :func:`~sn29_growth.loading.load_model`, the SN29
tokenization rule of :mod:`sn29_growth.eval.tokenize` and the loss engine of
:mod:`sn29_growth.eval.loss`, fp32), and compares per model: both load, the token ids of every sample
are identical, the round-trip verdicts agree, and the summed losses agree within a relative
:data:`REL_TOL`.

``reading`` says which of our readings of ``config.json`` is compared: ``"network"`` (keys 4.44 ignores
are ignored, as our evaluation and validator read miners' configs) or ``"ours"`` (what our tools mean
by the files, transformers 5's keys translated). For what our writers produce the two are the same; a
folder saved by transformers 5 directly agrees under ``"network"`` (our validator computes what the
network computes) and differs under ``"ours"`` (the network does not run the model its author meant).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.network import sidevenv
from sn29_growth.network.config import NETWORK_TOKENIZERS, NETWORK_TRANSFORMERS
from sn29_growth.network.sidevenv import STAMP_FILE, NetworkVenvError, SideVenv, venv_python  # noqa: F401

ENV_VAR = "SN29_NETWORK_VENV"
DEFAULT_VENV = Path("~/.cache/sn29-growth/network-venv-4.44")
TORCH_REQUIREMENT = "torch==2.13.0"
REQUIREMENTS = (f"transformers=={NETWORK_TRANSFORMERS}", "numpy<2.3")
"""Installed after torch (the CPU build is found locally; installed first, pip keeps it)."""

PARITY_STACK = SideVenv(
    name="the network's stack",
    env_var=ENV_VAR,
    default_path=str(DEFAULT_VENV),
    steps=((TORCH_REQUIREMENT,), REQUIREMENTS),
    versions=(
        ("transformers", NETWORK_TRANSFORMERS),
        ("tokenizers", NETWORK_TOKENIZERS),
        ("torch", TORCH_REQUIREMENT.split("==")[1] + "*"),
    ),
)
"""transformers 4.44.0 / tokenizers 0.19.1 with torch 2.13.0 (CPU): scores whole model folders."""

REL_TOL = 1e-5
READINGS = ("network", "ours")
LEGACY_SCRIPT = Path(__file__).with_name("legacy44.py")
DEFAULT_TIMEOUT_S = 1800.0
STAMP = PARITY_STACK.stamp
_PROBE = PARITY_STACK.probe


def resolve_venv(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$SN29_NETWORK_VENV``, else ``~/.cache/sn29-growth/network-venv-4.44``."""
    return sidevenv.resolve(PARITY_STACK, path)


def ensure_network_venv(
    path: str | os.PathLike | None = None,
    *,
    say: Callable[[str], None] | None = sidevenv._say,
    timeout: float = 1800.0,
) -> Path:
    """The side venv with the network's stack (torch 2.13.0 CPU, transformers 4.44.0, tokenizers 0.19.1).

    Built on first use at ``path`` / ``$SN29_NETWORK_VENV`` / ``~/.cache/sn29-growth/network-venv-4.44``:
    ``python -m venv``, ``pip install torch==2.13.0`` first (the CPU build; anything else pulls a
    multi-GB CUDA build), then ``transformers==4.44.0 'numpy<2.3'``; see :func:`sidevenv.ensure`.
    """
    return sidevenv.ensure(PARITY_STACK, path, say=say, timeout=timeout)


# ---------------------------------------------------------------------------------------- scoring


def run_legacy(
    model_dirs: Sequence[str | os.PathLike],
    texts: Sequence[str],
    venv: str | os.PathLike | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    threads: int | None = None,
    attn_implementation: str = "eager",
    patch_norm_divisor: bool = True,
) -> dict[str, Any]:
    """The raw response of :mod:`~sn29_growth.network.legacy44` run in the side venv (built if needed)."""
    venv = ensure_network_venv(venv)
    request = {
        "models": [str(Path(d).absolute()) for d in model_dirs],
        "texts": list(texts),
        "attn_implementation": attn_implementation,
        "patch_norm_divisor": patch_norm_divisor,
        "threads": threads or max(1, min(4, os.cpu_count() or 1)),
    }
    with tempfile.TemporaryDirectory(prefix="sn29-parity-") as tmp:
        req, resp = Path(tmp) / "request.json", Path(tmp) / "response.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        # -I: the script's folder (sn29_growth/network, with its config.py/tokenizer.py) is not on sys.path
        command = [str(venv_python(venv)), "-I", str(LEGACY_SCRIPT), str(req), str(resp)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            raise NetworkVenvError(
                f"the transformers {NETWORK_TRANSFORMERS} run timed out after {timeout:.0f}s"
            ) from None
        if done.returncode != 0 or not resp.is_file():
            tail = (done.stdout + done.stderr)[-3000:]
            raise NetworkVenvError(
                f"the transformers {NETWORK_TRANSFORMERS} run failed (exit {done.returncode}):\n{tail}"
            )
        return json.loads(resp.read_text(encoding="utf-8"))


def our_scores(
    model_dir: str | os.PathLike, texts: Sequence[str], reading: str = "network"
) -> dict[str, Any]:
    """What our stack computes for ``texts`` under the SN29 rule: the same fields as legacy44's response."""
    import torch

    from sn29_growth.corpus import Sample
    from sn29_growth.eval.loss import summed_losses
    from sn29_growth.eval.tokenize import TokenizeSettings, tokenize_samples
    from sn29_growth.eval.tokenizers import load_tokenizer
    from sn29_growth.loading import load_model
    from sn29_growth.train.checkpoint import quiet_hf_progress

    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    result: dict[str, Any] = {"path": str(model_dir), "load_error": None, "samples": []}
    stage = "tokenizer"
    try:
        tokenizer = load_tokenizer(model_dir)
        stage = "model"
        with quiet_hf_progress():
            model = load_model(model_dir, dtype=torch.float32, device="cpu", network=reading == "network")
    except Exception as e:
        result["load_error"] = f"{stage}: {type(e).__name__}: {e}"
        return result
    settings = TokenizeSettings(cap_sample_len=1 << 40, max_sequence_len=1 << 40)
    samples = [Sample(f"text#{i}", t) for i, t in enumerate(texts)]
    ruled = tokenize_samples(tokenizer, samples, settings)
    raw = tokenizer(list(texts))["input_ids"] if texts else []
    losses = summed_losses(model, ruled.sequences).losses
    for ids, item, loss in zip(raw, ruled.items, losses, strict=True):
        result["samples"].append(
            {
                "ids": [int(i) for i in ids],
                "round_trip_ok": item.failure is None,
                "loss": loss if math.isfinite(loss) else None,
            }
        )
    del model
    return result


# ---------------------------------------------------------------------------------------- comparing


def relative_difference(a: float | None, b: float | None) -> float:
    """``|a-b| / max(|a|, |b|)`` with None as +inf: 0 when both are +inf, inf when only one is."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


@dataclass(frozen=True)
class SampleParity:
    index: int
    ids_equal: bool
    round_trip_network: bool
    round_trip_ours: bool
    loss_network: float | None
    loss_ours: float | None
    relative_difference: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ids_equal": self.ids_equal,
            "round_trip_network": self.round_trip_network,
            "round_trip_ours": self.round_trip_ours,
            "loss_network": self.loss_network,
            "loss_ours": self.loss_ours,
            "relative_difference": _finite_or_str(self.relative_difference),
        }


@dataclass(frozen=True)
class ModelParity:
    """One model folder under one of our readings, against transformers 4.44."""

    model: str
    reading: str
    network_error: str | None
    ours_error: str | None
    network_read: dict[str, Any] | None
    samples: tuple[SampleParity, ...]
    problems: tuple[str, ...]
    tolerance: float = REL_TOL

    @property
    def loads_on_network(self) -> bool:
        return self.network_error is None

    @property
    def ids_equal(self) -> bool | None:
        return None if not self.samples else all(s.ids_equal for s in self.samples)

    @property
    def round_trips_equal(self) -> bool | None:
        return (
            None if not self.samples else all(s.round_trip_network == s.round_trip_ours for s in self.samples)
        )

    @property
    def max_relative_difference(self) -> float | None:
        return None if not self.samples else max(s.relative_difference for s in self.samples)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.ok:
            return "agrees"
        if self.network_error is not None:
            return f"fails to load on {NETWORK_TRANSFORMERS}"
        if self.ours_error is not None:
            return "fails to load on ours"
        return "DIFFERS"

    def to_dict(self) -> dict[str, Any]:
        mrd = self.max_relative_difference
        return {
            "model": self.model,
            "reading": self.reading,
            "ok": self.ok,
            "verdict": self.verdict,
            "loads_on_network": self.loads_on_network,
            "network_error": self.network_error,
            "ours_error": self.ours_error,
            "ids_equal": self.ids_equal,
            "round_trips_equal": self.round_trips_equal,
            "max_relative_difference": None if mrd is None else _finite_or_str(mrd),
            "tolerance": self.tolerance,
            "network_read": self.network_read,
            "problems": list(self.problems),
            "samples": [s.to_dict() for s in self.samples],
        }


def _finite_or_str(x: float) -> float | str:
    return x if math.isfinite(x) else "inf"


@dataclass(frozen=True)
class ParityReport:
    """Per (model, reading) rows; ``ok`` when every row agrees."""

    rows: tuple[ModelParity, ...]
    texts: int
    versions: dict[str, str] = field(default_factory=dict)
    tolerance: float = REL_TOL

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def row(self, model: str | os.PathLike, reading: str = "network") -> ModelParity:
        wanted = str(model)
        for r in self.rows:
            if r.reading == reading and (r.model == wanted or Path(r.model) == Path(wanted)):
                return r
        raise KeyError(f"no row for {wanted} ({reading})")

    def format(self) -> str:
        stack = ", ".join(f"{k} {v}" for k, v in self.versions.items() if k != "python")
        head = [
            f"network parity: {self.texts} text(s), each model scored by ours (transformers 5) and by the "
            f"network's stack ({stack or 'transformers ' + NETWORK_TRANSFORMERS}); losses within relative "
            f"{self.tolerance:g}",
        ]
        table = [
            (
                "model",
                "reading",
                f"loads on {NETWORK_TRANSFORMERS}",
                "ids equal",
                "max rel. loss diff",
                "verdict",
            )
        ]
        for r in self.rows:
            mrd = r.max_relative_difference
            table.append(
                (
                    r.model,
                    r.reading,
                    "yes" if r.loads_on_network else "NO",
                    "-" if r.ids_equal is None else ("yes" if r.ids_equal else "NO"),
                    "-" if mrd is None else (f"{mrd:.2e}" if math.isfinite(mrd) else "inf"),
                    r.verdict,
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = head + [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table
        ]
        for r in self.rows:
            lines += [f"  {Path(r.model).name} ({r.reading}): {_short(p)}" for p in r.problems]
        lines.append("ALL AGREE" if self.ok else "NOT ALL AGREE")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "texts": self.texts,
            "tolerance": self.tolerance,
            "versions": dict(self.versions),
            "rows": [r.to_dict() for r in self.rows],
        }


def _compare_one(
    model: str,
    reading: str,
    theirs: dict[str, Any],
    ours: dict[str, Any],
    texts: Sequence[str],
    tolerance: float,
) -> ModelParity:
    problems: list[str] = []
    net_err, our_err = theirs.get("load_error"), ours.get("load_error")
    if net_err:
        problems.append(f"transformers {NETWORK_TRANSFORMERS} cannot load it: {net_err}")
    if our_err:
        problems.append(f"our stack cannot load it: {our_err}")
    info = theirs.get("loading_info") or {}
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(key):
            problems.append(f"transformers {NETWORK_TRANSFORMERS} {key.replace('_', ' ')}: {info[key][:5]}")
    samples: list[SampleParity] = []
    if not net_err and not our_err:
        for i, (a, b) in enumerate(zip(theirs.get("samples") or [], ours.get("samples") or [], strict=False)):
            samples.append(
                SampleParity(
                    i,
                    a["ids"] == b["ids"],
                    bool(a["round_trip_ok"]),
                    bool(b["round_trip_ok"]),
                    a["loss"],
                    b["loss"],
                    relative_difference(a["loss"], b["loss"]),
                )
            )
        if len(samples) != len(texts):
            problems.append(f"{len(samples)} scored samples for {len(texts)} texts")
        for s in samples:
            where = f"text {s.index} ({_excerpt(texts[s.index])})"
            if not s.ids_equal:
                problems.append(f"{where}: token ids differ")
            if s.round_trip_network != s.round_trip_ours:
                problems.append(
                    f"{where}: round trip {'passes' if s.round_trip_network else 'fails'} on "
                    f"{NETWORK_TRANSFORMERS}, {'passes' if s.round_trip_ours else 'fails'} on ours"
                )
            elif s.relative_difference > tolerance:
                problems.append(
                    f"{where}: summed loss {s.loss_network} on {NETWORK_TRANSFORMERS} vs {s.loss_ours} on ours "
                    f"(relative {s.relative_difference:.2e} > {tolerance:g})"
                )
    return ModelParity(
        model, reading, net_err, our_err, theirs.get("config"), tuple(samples), tuple(problems), tolerance
    )


def _short(problem: str, lines: int = 3, chars: int = 400) -> str:
    """A problem for the table: its first lines (a 4.44 load error lists every tensor)."""
    head = "\n".join(problem.splitlines()[:lines])[:chars]
    return head if head == problem else head + " …"


def _excerpt(text: str, n: int = 24) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def compare(
    model_dirs: Sequence[str | os.PathLike],
    texts: Sequence[str],
    venv: str | os.PathLike | None = None,
    *,
    readings: Sequence[str] = ("network",),
    tolerance: float = REL_TOL,
    timeout: float = DEFAULT_TIMEOUT_S,
    patch_norm_divisor: bool = True,
) -> ParityReport:
    """Score every folder with transformers 4.44 (side venv) and with ours; one row per (folder, reading).

    A row agrees when both stacks load the folder, every text has identical ids and the same round-trip
    verdict, transformers 4.44 neither left weights uninitialised nor ignored any, and the summed losses
    agree within relative ``tolerance``. Raises :class:`NetworkVenvError` only when the 4.44 run fails
    as a whole (a folder that fails to load is a row). ``patch_norm_divisor=False`` runs 4.44 without
    the norm_divisor patch: a negative control only (a grown model must then differ).
    """
    for reading in readings:
        if reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    texts = list(texts)
    dirs = [str(d) for d in model_dirs]
    response = run_legacy(dirs, texts, venv, timeout=timeout, patch_norm_divisor=patch_norm_divisor)
    rows = []
    for model, theirs in zip(dirs, response["models"], strict=True):
        for reading in readings:
            rows.append(
                _compare_one(model, reading, theirs, our_scores(model, texts, reading), texts, tolerance)
            )
    return ParityReport(tuple(rows), len(texts), dict(response.get("versions") or {}), tolerance)
