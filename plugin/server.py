"""gunicorn serving the app on a Unix socket, never on TCP.

The socket is created with mode 0660 (gunicorn's umask), and a stale socket
file left by a crashed run is replaced (gunicorn removes an existing socket
before binding). SIGTERM is gunicorn's graceful stop: in-flight requests
finish and the process exits 0.
"""
from __future__ import annotations

import gc
import logging
import os
import sys

from . import logs
from .config import Settings
from .store import Store
from .wiring import build, build_network_driver

log = logging.getLogger("pontoon")

SOCKET_UMASK = 0o117  # socket mode 0660: root and the socket's group only
STATE_UMASK = 0o077
# How long a thread may keep the GIL while others wait for it (Python's
# default is 5 ms). A request thread holding the store's write lock gives the
# GIL up at every SQLite call and netlink send, and waited up to that long to
# get it back from threads parsing other requests, so the writers behind it
# waited too: 0.5 ms took the CreateEndpoint + Join median at 16 clients from
# about 50 to 40 ms (make bench, section 3).
GIL_SWITCH_S = 0.0005
# Where a worker's heartbeat file goes. gunicorn stamps it (utime) at every
# turn of the worker's loop: once per request, once a second idle. On a
# disk-backed /tmp each stamp is an inode change for the filesystem's
# journal, which our own fsyncs keep busy, and gunicorn's worker_tmp_dir
# setting warns that it can block a worker for arbitrary time. A memory
# filesystem takes it at no cost; /dev/shm is one on every Linux host and in
# a managed plugin's container.
HEARTBEAT_DIR = "/dev/shm"


def _gunicorn(app, options: dict):
    """The gunicorn application, configured, not yet listening (``.run()``)."""
    # Imported here, like Flask in wiring.build: both load while the
    # reconcile child works (see serve).
    from gunicorn.app.base import BaseApplication

    from .worker import Logger, Worker

    # gthread, reading requests in its loop: a slow client holds no thread
    # (see plugin.worker); its logger skips access lines nobody logs.
    options = {**options, "worker_class": Worker, "logger_class": Logger}

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    return Gunicorn()


def _reconcile(network) -> int:
    """Make the kernel match the store; the exit status for the child."""
    try:
        for change in network.reconcile():
            log.info("reconcile: %r", change)
    except Exception:
        log.exception("reconcile at start failed")
        return 1
    return 0


def _start_reconcile(network) -> int:
    """Reconcile in a short-lived child; returns its pid, for _wait_reconcile.
    It runs while the master imports Flask and gunicorn, and a repair it
    makes imports pyroute2 (about 20 MiB and 70 ms), which in the master would
    stay for good and be inherited by every worker."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = _reconcile(network)
        finally:
            # Never return into the master's code (gunicorn would start twice).
            os._exit(status)
    return pid


def _wait_reconcile(pid: int) -> None:
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status != 0:
        # Serving matters more: dockerd disables a plugin that does not
        # listen in time. Objects reconcile could not repair stay logged.
        log.error("reconcile at start did not finish (exit status %d); serving anyway", status)


def serve(settings: Settings) -> None:
    sys.setswitchinterval(GIL_SWITCH_S)  # inherited by the workers
    # The socket's dir, if made here, lets the socket's group reach it.
    os.makedirs(settings.socket_dir, exist_ok=True)
    # Whatever Pontoon makes from now on (state files, anything a library
    # creates) is its own only; the socket gets its group access back from
    # gunicorn's own umask around the bind.
    os.umask(STATE_UMASK)
    store = Store(settings.state_dir, lock_timeout=settings.lock_timeout)
    store.initialise()
    reconciling = _start_reconcile(build_network_driver(settings, store))
    # Flask and gunicorn load while the child reconciles; the socket listens
    # only once it is done, so dockerd never meets stale kernel state.
    # Imported here, like Flask: multiprocessing's modules load while the
    # child reconciles rather than before it starts.
    from .portkeeper import Keeper

    keeper = Keeper(settings.state_dir)
    plugin = build(settings, host_ports=keeper.client())
    server = _gunicorn(plugin.app, {
        "bind": [f"unix:{settings.socket_path}"],
        "umask": SOCKET_UMASK,
        "workers": settings.workers,
        "threads": settings.threads,
        # No HTTP timeout from dockerd for plain-process plugins: a worker
        # whose loop is stuck is restarted rather than hanging dockerd forever.
        "timeout": 120,
        "graceful_timeout": 30,
        "worker_tmp_dir": HEARTBEAT_DIR if os.access(HEARTBEAT_DIR, os.W_OK) else None,
        "logconfig_dict": logs.config_dict(settings.log_level, settings.log_format),
        "accesslog": None,
        "proc_name": f"pontoon-{settings.name}",
        # gunicorn's control socket sits at one path per user: two Pontoon
        # instances would fight over it, and nothing here needs it.
        "control_socket_disable": True,
        **({"post_worker_init": lambda _worker: plugin.worker_started()} if plugin.worker_started else {}),
        # A worker must not keep copies of the master's held port sockets.
        "post_fork": lambda _arbiter, _worker: keeper.close_inherited(),
    })
    _wait_reconcile(reconciling)
    # Published ports are held again before the socket listens (after the
    # reconcile child is gone, so it holds no copy of them).
    keeper.start(plugin.network.stored_ports())
    # The collector was off while starting (plugin.cli). What start-up built
    # stays for good, so it is frozen out of every later collection: neither
    # this process nor a worker walks it again, and a worker's collections
    # do not write to, and so copy, the pages it shares with the master.
    # The few hundred cycles start-up left unreachable stay frozen with it:
    # tens of KiB, where collecting them first would delay listening ~10 ms.
    gc.freeze()
    gc.enable()
    log.info("serving on %s (state in %s)", settings.socket_path, settings.state_dir)
    server.run()
