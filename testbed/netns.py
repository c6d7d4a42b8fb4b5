"""Run a Python function inside a network namespace: in a forked child that
enters it, so the caller's own namespace (the machine's, where other runs
have their links) is never touched."""
from __future__ import annotations

import os
import pickle
import traceback


def run_in_netns(netns: str, fn, *args):
    """Run ``fn(*args)`` in a forked child that has entered ``netns`` and
    return its result (or raise its exception). Reconcile deletes every
    Pontoon-named link it does not own, so it must never run in the host
    namespace where other test runs may have theirs."""
    from pyroute2.netns import setns

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller
        status = 0
        try:
            os.close(rfd)
            setns(netns)
            try:
                payload = ("ok", fn(*args))
            except BaseException as exc:  # shipped to the parent and raised there
                payload = ("err", (exc, traceback.format_exc()))
            try:
                data = pickle.dumps(payload)
            except Exception:  # e.g. DatapathError, whose __init__ takes two arguments
                data = pickle.dumps(("err", (RuntimeError(repr(payload[1])), "")))
            with os.fdopen(wfd, "wb") as w:
                w.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"child in netns {netns} died without an answer")
    kind, value = pickle.loads(data)
    if kind == "err":
        exc, tb = value
        raise exc from RuntimeError(tb)
    return value
