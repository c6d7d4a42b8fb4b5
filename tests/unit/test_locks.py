"""datapath.locks: every wait ends, in LockTimeout naming the lock and the
wait, whether the holder is another thread or another open file (process)."""
from __future__ import annotations

import fcntl
import os
import stat
import threading
import time

import pytest

from datapath.locks import FileLock, LockTimeout

TIMEOUT = 0.3
SLACK = 0.5  # scheduling on a loaded machine


@pytest.fixture
def lock(tmp_path) -> FileLock:
    return FileLock(str(tmp_path / "x.lock"), "the test lock", TIMEOUT)


def _refused(lock: FileLock) -> LockTimeout:
    begin = time.monotonic()
    with pytest.raises(LockTimeout) as refused:
        with lock.held():
            pass
    assert TIMEOUT <= time.monotonic() - begin < TIMEOUT + SLACK
    assert "the test lock" in str(refused.value) and lock.path in str(refused.value)
    assert f"after {TIMEOUT:.1f} s" in str(refused.value)
    return refused.value


def test_another_thread_holding_it(lock):
    taken, done = threading.Event(), threading.Event()

    def hold():
        with lock.held():
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(5)
        _refused(lock)
    finally:
        done.set()
        holder.join()
    with lock.held():  # free again, at once
        pass


def test_another_open_file_holding_it(lock):
    """What another process (a second worker, or anyone who can open the
    file) does: flock through its own open file."""
    with lock.held():  # makes the file
        pass
    other = os.open(lock.path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        _refused(lock)
    finally:
        os.close(other)
    with lock.held():
        pass


def test_a_holder_that_lets_go_in_time_only_delays(lock):
    with lock.held():
        pass
    other = os.open(lock.path, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    threading.Timer(TIMEOUT / 3, os.close, args=(other,)).start()
    begin = time.monotonic()
    with lock.held():
        assert time.monotonic() - begin >= TIMEOUT / 3 * 0.9


def test_the_file_is_private_whatever_the_umask(lock):
    old = os.umask(0)
    try:
        with lock.held():
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600


def test_a_forked_child_does_not_share_the_parents_open_file(lock):
    """flock does not exclude holders of the same open file: a worker forked
    after the lock's file was opened must open its own, or it would walk past
    the parent's hold."""
    with lock.held():  # the parent's open file exists before the fork
        pass
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(ready_r, 1)  # the parent holds the lock now
        try:
            with lock.held():
                os._exit(1)  # got in while the parent held it
        except LockTimeout:
            os._exit(0)
    with lock.held():
        os.write(ready_w, b"x")
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    os.close(ready_r)
    os.close(ready_w)
