"""A warm factory of evaluation workers: one process does the heavy imports once, then forks one fresh
child per model.

``python -m sn29_growth.eval.zygote`` imports torch, transformers and :mod:`sn29_growth.eval.evaluate`
(touching no CUDA device: a CUDA context does not survive a fork), answers ``{"ready": pid}`` on its
stdout and then serves one request at a time, one JSON line each::

    → {"request": REQ, "response": RESP, "stderr": ERR, "env": {NAME: VALUE}}
    ← {"pid": CHILD}                 the child is forked
    ← {"pid": CHILD, "code": CODE}   the child has exited (CODE: its exit code, -N for signal N)

The factory also keeps a tokenizer worker (:mod:`sn29_growth.network.exact`) started ahead: each child
adopts the one ready at its fork (and gives it its own memory limit), and the factory kills it when
that child has ended — a timeout's kill of the child's group therefore ends it too — then starts the
next one while the child runs.

Each child takes over the caller's environment ``env``, leaves the factory's session (``setsid``: its own process group, which a timeout kills with
everything it started — its tokenizer worker too), sends its stderr to ERR, and runs exactly what a
cold ``python -m sn29_growth.eval.worker REQ RESP`` runs (:func:`sn29_growth.eval.worker.main`): the
memory limit applied in the child, the ``.started`` mark, the response written atomically.

The factory exits when its stdin closes (its parent is gone). The parent side is
:class:`WorkerFactory`; :func:`sn29_growth.eval.worker.run_in_worker` uses it and falls back to a cold
start when the factory cannot start or dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
"""How long the factory may take to import everything before it counts as broken."""
FORK_TIMEOUT_S = 30.0
"""How long a fork may take to be acknowledged."""


class FactoryError(RuntimeError):
    """The factory is not usable (it did not start, died, or answered nonsense): start cold instead."""


class WorkerFactory:
    """The parent's handle on one factory process (not thread-safe: the caller serialises)."""

    def __init__(self, command: list[str] | None = None) -> None:
        self._command = command or [sys.executable, "-m", "sn29_growth.eval.zygote"]
        self.environment = dict(os.environ)  # what the factory (and every child) was started under
        self.proc = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.environment,
            start_new_session=True,  # a Ctrl-C of the validator's terminal is the validator's to handle
        )
        self._ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, timeout_s: float) -> dict[str, Any] | None:
        """The factory's next line, None when ``timeout_s`` passed first; FactoryError when it is gone."""
        stdout = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], max(0.0, timeout_s))
        if not ready:
            return None
        line = stdout.readline()
        if not line:
            raise FactoryError(f"the worker factory exited (code {self.proc.poll()})")
        try:
            message = json.loads(line)
        except ValueError:
            raise FactoryError(f"the worker factory answered {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise FactoryError(f"the worker factory answered {line[:80]!r}")
        return message

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        if self._ready:
            return
        message = self._read(timeout_s)
        if message is None or "ready" not in message:
            raise FactoryError(f"the worker factory did not start ({message or 'no answer'})")
        self._ready = True

    def run(
        self, request: Path, response: Path, stderr: Path, timeout_s: float, env: dict[str, str]
    ) -> tuple[int | None, float]:
        """Fork a child for ``request`` under ``env``; its exit code (None: killed on timeout) and wall
        seconds. Raises FactoryError when the factory cannot serve (nothing of the request ran)."""
        self.wait_ready()
        message = {"request": str(request), "response": str(response), "stderr": str(stderr), "env": env}
        line = json.dumps(message)
        t0 = time.monotonic()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise FactoryError(f"the worker factory is gone ({e})") from None
        forked = self._read(FORK_TIMEOUT_S)
        if forked is None or not isinstance(forked.get("pid"), int):
            raise FactoryError(f"the worker factory did not fork ({forked or 'no answer'})")
        pid = forked["pid"]
        done = self._read(timeout_s - (time.monotonic() - t0))
        if done is None:  # the timeout: the child's whole group (its tokenizer worker too)
            kill_child(pid)
            done = self._read(10.0)
            if done is None:
                raise FactoryError(f"the worker factory did not reap child {pid}")
            return None, time.monotonic() - t0
        code = done.get("code")
        if done.get("pid") != pid or not isinstance(code, int):
            raise FactoryError(f"the worker factory answered {done!r}")
        return code, time.monotonic() - t0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def kill_child(pid: int) -> None:
    """SIGKILL a forked child's process group, and the child itself should it not have left the
    factory's group yet."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- factory side


def _child(message: dict[str, Any], spare) -> int:
    """In the forked child: detach, redirect, adopt the spare tokenizer worker, run the worker's main."""
    os.setsid()
    os.environ.clear()
    os.environ.update(message.get("env") or {})
    if spare is not None:
        from sn29_growth.network.exact import adopt_worker

        adopt_worker(spare)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(message["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    from sn29_growth.eval.worker import main

    return main([message["request"], message["response"]])


def _write(out, message: dict[str, Any]) -> None:
    out.write((json.dumps(message) + "\n").encode())
    out.flush()


def preload() -> None:
    """Import what every worker imports, the lazily imported model classes included; no device is touched."""
    import transformers

    import sn29_growth.eval.evaluate  # noqa: F401  (torch, transformers)
    import sn29_growth.eval.request  # noqa: F401
    import sn29_growth.io.device_load  # noqa: F401
    import sn29_growth.network.config  # noqa: F401
    from sn29_growth import loading

    for model_type in ("llama", "phi3"):
        loading.ensure_patched(model_type)
    for name in ("AutoConfig", "AutoModelForCausalLM", "PreTrainedTokenizerFast"):
        getattr(transformers, name)


def _start_spare():
    """A tokenizer worker started ahead for the next child; None where none can start, or when
    ``$SN29_TOKENIZER_SPARE`` is ``0``."""
    from sn29_growth.network.exact import TokenizerWorker

    if os.environ.get("SN29_TOKENIZER_SPARE", "1") == "0":
        return None

    worker = TokenizerWorker()
    try:
        worker.call({"op": "versions"})
    except Exception as e:  # the child then starts its own, and meets the same problem there
        print(f"no spare tokenizer worker: {type(e).__name__}: {e}", file=sys.stderr)
        worker.close()
        return None
    return worker


def _release(spare) -> subprocess.Popen | None:
    """Close the factory's ends of a spare handed to a child; the process, to kill once the child ends."""
    if spare is None:
        return None
    proc, spare._proc = spare._proc, None
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            pipe.close()
    return proc


def serve() -> int:
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    commands = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # nothing else reads the protocol's pipes, nor writes to them
    os.dup2(null, 1)
    os.close(null)
    preload()
    spare = _start_spare()
    _write(out, {"ready": os.getpid()})
    for line in commands:
        try:
            message = json.loads(line)
        except ValueError:
            return 2
        try:
            pid = os.fork()
        except OSError as e:
            _write(out, {"error": f"fork failed: {e}"})
            continue
        if pid == 0:
            code = 1  # as an uncaught exception ends a cold python
            try:
                out.close()
                commands.close()
                code = _child(message, spare)
            except BaseException:  # never back into the factory's loop
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os._exit(code)
        _write(out, {"pid": pid})
        adopted = _release(spare)
        spare = _start_spare()  # while the child runs
        _, status = os.waitpid(pid, 0)
        if adopted is not None:  # the child's tokenizer worker ends with it
            with contextlib.suppress(ProcessLookupError):
                adopted.kill()
            adopted.wait()
        _write(out, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    sys.exit(serve())
