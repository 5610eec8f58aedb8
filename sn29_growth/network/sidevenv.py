"""Side venvs that hold the network's own stack (transformers 4.44.0 / tokenizers 0.19.1), built once.

Two are used: the *tokenizer stack* (transformers + tokenizers, no torch: every tokenization runs
there, :mod:`sn29_growth.network.exact`) and the *parity stack* (the same plus torch, to score whole
model folders as the network does: :mod:`sn29_growth.network.parity`). A :class:`SideVenv` says what
one holds and where it lives; :func:`ensure` builds it on first use (``python -m venv``, then each
install step with pip), probes that exactly the wanted versions import, and writes a stamp so that
later calls return at once. Concurrent callers build it once (a lock file beside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sn29_growth.network.config import NETWORK_TOKENIZERS, NETWORK_TRANSFORMERS

STAMP_FILE = ".sn29-network-venv.json"


class NetworkVenvError(RuntimeError):
    """A side venv could not be built, or a run in it failed as a whole; the message says why."""


@dataclass(frozen=True)
class SideVenv:
    """What a side venv holds: pip install ``steps`` (in order), the ``versions`` that must then import
    (module → exact version, or a prefix ending in ``*``), where it lives by default and the variable
    that overrides it."""

    name: str
    env_var: str
    default_path: str
    steps: tuple[tuple[str, ...], ...]
    versions: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not self.steps or not all(self.steps):
            raise ValueError(f"{self.name}: steps must be non-empty pip requirement lists")
        if not self.versions:
            raise ValueError(f"{self.name}: versions must name at least one module")

    @property
    def stamp(self) -> dict:
        return {"steps": [list(s) for s in self.steps], "versions": dict(self.versions)}

    @property
    def probe(self) -> str:
        modules = ", ".join(m for m, _ in self.versions)
        pairs = ", ".join(f"{m!r}: {m}.__version__" for m, _ in self.versions)
        return f"import json, {modules}; print(json.dumps({{{pairs}}}))"

    def matches(self, found: dict[str, str] | None) -> bool:
        if not found:
            return False
        for module, want in self.versions:
            have = str(found.get(module, ""))
            ok = have.startswith(want[:-1]) if want.endswith("*") else have == want
            if not ok:
                return False
        return True


def _say(message: str) -> None:
    print(f"[network-venv] {message}", file=sys.stderr, flush=True)


def venv_python(venv: str | os.PathLike) -> Path:
    return Path(venv) / "bin" / "python"


def resolve(spec: SideVenv, path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$<spec.env_var>``, else the spec's default."""
    chosen = path or os.environ.get(spec.env_var) or spec.default_path
    return Path(chosen).expanduser().absolute()


def probe(spec: SideVenv, venv: str | os.PathLike) -> dict[str, str] | None:
    """The versions of the spec's modules in ``venv``, or None when they do not import."""
    python = venv_python(venv)
    if not python.is_file():
        return None
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", spec.probe], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def stamp_ok(spec: SideVenv, venv: Path) -> bool:
    try:
        stamp = json.loads((venv / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and {k: stamp.get(k) for k in spec.stamp} == spec.stamp
        and venv_python(venv).is_file()
    )


def _write_stamp(spec: SideVenv, venv: Path, versions: dict[str, str], say) -> None:
    try:
        (venv / STAMP_FILE).write_text(
            json.dumps({**spec.stamp, "installed": versions}, indent=2), encoding="utf-8"
        )
    except OSError as e:  # a read-only venv that already holds the stack is still usable
        say(f"cannot write the stamp {venv / STAMP_FILE} ({e}); the next call probes again")


@contextlib.contextmanager
def _lock(venv: Path):
    import fcntl

    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_step(command: list[str], say: Callable[[str], None], timeout: float) -> None:
    say("$ " + shlex.join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise NetworkVenvError(f"timed out after {timeout:.0f}s: {' '.join(command)}") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise NetworkVenvError(f"failed (exit {done.returncode}): {shlex.join(command)}\n{tail}")


def versions_text(versions: dict[str, str] | None) -> str:
    if not versions:
        return "the stack does not import"
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def ensure(
    spec: SideVenv,
    path: str | os.PathLike | None = None,
    *,
    say: Callable[[str], None] | None = _say,
    timeout: float = 1800.0,
) -> Path:
    """The side venv of ``spec`` at :func:`resolve`'s place, built on first use; prints what it does
    (stderr). An existing venv that already holds exactly the stack is accepted and stamped. Raises
    :class:`NetworkVenvError` when it cannot be built."""
    say = say or (lambda _message: None)
    venv = resolve(spec, path)
    if stamp_ok(spec, venv):
        return venv
    with _lock(venv):
        if stamp_ok(spec, venv):  # built by a concurrent caller while we waited
            return venv
        versions = probe(spec, venv)
        if spec.matches(versions):
            say(f"using the existing venv {venv} ({versions_text(versions)})")
            _write_stamp(spec, venv, versions, say)
            return venv
        started = time.perf_counter()
        if venv_python(venv).is_file():
            say(f"{venv} exists but lacks {spec.name} ({versions_text(versions)}); installing into it")
        else:
            say(f"building {spec.name} (transformers {NETWORK_TRANSFORMERS}) in {venv}")
            _run_step([sys.executable, "-m", "venv", str(venv)], say, timeout)
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        for step in spec.steps:
            _run_step([*pip, *step], say, timeout)
        versions = probe(spec, venv)
        if not spec.matches(versions):
            raise NetworkVenvError(
                f"{venv}: after installing, the stack is {versions_text(versions)}; expected "
                f"{', '.join(f'{m} {v}' for m, v in spec.versions)}"
            )
        _write_stamp(spec, venv, versions, say)
        say(f"ready in {time.perf_counter() - started:.0f}s: {versions_text(versions)}")
        return venv


TOKENIZER_STACK = SideVenv(
    name="the network's tokenizer stack",
    env_var="SN29_TOKENIZER_VENV",
    default_path="~/.cache/sn29-growth/network-tokenizers-4.44",
    steps=((f"transformers=={NETWORK_TRANSFORMERS}", f"tokenizers=={NETWORK_TOKENIZERS}", "numpy<2.3"),),
    versions=(("transformers", NETWORK_TRANSFORMERS), ("tokenizers", NETWORK_TOKENIZERS)),
)
"""transformers 4.44.0 + tokenizers 0.19.1 without torch: where every tokenization runs."""


def tokenizer_venv_path() -> Path:
    """Where the tokenizer stack lives: ``$SN29_TOKENIZER_VENV``; else ``<this Python's venv>/
    sn29-network-tokenizers`` when the set-up command built it there; else the per-user cache."""
    if os.environ.get(TOKENIZER_STACK.env_var):
        return resolve(TOKENIZER_STACK)
    beside = Path(sys.prefix) / "sn29-network-tokenizers"
    if sys.prefix != sys.base_prefix and venv_python(beside).is_file():
        return beside.absolute()
    return resolve(TOKENIZER_STACK)


def main(argv: list[str] | None = None) -> int:
    """``python -m sn29_growth.network.sidevenv [PATH]``: build (or check) the tokenizer stack at PATH,
    else beside this Python's venv (``<venv>/sn29-network-tokenizers``) — what the set-up command runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sn29_growth.network.sidevenv", description=main.__doc__)
    parser.add_argument("path", nargs="?", help="where to build it (default: beside this venv)")
    args = parser.parse_args(argv)
    path = args.path or os.environ.get(TOKENIZER_STACK.env_var)
    if not path:
        path = Path(sys.prefix) / "sn29-network-tokenizers" if sys.prefix != sys.base_prefix else None
    try:
        venv = ensure(TOKENIZER_STACK, path)
    except NetworkVenvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{TOKENIZER_STACK.name}: {venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
