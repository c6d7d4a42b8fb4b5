"""Fixtures for the end-to-end tier: a private dockerd of each version of the
matrix (testbed/matrix.py), a busybox image, and Pontoon run two ways, as a
plain process and as a managed plugin.

The dockerd and the image are session-wide, one per dockerd version
(starting them costs seconds); the plugin rootfs is built once for all of
them (a debootstrap, cached under build/). pytest groups the tests by the
session's dockerd param, so one daemon runs at a time and every test id
names it, e.g. `[dockerd-28.5-process]`. The daemon runs
in a network namespace of its own (see dockerd.Dockerd); tests still name
their networks and containers uniquely, since they share that daemon, and
the plugin socket directory is shared with the whole machine.
"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.dockerd import (
    BUSYBOX, REGISTRY, CommandError, Dockerd, Registry, build_busybox_image,
)
from testbed.plugins import REPO, ManagedPontoon, ProcessPontoon
from tests.e2e.helpers import Scene, matrix_params

# The debootstrap tree is reused between runs: it is the slow part.
ROOTFS_CACHE = Path(os.environ.get("PONTOON_ROOTFS_CACHE", REPO / "build/rootfs-base"))


def _missing_prerequisite(build):
    if os.geteuid() != 0:
        return "end-to-end tests run dockerd and need root"
    if not os.access(BUSYBOX, os.X_OK):
        return f"{BUSYBOX} is missing: apt-get install busybox-static"
    return build.missing()


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="pontoon-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", params=matrix_params())
def dockerd(request, workdir):
    build = request.param
    reason = _missing_prerequisite(build)
    if reason:
        pytest.skip(reason)
    daemon = Dockerd(workdir / f"dockerd-{build.version}", build)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def busybox(dockerd, workdir):
    dockerd.on_fresh.append(lambda: build_busybox_image(dockerd, workdir))
    return build_busybox_image(dockerd, workdir)


@contextmanager
def redone_on_fresh(daemon, redo):
    """While the with-block runs, a fresh daemon that replaces a dead one
    gets `redo` run on it (a plugin started again, a registry restarted)."""
    daemon.on_fresh.append(redo)
    try:
        yield
    finally:
        daemon.on_fresh.remove(redo)


def revive(daemon, before):
    """A daemon that died outside any test (in a fixture's teardown) is
    replaced before the next one uses it, with a warning that says so."""
    if not daemon.alive():
        tail = daemon.replace()
        warnings.warn(f"dockerd {daemon.build.version} was dead before {before}; "
                      f"replaced by a fresh one. Its log ended:\n{tail}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        item.call_failed = report.failed


@pytest.fixture(autouse=True)
def live_dockerd(request):
    """A dockerd that died (a panic, a kill that was not followed by a
    relaunch) is replaced by a fresh one before the next test, so that one
    death shows as one failure, not as a failure of every later test that
    shares the daemon. The test it died in fails once, with the daemon's
    last words; if that test failed already, its own failure is the report."""
    if "dockerd" not in request.fixturenames:
        yield
        return
    daemon = request.getfixturevalue("dockerd")
    revive(daemon, before=request.node.name)
    yield
    if not daemon.alive():
        tail = daemon.replace()
        if not getattr(request.node, "call_failed", False):
            pytest.fail(f"dockerd {daemon.build.version} died during this test (a fresh one "
                        f"replaces it for the tests after). Its log ended:\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def plugin_dir():
    """config.json + rootfs/ for `docker plugin create`, built once per run."""
    if not shutil.which("debootstrap"):
        pytest.skip("debootstrap is missing: apt-get install debootstrap")
    out = REPO / "build/e2e-plugin"
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "contrib/build-rootfs.sh"), str(out)],
        env={**os.environ, "PONTOON_ROOTFS_CACHE": str(ROOTFS_CACHE),
             "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise CommandError(f"contrib/build-rootfs.sh failed:\n{proc.stderr[-4000:]}")
    print(f"plugin rootfs built in {time.monotonic() - started:.1f}s")
    return out


# Module scope: this instance is gone before test_registry.py starts its own.
# Two Pontoon instances on one network stack rewrite each other's chains.
@pytest.fixture(scope="module", params=["process", "managed"])
def pontoon(request, dockerd, workdir):
    revive(dockerd, before=request.node.name)
    base = Path(tempfile.mkdtemp(prefix=f"pontoon-{request.param}-", dir=workdir))
    if request.param == "process":
        plugin = ProcessPontoon(dockerd, base)
    else:
        plugin = ManagedPontoon(dockerd, base, request.getfixturevalue("plugin_dir"))
    def again():
        plugin.stop()
        plugin.start()

    try:
        plugin.start()
        with redone_on_fresh(dockerd, again):
            yield plugin
    finally:
        plugin.stop()


@pytest.fixture(scope="session")
def registry(workdir, dockerd):
    if not os.access(REGISTRY, os.X_OK):
        pytest.skip(f"{REGISTRY} is missing: apt-get install docker-registry")
    revive(dockerd, before="the registry")
    reg = Registry(workdir / "registry", dockerd)
    def again():
        reg.stop()
        reg.start()

    try:
        reg.start()
        with redone_on_fresh(dockerd, again):
            yield reg
    finally:
        reg.stop()


@pytest.fixture
def uid():
    """A short unique suffix for the names of one test's networks, bridges
    and containers."""
    return secrets.token_hex(3)


@pytest.fixture
def scene(dockerd, busybox, pontoon, uid):
    s = Scene(dockerd, busybox, pontoon, uid)
    yield s
    s.teardown()
