"""One GPU benchmark run: every section in a time budget, one JSON of results.

    python scripts/bench_gpu.py --device cuda --out gpu-results.json        # one H200, < 8 minutes
    python scripts/bench_gpu.py --tiny --device cpu --out /tmp/tiny.json    # tiny shapes, proves it runs

Sections are modules in scripts/ named ``bench_gpu_<section>.py`` (``eval``, ``pipeline``, ``train``).
Each exposes

    run(*, tiny: bool, device: str, work_dir: pathlib.Path, budget_s: float) -> dict

returning JSON-serialisable results with a ``"rows"`` list of
``{"name", "baseline", "baseline_value", "value", "ratio", "unit", "note"}`` — a measurement beside the
baseline it was measured against in the same run (``ratio = value / baseline_value``). ``budget_s`` is the
section's share of what is left of ``--budget-s`` (sections left share it equally, so time one section
does not use goes to the next); a section keeps within it by measuring less. ``work_dir`` is an empty
folder of its own. A section module that is absent is recorded as ``{"status": "missing"}``, one that
raises as ``{"status": "error", "error": ...}``, and the run goes on. The JSON is rewritten (atomically)
after every section, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shlex
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

SECTIONS = ("eval", "pipeline", "train")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def device_info(device: str) -> dict:
    import os
    import platform

    import torch

    info = {
        "device": device,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "cuda": torch.version.cuda,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
        info["device_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        info["device_name"] = f"cpu ({os.cpu_count()} cores)"
    return info


def run_section(name: str, *, tiny: bool, device: str, work_dir: Path, budget_s: float) -> dict:
    """One section's results, with its status and wall time; never raises."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"bench_gpu_{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench_gpu_{name}":
            return {"status": "error", "error": repr(exc), "wall_s": round(time.perf_counter() - t0, 2)}
        return {"status": "missing", "error": f"scripts/bench_gpu_{name}.py not found", "wall_s": 0.0}
    try:
        result = module.run(tiny=tiny, device=device, work_dir=work_dir, budget_s=budget_s)
        if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
            raise TypeError(f"run() must return a dict with a 'rows' list, got {type(result).__name__}")
        result = {"status": "ok", **result}
    except Exception as exc:  # a failing section costs only its own results
        result = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()[-4000:]}
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


def _free(device: str) -> None:
    gc.collect()
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_all(
    sections: list[str], *, tiny: bool, device: str, budget_s: float, out: Path, command: str
) -> dict:
    from sn29_growth.atomic import atomic_write_json

    results = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tiny": tiny,
        "budget_s": budget_s,
        "machine": device_info(device),
        "sections": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for k, name in enumerate(sections):
            left = budget_s - (time.perf_counter() - started)
            share = max(0.0, left) / (len(sections) - k)
            print(f"[bench_gpu] section {name}: budget {share:.0f} s", flush=True)
            work = Path(tmp) / name
            work.mkdir()
            results["sections"][name] = run_section(
                name, tiny=tiny, device=device, work_dir=work, budget_s=share
            )
            status = results["sections"][name]["status"]
            print(
                f"[bench_gpu] section {name}: {status} in {results['sections'][name].get('wall_s')} s",
                flush=True,
            )
            _free(device)
            results["wall_s"] = round(time.perf_counter() - started, 2)
            atomic_write_json(out, results)
    return results


def format_rows(results: dict) -> str:
    lines = []
    for name, section in results["sections"].items():
        if section["status"] != "ok":
            lines.append(f"{name}: {section['status']} {section.get('error', '')}")
            continue
        for row in section["rows"]:
            ratio = row.get("ratio")
            ratio_text = f"{ratio:.2f}x" if isinstance(ratio, int | float) else "-"
            lines.append(
                f"{name}: {row['name']}: {row['value']} {row.get('unit', '')} vs {row['baseline']} "
                f"{row['baseline_value']} ({ratio_text}) {row.get('note', '')}".rstrip()
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes (runs on a CPU in well under a minute)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--out", type=Path, default=Path("gpu-results.json"))
    p.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)}"
    )
    p.add_argument("--budget-s", type=float, default=480.0, help="time for all sections together (seconds)")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        p.error(
            f"--sections: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}"
        )
    if args.budget_s <= 0:
        p.error("--budget-s must be > 0")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    command = " ".join(["python scripts/bench_gpu.py", *map(shlex.quote, argv)])
    results = run_all(
        sections, tiny=args.tiny, device=device, budget_s=args.budget_s, out=args.out, command=command
    )
    print(format_rows(results))
    print(f"[bench_gpu] wrote {args.out} ({results['wall_s']} s)")
    return 0 if all(s["status"] in ("ok", "missing") for s in results["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
