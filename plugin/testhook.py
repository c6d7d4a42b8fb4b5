"""Test hooks, never set in production: crash the whole server at a chosen
point.

``PONTOON_TEST_CRASH_AT="<Interface.Method>:<step>[#n]"`` makes the server
kill itself, master and worker, with SIGKILL (as ``kill -9`` of the plugin
would) when, while serving that method, the n-th (default first) kernel or
firewall step whose name starts with ``<step>`` is about to run. The step
``commit`` is the store commit, after the kernel work and before COMMIT.
tests/reliability uses it to show that a crash anywhere loses nothing
acknowledged and leaks nothing. Unset, nothing is installed.

In cluster mode the etcd client's writes are steps too, named ``etcd <op>
<kinds>`` (cluster.etcd.step_name): ``etcd txn addrs held`` is an address
claim, ``etcd put endpoints`` a publish. The cluster's own work outside
any request is named by a pseudo-method, matched on the thread that runs
it: ``Cluster.rejoin`` (the start-up rejoin, which publishes the stored
endpoints again: ``pontoon-rejoin``), ``Cluster.republish`` (the records
written again on a replaced lease: ``pontoon-rewrite``) and
``Cluster.reclaim`` (the reaper's pass, ``pontoon-reaper``), e.g.
``Cluster.reclaim:etcd txn held seen``. tests/multihost/test_cluster_crash.py
uses them.

The same points serve tests that build the app in their own process
(tests/reliability/pauses.py pauses a request at one). Besides the kernel
and firewall steps and ``commit``, the network driver names a few points
between steps (``veth made``).
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
from typing import Callable

ENV = "PONTOON_TEST_CRASH_AT"
COMMIT = "commit"
# Pseudo-methods: the cluster's threads whose steps they name (see above).
THREADS = {"Cluster.rejoin": "pontoon-rejoin", "Cluster.republish": "pontoon-rewrite",
           "Cluster.reclaim": "pontoon-reaper"}

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
        if not name.startswith(step):
            return
        if method in THREADS:
            if threading.current_thread().name != THREADS[method]:
                return
        # Only inside a request: reconcile at start runs the same steps.
        elif not (has_request_context() and request.path == f"/{method}"):
            return
        if next(seen) == wanted:
            os.kill(master, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
