"""Pontoon run the two ways a user runs it: a plain process on the host,
and a managed plugin created from the rootfs that contrib/build-rootfs.sh
builds. Both offer the same face to the tests: driver, state_dir, start,
stop, restart; ``inspect_state`` reads what either stored."""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from .dockerd import CommandError, kill_pid, kill_tree, run, stop_pid, wait_for
from .server import REPO, process_tree

PLUGIN_SOCKET_DIR = Path("/run/docker/plugins")
# Default pools set through each mode's own channel (flags for the process,
# `docker plugin set` of config.json's env for the managed plugin), so the
# cases can tell that settings reach Pontoon.
DEFAULT_POOLS = "10.199.0.0/16:24"
DEFAULT_POOLS_V6 = "fd99:e2e::/48:64"


def _version():
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise RuntimeError("no version in pyproject.toml")


VERSION = _version()


def inspect_state(state_dir, *view):
    """Pontoon's stored objects, read by the project's own inspect command
    (`inspect ports` with view "ports")."""
    out = run([sys.executable, "-m", "plugin", "inspect", *view, "--state-dir", str(state_dir),
               "--json"], timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    return json.loads(out)


class ProcessPontoon:
    """`python -m plugin serve` on the host, found by dockerd by its socket."""

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
        # In dockerd's network namespace: that is the host it serves.
        self.proc = subprocess.Popen(
            self.dockerd.in_netns(
                [sys.executable, "-m", "plugin", "serve", "--name", self.name,
                 "--socket-dir", PLUGIN_SOCKET_DIR, "--state-dir", self.state_dir,
                 "--log-level", "info", "--default-pools", DEFAULT_POOLS,
                 "--default-pools-v6", DEFAULT_POOLS_V6]),
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

    def kill(self):
        """SIGKILL master and workers, as a crash would; the socket file stays."""
        for pid in process_tree(self.proc.pid):
            kill_pid(pid)
        self.proc = None

    def log_tail(self, lines=60):
        try:
            return "".join(self.log_path.read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return ""


class ManagedPontoon:
    """The managed plugin, created from the debootstrap rootfs."""

    def __init__(self, dockerd, base, plugin_dir, ref=f"pontoon:{VERSION}", settings=()):
        self.dockerd = dockerd
        self.plugin_dir = plugin_dir
        self.driver = ref
        # More `KEY=VALUE`s of config.json's env for `docker plugin set`.
        self.settings = tuple(settings)
        # A private state source, set through the settable mount, so this run
        # never reads or writes the host's /var/lib/pontoon.
        self.state_dir = base / "state"
        self.id = None

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.dockerd.docker("plugin", "create", self.driver, self.plugin_dir, timeout=300)
        self.id = self.dockerd.inspect("plugin", self.driver)["Id"]
        self.configure()
        self.enable()

    def configure(self):
        self.dockerd.docker("plugin", "set", self.driver,
                            f"state.source={self.state_dir}", "PONTOON_LOG_LEVEL=info",
                            f"PONTOON_DEFAULT_POOLS={DEFAULT_POOLS}",
                            f"PONTOON_DEFAULT_POOLS_V6={DEFAULT_POOLS_V6}", *self.settings, timeout=30)

    def enable(self):
        self.dockerd.docker("plugin", "enable", "--timeout", "60", self.driver, timeout=90)

    def stop(self):
        self.dockerd.docker("plugin", "disable", "-f", self.driver, timeout=60, check=False)
        self.dockerd.docker("plugin", "rm", "-f", self.driver, timeout=60, check=False)

    def kill(self):
        """SIGKILL the plugin's processes, as a crash would: what runs under
        the containerd shim of this plugin's task (named by its ID). Works
        with dockerd dead too. Returns the PID of the task's first process."""
        master = self.master()
        kill_tree(master)
        return master

    def master(self):
        shims = self.dockerd.shims(self.id)
        assert len(shims) == 1, f"{len(shims)} shims run plugin {self.id[:12]}"
        (master,) = process_tree(shims[0])[1:]
        return master

    def wait_restarted(self, killed, timeout=60):
        """Until dockerd has restarted the plugin it saw exit: a new task
        whose socket answers. dockerd killed before that may leave a task
        its next start cannot replace (docs/managed-plugin-restart.md)."""
        socket_path = PLUGIN_SOCKET_DIR / self.id / "pontoon.sock"

        def serving():
            try:
                if self.master() == killed:
                    return False
            except (AssertionError, ValueError):
                return False     # between tasks: no shim, or one without a child yet
            with socket.socket(socket.AF_UNIX) as probe:
                return probe.connect_ex(str(socket_path)) == 0

        wait_for(serving, timeout=timeout, what=f"dockerd to restart plugin {self.id[:12]}")

    def restart(self):
        # -f: networks using the plugin exist, and plain disable refuses then.
        self.dockerd.docker("plugin", "disable", "-f", self.driver, timeout=60)
        self.enable()

