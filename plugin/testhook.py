"""A test hook, never set in production: crash the whole server at a chosen point.

``PONTOON_TEST_CRASH_AT="<Interface.Method>:<step>[#n]"`` makes the server
kill itself, master and worker, with SIGKILL (as ``kill -9`` of the plugin
would) when, while serving that method, the n-th (default first) kernel or
firewall step whose name starts with ``<step>`` is about to run. The step
``commit`` is the store commit, after the kernel work and before COMMIT.
tests/reliability uses it to show that a crash anywhere loses nothing
acknowledged and leaks nothing. Unset, nothing is installed.
"""
from __future__ import annotations

import itertools
import os
import signal
from typing import Callable

ENV = "PONTOON_TEST_CRASH_AT"
COMMIT = "commit"

Hook = Callable[[str], None]


def from_env() -> Hook | None:
    target = os.environ.get(ENV)
    if not target:
        return None
    # Only now: importing this module must not load Flask (see plugin.server).
    from flask import has_request_context, request

    method, _, step = target.partition(":")
    step, _, nth = step.partition("#")
    wanted = int(nth or 1)
    # Captured when the app is built, in the gunicorn master before it forks.
    master = os.getpid()
    seen = itertools.count(1)

    def hook(name: str) -> None:
        # Only inside a request: reconcile at start runs the same steps.
        if not (has_request_context() and request.path == f"/{method}" and name.startswith(step)):
            return
        if next(seen) == wanted:
            os.kill(master, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
