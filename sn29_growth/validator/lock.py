"""One validator per model directory: an exclusive ``flock`` on ``MODEL_DIR/validator.lock``.

Two validators on one ``--model-dir`` would overwrite each other's state, and the second one's start-up
would delete the first one's in-flight state write. The lock is a ``flock(LOCK_EX | LOCK_NB)`` on a file
descriptor held for the life of the process: the kernel releases it when the descriptor is closed, so
it is released on a normal exit, an exception, and after a crash or ``kill -9`` alike; it is never stale
and there is nothing to clean up. The file is never deleted (deleting a lock file lets two processes
lock two different inodes); it only carries the holder's pid, host and start time for the refusal
message.

``flock`` locks belong to an open file description, so a second :class:`ValidatorLock` on the same
directory conflicts even inside one process. The descriptor is not inherited by spawned processes
(``O_CLOEXEC``; a ``fork`` without ``exec`` would share it until the child exits).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK_NAME = "validator.lock"


class ValidatorLocked(RuntimeError):
    """Another process holds the model directory's lock; the message says who and what to do."""

    def __init__(self, model_dir: Path, holder: str) -> None:
        self.model_dir = model_dir
        self.holder = holder
        super().__init__(
            f"another validator ({holder}) is using {model_dir}; stop it or choose another --model-dir"
        )


class ValidatorLock:
    """The exclusive lock of one model directory, as a context manager.

    ``with ValidatorLock(model_dir):`` raises :class:`ValidatorLocked` if another holder exists, else
    holds the lock until the block ends (or the process dies).
    """

    def __init__(self, model_dir: str | os.PathLike) -> None:
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ValidatorLock:
        """Take the lock without waiting; raise :class:`ValidatorLocked` naming the holder if it is taken."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this ValidatorLock")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ValidatorLocked(self.model_dir, describe_holder(self.path)) from None
            raise
        self._fd = fd
        _write_holder(fd)
        return self

    def release(self) -> None:
        """Clear the holder record and drop the lock (closing the descriptor is what releases it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # still locked here: nobody reads a half-cleared record
        os.close(fd)

    def __enter__(self) -> ValidatorLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _write_holder(fd: int) -> None:
    """Record this process in the (locked) file, in place: replacing the file would change the locked inode."""
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
    }
    data = (json.dumps(record) + "\n").encode("utf-8")
    with contextlib.suppress(OSError):  # the record is for messages only; the flock is the lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def describe_holder(path: str | os.PathLike) -> str:
    """``pid 1234 on host, started ...`` from a lock file; a record not yet written reads as unknown."""
    for attempt in range(3):  # the holder may have the lock but not yet its record
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and "pid" in record:
            host = f" on {record['host']}" if record.get("host") else ""
            started = f", started {record['started']}" if record.get("started") else ""
            return f"pid {record['pid']}{host}{started}"
        time.sleep(0.05 * (attempt + 1))
    return "pid unknown"
