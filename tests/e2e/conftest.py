"""Fixtures for the end-to-end tier: a private dockerd, a busybox image, and
Pontoon run two ways, as a plain process and as a managed plugin.

The dockerd and the image are session-wide (starting them costs seconds, and
the plugin rootfs costs a debootstrap, cached under build/). Every test names
its networks, bridges and containers uniquely, because the kernel objects are
shared with whatever else runs on this machine.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.dockerd import (
    BUSYBOX, DOCKER, DOCKERD, REGISTRY, CommandError, Dockerd, Registry,
    build_busybox_image, stop_pid, wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SOCKET_DIR = Path("/run/docker/plugins")
# The debootstrap tree is reused between runs: it is the slow part.
ROOTFS_CACHE = Path(os.environ.get("PONTOON_ROOTFS_CACHE", REPO / "build/rootfs-base"))


def _version():
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise RuntimeError("no version in pyproject.toml")


VERSION = _version()


def _missing_prerequisite():
    if os.geteuid() != 0:
        return "end-to-end tests run dockerd and need root"
    for path, package in ((DOCKERD, "docker.io"), (DOCKER, "docker.io"),
                          (BUSYBOX, "busybox-static")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install {package}"
    return None


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="pontoon-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd(workdir):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    daemon = Dockerd(workdir / "dockerd")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def busybox(dockerd, workdir):
    return build_busybox_image(dockerd, workdir)


@pytest.fixture(scope="session")
def plugin_dir():
    """config.json + rootfs/ for `docker plugin create`, built once per run.

    The shipped config.json with one change: the instance name (and with it
    the socket). Pontoon tags the links it creates with its name and at start
    removes untagged-by-others links as orphans, so a managed plugin named
    plain "pontoon" could take the links of someone else's Pontoon on this
    shared machine.
    """
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
    name = "pe2e" + secrets.token_hex(3)
    config = json.loads((out / "config.json").read_text())
    config["entrypoint"] += ["--name", name]
    config["interface"]["socket"] = f"{name}.sock"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


class ProcessPontoon:
    """`python -m plugin serve` on the host, found by dockerd by its socket."""

    mode = "process"

    def __init__(self, dockerd, base):
        self.dockerd = dockerd
        # The socket directory is shared by every dockerd on the host, so the
        # plugin name (and with it the socket) is unique to this run.
        self.name = "pe2e" + secrets.token_hex(3)
        self.driver = self.name
        self.state_dir = base / "state"
        self.log_path = base / "pontoon.log"
        self.socket = PLUGIN_SOCKET_DIR / f"{self.name}.sock"
        self.proc = None

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTOON_")}
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugin", "serve", "--name", self.name,
             "--socket-dir", str(PLUGIN_SOCKET_DIR), "--state-dir", str(self.state_dir),
             "--log-level", "debug"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def listening():
            if self.proc.poll() is not None:
                raise CommandError(f"pontoon exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.socket.exists()

        wait_for(listening, timeout=30, what=f"pontoon socket {self.socket}")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def log_tail(self, lines=60):
        try:
            return "".join(self.log_path.read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return ""


class ManagedPontoon:
    """The managed plugin, created from the debootstrap rootfs."""

    mode = "managed"

    def __init__(self, dockerd, base, plugin_dir, ref=f"pontoon:{VERSION}"):
        self.dockerd = dockerd
        self.plugin_dir = plugin_dir
        self.driver = ref
        # A private state source, set through the settable mount, so this run
        # never reads or writes the host's /var/lib/pontoon.
        self.state_dir = base / "state"

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.dockerd.docker("plugin", "create", self.driver, self.plugin_dir, timeout=300)
        self.configure()
        self.enable()

    def configure(self):
        self.dockerd.docker("plugin", "set", self.driver,
                            f"state.source={self.state_dir}", "PONTOON_LOG_LEVEL=debug",
                            timeout=30)

    def enable(self):
        self.dockerd.docker("plugin", "enable", "--timeout", "60", self.driver, timeout=90)

    def stop(self):
        self.dockerd.docker("plugin", "disable", "-f", self.driver, timeout=60, check=False)
        self.dockerd.docker("plugin", "rm", "-f", self.driver, timeout=60, check=False)

    def restart(self):
        # -f: networks using the plugin exist, and plain disable refuses then.
        self.dockerd.docker("plugin", "disable", "-f", self.driver, timeout=60)
        self.enable()

    def log_tail(self, lines=60):
        # dockerd relays a managed plugin's output into its own log.
        return self.dockerd.log_tail(lines)


# Module scope: the managed instance is gone before test_registry.py starts
# its own, so two never run at once.
@pytest.fixture(scope="module", params=["process", "managed"])
def pontoon(request, dockerd, workdir):
    base = workdir / f"pontoon-{request.param}"
    base.mkdir()
    if request.param == "process":
        plugin = ProcessPontoon(dockerd, base)
    else:
        plugin = ManagedPontoon(dockerd, base, request.getfixturevalue("plugin_dir"))
    try:
        plugin.start()
        yield plugin
    finally:
        plugin.stop()


@pytest.fixture(scope="session")
def registry(workdir):
    if not os.access(REGISTRY, os.X_OK):
        pytest.skip(f"{REGISTRY} is missing: apt-get install docker-registry")
    reg = Registry(workdir / "registry")
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def uid():
    """A short unique suffix for names that live in the host's kernel."""
    return secrets.token_hex(3)
