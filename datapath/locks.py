"""An exclusive lock for every thread of every process that opens one file,
with a bounded wait.

dockerd's plugin client has no timeout: a request that waits forever for a
lock hangs ``docker run`` with it. So every wait here ends, after
``timeout`` seconds at most, in ``LockTimeout`` naming the lock and the wait,
which the app answers with a 503.

The threads of a process queue on a ``threading.Lock`` (a fair wait with a
timeout, no polling); the processes (gunicorn workers, the start-up
reconcile) on an ``flock`` of the file. ``flock`` cannot time out, so a
contended one is retried without blocking, with short growing pauses: it is
contended only between workers, or by a process that should not hold it.
Each process opens the file once (flock does not exclude holders of the same
open file, which a forked worker would share with its parent), with mode
0600: a lock file other users can open is a lock they can hold.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from typing import Iterator

from .errors import DatapathError

# How long a request waits for a lock before it gives up (setting
# lock_timeout): far longer than any one request's work under a lock, far
# shorter than leaving `docker run` hanging.
DEFAULT_TIMEOUT_S = 10.0
# Pauses between tries of a contended flock: from 1 ms, doubling, up to 50 ms.
_FIRST_PAUSE_S = 0.001
_LONGEST_PAUSE_S = 0.05


class LockTimeout(DatapathError):
    """A lock stayed held by someone else for the whole bounded wait."""

    def __init__(self, lock: str, waited: float):
        self.lock = lock
        self.waited = waited
        super().__init__(f"wait for {lock}", f"still held by another request or process after {waited:.1f} s")


class FileLock:
    def __init__(self, path: str, name: str, timeout: float):
        self.path = path
        self.name = f"{name} ({path})"
        self.timeout = timeout
        self._threads = threading.Lock()
        self._file: tuple[int, int] | None = None  # (pid, fd)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        start = time.monotonic()
        deadline = start + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise LockTimeout(self.name, time.monotonic() - start)
        try:
            fd = self._fd()
            if not _flock_until(fd, deadline):
                raise LockTimeout(self.name, time.monotonic() - start)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _fd(self) -> int:
        """This process's open file of the lock (called with ``_threads`` held)."""
        if self._file is None or self._file[0] != os.getpid():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._file = (os.getpid(), fd)
        return self._file[1]


def _flock_until(fd: int, deadline: float) -> bool:
    """Take an exclusive flock of ``fd`` before ``deadline``; False if it
    stayed held by another open file until then."""
    pause = _FIRST_PAUSE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE_S)
