"""Tokenizers that run on the network's own stack: exact by construction.

Live SN29 validators tokenize with transformers 4.44.0 / tokenizers 0.19.1, and transformers 5 — what
this package runs — rebuilds some tokenizer classes' pipelines differently (cl100k declared
``GPT2TokenizerFast`` gets GPT-2's regex; a Llama tokenizer with ``add_bos_token: false`` still gets
``<s>``). So every tokenization of this package that decides a score or trains a model runs in one
long-lived worker process on that stack (:mod:`sn29_growth.network.tok44`, in the side venv
:data:`~sn29_growth.network.sidevenv.TOKENIZER_STACK`, built by the set-up command or on first use).

:func:`load_network_tokenizer` returns a :class:`NetworkTokenizer`: a handle on a tokenizer loaded in
the worker, with what the rest of the package reads from a tokenizer (``eos_token_id``,
``bos_token_id``, ``len``, the largest id, a fingerprint that includes the stack's versions), calling it
on a list of texts encodes them (``tokenizer(texts)["input_ids"]``, as training does), and
:meth:`NetworkTokenizer.apply_rule` runs the per-sample rule of the reference validator in the worker.

The worker is started on first use, once per process (a forked child starts its own), and restarted
when it died; a tokenizer that was loaded in a dead worker is reloaded from its source. It ends with
its parent (end of input), and sits in its parent's process group, so a killed evaluation worker takes
it along. A warm worker factory (:mod:`sn29_growth.eval.zygote`) keeps one started ahead and hands it
to the child it forks (:func:`adopt_worker`); the factory kills it when that child ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sn29_growth.network import sidevenv
from sn29_growth.network.config import NETWORK_TOKENIZERS, NETWORK_TRANSFORMERS
from sn29_growth.network.sidevenv import TOKENIZER_STACK, NetworkVenvError

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("tok44.py")
CHUNK = 256
"""Texts per request: bounds one line of the protocol (256 samples of 4096 tokens ≈ 6 MB of JSON)."""
STACK = f"transformers {NETWORK_TRANSFORMERS} / tokenizers {NETWORK_TOKENIZERS}"
"""How tables name the exact engine."""


class TokenizerWorkerError(RuntimeError):
    """The tokenizer worker failed a request (the message is its error) or died."""


HUB_ENVIRONMENT = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HF_HUB_ETAG_TIMEOUT",
    "HF_HUB_DOWNLOAD_TIMEOUT",
)
"""Variables huggingface_hub reads once, at import: a worker started under other values is restarted, so a
Hub tokenizer name resolves where this process would resolve it (cache, endpoint, offline mode)."""


def _hub_environment() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in HUB_ENVIRONMENT)


class TokenizerWorker:
    """One worker process on the network's tokenizer stack; requests are serialised by a lock."""

    def __init__(self, venv: str | os.PathLike | None = None) -> None:
        self._venv = venv
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._environment: tuple[str | None, ...] | None = None
        self.generation = 0  # bumped at every (re)start: handles of an older generation are gone
        self.versions: dict[str, str] = {}

    def _start(self) -> None:
        venv = sidevenv.ensure(TOKENIZER_STACK, self._venv or sidevenv.tokenizer_venv_path())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self._proc = subprocess.Popen(
            [str(sidevenv.venv_python(venv)), "-I", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="surrogatepass",
            bufsize=1 << 16,
        )
        self._environment = _hub_environment()
        self.generation += 1
        self.versions = self._exchange({"op": "versions"}, None)["versions"]

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure_current(self) -> None:
        """Stop a worker started under other Hub settings (the next call starts a fresh one)."""
        with self._lock:
            if self.alive() and self._environment != _hub_environment():
                self.close()

    def _exchange(self, request: dict, timeout: float | None) -> dict:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request, ensure_ascii=True) + "\n")
            proc.stdin.flush()
            if timeout is not None:
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                if not ready:
                    self.close()
                    raise TokenizerWorkerError(f"the tokenizer worker did not answer within {timeout:.0f}s")
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            self.close()
            raise TokenizerWorkerError(f"the tokenizer worker died ({e})") from None
        if not line:
            code = proc.poll()
            self.close()
            raise TokenizerWorkerError(f"the tokenizer worker died (exit {code})")
        response = json.loads(line)
        if not response.get("ok"):
            raise TokenizerWorkerError(str(response.get("error")))
        return response

    def call(self, request: dict, timeout: float | None = None) -> dict:
        """Send one request (starting the worker if needed) and return its response."""
        with self._lock:
            if self.alive() and self._environment != _hub_environment():
                self.close()  # the Hub settings changed: a fresh worker reads them
            if not self.alive():
                self._start()
            return self._exchange(request, timeout)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()


_WORKER: TokenizerWorker | None = None
_WORKER_PID: int | None = None
_WORKER_LOCK = threading.Lock()


class _ForeignProcess:
    """A worker process this process did not start (its parent started it and forked this one): the
    pipes are ours, the exit status is not, so liveness is read from ``/proc`` (a zombie is dead)."""

    def __init__(self, pid: int, stdin, stdout) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                with open(f"/proc/{self.pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state in (b"Z", b"X"):
                    self.returncode = -1
            except (OSError, IndexError):
                self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.01)
        return -1

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)


def adopt_worker(worker: TokenizerWorker) -> None:
    """Make ``worker`` — started by this process's parent before it forked this one — this process's
    :func:`shared_worker`."""
    global _WORKER, _WORKER_PID
    proc = worker._proc
    assert proc is not None
    worker._proc = _ForeignProcess(proc.pid, proc.stdin, proc.stdout)  # type: ignore[assignment]
    worker._lock = threading.Lock()
    with _WORKER_LOCK:
        _WORKER, _WORKER_PID = worker, os.getpid()


def adopted_worker_pid() -> int | None:
    """The pid of this process's adopted tokenizer worker, when it has one that still runs."""
    worker = _WORKER
    if worker is None or os.getpid() != _WORKER_PID or not isinstance(worker._proc, _ForeignProcess):
        return None
    return worker._proc.pid if worker.alive() else None


def drop_adopted_worker() -> None:
    """Stop using an adopted worker (the next call starts this process's own)."""
    worker = _WORKER
    if worker is not None and isinstance(worker._proc, _ForeignProcess):
        worker._proc.kill()
        worker.close()


def shared_worker() -> TokenizerWorker:
    """This process's tokenizer worker (a forked child gets a new one)."""
    global _WORKER, _WORKER_PID
    with _WORKER_LOCK:
        if _WORKER is None or os.getpid() != _WORKER_PID:
            _WORKER, _WORKER_PID = TokenizerWorker(), os.getpid()
            atexit.register(_WORKER.close)
        return _WORKER


def stack_available() -> str | None:
    """None when the network's tokenizer stack can run here; else why not (one line)."""
    try:
        sidevenv.ensure(TOKENIZER_STACK, sidevenv.tokenizer_venv_path())
    except (NetworkVenvError, OSError) as e:
        return str(e).splitlines()[0]
    return None


class NetworkTokenizer:
    """A tokenizer loaded on the network's stack (see the module docstring)."""

    exact = True
    engine = STACK

    def __init__(self, source: str | os.PathLike, worker: TokenizerWorker | None = None) -> None:
        self.source = os.fspath(source)
        self._given_worker = worker
        self._handle: int | None = None
        self._loaded_in: tuple[TokenizerWorker, int] | None = None
        self.info: dict[str, Any] = {}
        self.staged: Any = None  # what keeps a staged source folder alive (see eval.tokenizers)
        self._load()

    @property
    def _worker(self) -> TokenizerWorker:
        """The worker given, else this process's (so a handle used in a forked child reloads there)."""
        return self._given_worker or shared_worker()

    def _load(self) -> None:
        worker = self._worker
        response = worker.call({"op": "load", "source": self.source})
        self._handle, self._loaded_in, self.info = (
            response["handle"],
            (worker, worker.generation),
            response["info"],
        )

    def _call(self, request: dict, timeout: float | None = None) -> dict:
        worker = self._worker
        worker.ensure_current()
        loaded = self._loaded_in
        stale = loaded is None or loaded[0] is not worker or loaded[1] != worker.generation
        if stale or not worker.alive():
            self._load()
        return worker.call({**request, "handle": self._handle}, timeout)

    # ---- what the package reads from a tokenizer
    @property
    def eos_token_id(self) -> int | None:
        return self.info.get("eos_token_id")

    @property
    def bos_token_id(self) -> int | None:
        return self.info.get("bos_token_id")

    @property
    def class_name(self) -> str:
        return str(self.info.get("class"))

    @property
    def fingerprint(self) -> str:
        return str(self.info["fingerprint"])

    @property
    def max_id(self) -> int:
        return int(self.info["max_id"])

    def __len__(self) -> int:
        return int(self.info["len"])

    def __call__(self, texts: list[str] | str, **kwargs: Any) -> dict[str, Any]:
        """``{"input_ids": ...}`` with the default special tokens, as 4.44 encodes (no truncation)."""
        if kwargs:
            raise TypeError(f"NetworkTokenizer encodes with the defaults only; got {sorted(kwargs)}")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        ids = []
        for start in range(0, len(batch), CHUNK):
            ids += self._call({"op": "encode", "texts": batch[start : start + CHUNK]})["ids"]
        return {"input_ids": ids[0] if single else ids}

    def decode(self, ids) -> str:
        return self._call({"op": "decode", "ids": [[int(i) for i in ids]]})["texts"][0]

    def apply_rule(
        self, texts: list[str], cap_sample_len: int, max_sequence_len: int, allow_bos: bool
    ) -> list[tuple[tuple[int, ...] | None, bool, str | None]]:
        """The reference's per-sample rule in the worker: per text (ids or None, capped, failure)."""
        started = time.perf_counter()
        texts, items = list(texts), []
        for start in range(0, len(texts), CHUNK):
            request = {
                "op": "rule",
                "texts": texts[start : start + CHUNK],
                "cap_sample_len": cap_sample_len,
                "max_sequence_len": max_sequence_len,
                "allow_bos": allow_bos,
            }
            items += self._call(request)["items"]
        log.debug("tokenized %d texts on %s in %.2fs", len(texts), STACK, time.perf_counter() - started)
        return [
            (None if ids is None else tuple(ids), bool(capped), failure) for ids, capped, failure in items
        ]

    def __repr__(self) -> str:
        return f"NetworkTokenizer({self.source!r}, {self.class_name}, {STACK})"


def load_network_tokenizer(
    source: str | os.PathLike, worker: TokenizerWorker | None = None
) -> NetworkTokenizer:
    """``AutoTokenizer.from_pretrained(source)`` on the network's stack (a folder or a Hub name; offline
    from the local Hub cache). Raises :class:`TokenizerWorkerError` with 4.44's own error when it does
    not load there, and :class:`~sn29_growth.network.sidevenv.NetworkVenvError` when the stack cannot
    be set up."""
    return NetworkTokenizer(source, worker)
