"""Run one evaluation in a child process that a timeout really kills.

The parent writes a JSON request, starts ``python -m sn29_growth.eval.worker REQUEST RESPONSE`` in
its own process group, and waits. On timeout the whole group gets SIGKILL (a hung CUDA kernel or a
tokenizer loop cannot survive it) and the call reports a timeout. The child writes its response
atomically, so a half-written response is never read.

Failures of the host are told apart from the model's (:mod:`sn29_growth.eval.environment`): the child
answers ``environment_error`` for them, and it marks that it started (``RESPONSE.started``, written once
its imports are done and before any model file is read), so a worker that dies before the mark — a
broken install, no memory to start Python — is the host's failure too; so is a worker that cannot be
spawned at all. Those come back as :attr:`WorkerResult.environment`.

The process starts warm: a worker factory (:mod:`sn29_growth.eval.zygote`) has done the imports once
and forks one fresh child per request, which leaves the factory's process group for its own and runs
this module's :func:`main`; a timeout kills that child's group. A factory that cannot start or dies
is logged and the worker starts cold, as above.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json
from sn29_growth.eval.zygote import FactoryError, WorkerFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerResult:
    """``ok`` with the ``response``; else ``error``, and ``environment`` (the cause) when the host, not
    the model, failed."""

    ok: bool
    response: dict[str, Any] | None
    error: str
    seconds: float
    environment: str | None = None


STARTED_SUFFIX = ".started"


def run_in_worker(
    request: dict[str, Any],
    timeout_s: float,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> WorkerResult:
    """Run ``request`` in a fresh worker process; never raises for worker failures or timeouts.

    Without a ``command`` the process is forked by this process's warm worker factory
    (:mod:`sn29_growth.eval.zygote`); when the factory cannot start or dies, a cold
    ``python -m sn29_growth.eval.worker`` runs instead (logged)."""
    with tempfile.TemporaryDirectory(prefix="sn29-worker-") as tmp:
        req, resp = Path(tmp) / "request.json", Path(tmp) / "response.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        if command is None and factory_enabled():
            warm = _run_warm(req, resp, timeout_s, env)
            if warm is not None:
                return warm
        cmd = (command or [sys.executable, "-m", "sn29_growth.eval.worker"]) + [str(req), str(resp)]
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as e:
            cause = f"the evaluation worker could not be started: {type(e).__name__}: {e}"
            return WorkerResult(False, None, cause, 0.0, environment=cause)
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return _timed_out(timeout_s, time.monotonic() - t0)
        return _finished(proc.returncode, stderr, resp, time.monotonic() - t0)


def _timed_out(timeout_s: float, seconds: float) -> WorkerResult:
    return WorkerResult(False, None, f"evaluation timed out after {timeout_s:g} s", seconds)


def _finished(code: int, stderr: str | None, resp: Path, seconds: float) -> WorkerResult:
    """The result of a worker that exited with ``code``, its ``stderr`` and its response file."""
    if code != 0 or not resp.exists():
        tail = (stderr or "").strip().splitlines()[-3:]
        error = f"worker exited with code {code}: {' | '.join(tail)}"
        if not Path(str(resp) + STARTED_SUFFIX).exists():  # died before touching the model
            cause = f"the evaluation worker could not start ({error})"
            return WorkerResult(False, None, cause, seconds, environment=cause)
        return WorkerResult(False, None, error, seconds)
    try:
        response = json.loads(resp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return WorkerResult(False, None, f"unreadable worker response: {e}", seconds)
    return result_of(response, seconds)


# ------------------------------------------------------------------------------------------- warm factory

FACTORY_ENV = "SN29_WORKER_FACTORY"
"""``0`` turns the warm worker factory off: every worker starts cold."""

_FACTORY: WorkerFactory | None = None
_FACTORY_PID: int | None = None
_FACTORY_LOCK = threading.Lock()
_FACTORY_FAILED_AT: float | None = None
FACTORY_RETRY_S = 600.0
"""After the factory failed, workers start cold this long before a new factory is tried."""


IMPORT_TIME_PREFIXES = (
    "HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "TORCH", "PYTORCH", "CUDA", "OMP_", "MKL_",
    "PYTHON", "LD_", "XDG_", "SN29_", "PATH", "HOME",
)  # fmt: skip
"""Variables a library may read once, at import: a factory started under other values is restarted. The
rest of the environment is the caller's at each request (the child takes it over)."""


def import_environment(environment: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environment.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def factory_enabled() -> bool:
    return os.environ.get(FACTORY_ENV, "1") != "0"


def warm_factory() -> None:
    """Start this process's worker factory now (its imports then overlap the caller's own work)."""
    if not factory_enabled():
        return
    with _FACTORY_LOCK:
        _factory(dict(os.environ))


def _factory(environment: dict[str, str]) -> WorkerFactory | None:
    """This process's factory, (re)started when missing, dead, or started under another environment
    (a variable read at import, such as the Hub's offline mode, must be the caller's). Lock held."""
    global _FACTORY, _FACTORY_PID
    if _FACTORY is not None and os.getpid() == _FACTORY_PID:
        if _FACTORY.alive() and import_environment(_FACTORY.environment) == import_environment(environment):
            return _FACTORY
        if not _FACTORY.alive():
            log.warning("the warm worker factory died (code %s); starting a new one", _FACTORY.proc.poll())
        _FACTORY.close()
    _FACTORY, _FACTORY_PID = None, os.getpid()
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environment)
        _FACTORY = WorkerFactory()
    except OSError as e:
        log.warning("the warm worker factory could not be started (%s)", e)
        return None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    atexit.register(_FACTORY.close)
    return _FACTORY


def _run_warm(req: Path, resp: Path, timeout_s: float, env: dict[str, str] | None) -> WorkerResult | None:
    """The result of a child forked by the factory; None when the factory cannot serve (start cold)."""
    global _FACTORY, _FACTORY_FAILED_AT
    if _FACTORY_FAILED_AT is not None and time.monotonic() - _FACTORY_FAILED_AT < FACTORY_RETRY_S:
        return None
    if not _FACTORY_LOCK.acquire(blocking=False):  # another thread's model is in the factory
        return None
    try:
        factory = _factory({**os.environ, **(env or {})})
        if factory is None:
            return None
        stderr = Path(str(resp) + ".stderr")
        try:
            code, seconds = factory.run(req, resp, stderr, timeout_s, {**os.environ, **(env or {})})
        except FactoryError as e:
            log.warning("%s: workers start cold for %.0f s", e, FACTORY_RETRY_S)
            factory.close()
            _FACTORY, _FACTORY_FAILED_AT = None, time.monotonic()
            return None
        if code is None:
            return _timed_out(timeout_s, seconds)
        text = stderr.read_text(encoding="utf-8", errors="replace") if stderr.exists() else ""
        return _finished(code, text[-4000:], resp, seconds)
    finally:
        _FACTORY_LOCK.release()


def result_of(response: Any, seconds: float) -> WorkerResult:
    """The result a worker's ``response`` means: its ``environment_error`` is the host's failure."""
    cause = response.get("environment_error") if isinstance(response, dict) else None
    if cause:
        return WorkerResult(False, None, str(cause), seconds, environment=str(cause))
    return WorkerResult(True, response, "", seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log.error("worker %d did not die after SIGKILL", proc.pid)


def _limit_adopted_tokenizer() -> None:
    """A tokenizer worker handed over by the factory (started before this process's limit) gets the
    same memory limit, as one this process starts would inherit it; where that cannot be done it is
    dropped and this process starts its own."""
    from sn29_growth.network.exact import adopted_worker_pid, drop_adopted_worker

    pid = adopted_worker_pid()
    if pid is None:
        return
    try:
        import resource

        resource.prlimit(pid, resource.RLIMIT_DATA, resource.getrlimit(resource.RLIMIT_DATA))
    except (ImportError, AttributeError, OSError, ValueError):
        drop_adopted_worker()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m sn29_growth.eval.worker REQUEST.json RESPONSE.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import sn29_growth.eval.evaluate  # noqa: F401  (torch, transformers: a broken install fails before the mark)
    from sn29_growth.eval.memory import apply_memory_limit, request_memory_limit

    apply_memory_limit(request_memory_limit(request))  # before anything of the model is read
    _limit_adopted_tokenizer()
    Path(argv[1] + STARTED_SUFFIX).touch()
    try:
        from sn29_growth.eval.request import handle_request

        response = handle_request(request)
    except MemoryError:  # outside any one model's row: every model of the request is answered
        from sn29_growth.eval.memory import out_of_memory_reason

        reason = out_of_memory_reason()
        response = {"models": {m["key"]: {"rejection": reason} for m in request["models"]}}
    atomic_write_json(argv[1], response, indent=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
