"""A private dockerd, its CLI, a busybox image and a loopback registry.

Everything here is started by PID and stopped by that PID: other engineers
run their own daemons and network tests on the same machine, so nothing is
found or killed by name, and every host-wide name (bridge, socket) is unique.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .matrix import SYSTEM, Build

REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"


class CommandError(AssertionError):
    """A command failed; the message carries its output for the test report."""


def run(argv, *, timeout, check=True, input=None, env=None):
    """subprocess.run with a mandatory timeout and readable failures."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, input=input, env=env
    )
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def stop_pid(pid, *, grace=20.0):
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; the caller owns pid."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    kill_pid(pid)


def kill_pid(pid):
    """SIGKILL a process the caller owns and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def descendants(pid):
    """Every process under pid, children before grandchildren."""
    out, todo = [], [pid]
    while todo:
        children = Path(f"/proc/{todo.pop()}/task")
        for task in children.iterdir() if children.exists() else ():
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def kill_tree(pid):
    """SIGKILL a process the caller owns and everything under it, the
    children first, so none is reparented out of reach."""
    for child in reversed(descendants(pid)):
        kill_pid(child)
    kill_pid(pid)


def _cmdline(proc: Path) -> list[bytes]:
    try:
        return (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _alive(pid):
    # Reap it if it is our child, so a zombie does not count as alive.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(predicate, *, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A port number; the daemon's namespace is fresh, so any unused one here
    is as good as another there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dockerd:
    """One dockerd in a network namespace of its own, with private data, exec
    root, socket and pidfile.

    The namespace is what makes runs independent: every Pontoon instance
    rewrites the shared PONTOON-* chains to what it alone knows, so two on one
    network stack (ours and another engineer's harness) delete each other's
    rules. In the namespace, dockerd's docker0, its iptables rules, Pontoon's
    bridges and chains, and the FORWARD policy dockerd sets to DROP are ours
    alone, and vanish with it. An uplink with a default route plays the
    machine's external interface; nothing sent there leaves the namespace.
    """

    UPLINK = "uplink0"
    UPLINK_ADDRESS = "198.18.0.1"

    def __init__(self, base: Path, build: Build = SYSTEM):
        self.base = base
        self.build = build
        self.sock = base / "docker.sock"
        self.pidfile = base / "docker.pid"
        self.log_path = base / "dockerd.log"
        self.proc = None
        # More dockerd flags, for the next start (e.g. --live-restore).
        self.flags = []
        # What fixtures set up on this daemon (an image, a plugin), redone
        # on the fresh daemon that replace() puts in place of a dead one.
        self.on_fresh = []
        self._new_identity()

    def _new_identity(self):
        self.token = secrets.token_hex(3)
        self.netns = f"pe2e-{self.token}"

    def start(self, timeout=60):
        self.base.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", self.netns], timeout=10)
        for cmd in (["link", "set", "lo", "up"],
                    # A veth whose peer stays in the namespace, unconfigured
                    # (this kernel has no dummy driver).
                    ["link", "add", self.UPLINK, "type", "veth", "peer", "name",
                     self.UPLINK + "p"],
                    ["addr", "add", f"{self.UPLINK_ADDRESS}/24", "dev", self.UPLINK],
                    ["link", "set", self.UPLINK + "p", "up"],
                    ["link", "set", self.UPLINK, "up"],
                    ["route", "add", "default", "dev", self.UPLINK]):
            run(["ip", "-n", self.netns, *cmd], timeout=10)
        self._spawn()
        self.wait_ready(timeout)

    def in_netns(self, argv):
        """argv run inside the daemon's network namespace. nsenter, not `ip
        netns exec`: that one also remounts /sys in a new mount namespace,
        which hides the cgroup mounts dockerd needs."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *map(str, argv)]

    def host(self, *argv, timeout=30, check=True):
        """A command on the daemon's "host": its network namespace."""
        return run(self.in_netns(argv), timeout=timeout, check=check)

    def _spawn(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.in_netns([
                self.build.dockerd,
                # Per daemon, so per version: a newer dockerd migrates a data
                # root past what an older one reads.
                "--data-root", self.base / "data",
                "--exec-root", self.base / "exec",
                "-H", f"unix://{self.sock}",
                "--pidfile", self.pidfile,
                "--storage-driver", "vfs",
                # Its own package's helpers, not whatever is on PATH.
                "--userland-proxy-path", self.build.proxy,
                "--init-path", self.build.init,
                # dockerd uses a system containerd when one listens on
                # /run/containerd; private namespaces keep our containers
                # apart from another daemon's there.
                "--containerd-namespace", f"pe2e-{self.token}",
                "--containerd-plugins-namespace", self.plugins_namespace,
                *self.flags,
            ]),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout=60):
        def answers():
            if self.proc.poll() is not None:
                raise CommandError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # The daemon's ID, not the exit code: the 26.1 CLI exits 0
                # from `info --format` when nothing answers.
                return self.docker("info", "--format", "{{.ID}}", check=False,
                                   timeout=10).stdout.strip()
            except subprocess.TimeoutExpired:
                return False    # listening, but still restoring

        wait_for(answers, timeout=timeout, what="dockerd to answer `docker info`")

    def restart(self, timeout=60):
        stop_pid(self.proc.pid, grace=30)
        self.relaunch(timeout)

    def kill(self):
        """SIGKILL, as a crash would. The shims live on, and containerd
        mostly dies with dockerd (a parent-death signal), but its pidfile
        stays; with this machine's pid_max of 32768 its PID can belong to
        another process seconds later, and the next dockerd then takes that
        one for its containerd and waits for a socket nobody serves. So the
        pidfile goes once that PID is no longer a containerd, as a reboot
        would clear it; a containerd that lives on is kept for the next
        dockerd to take over."""
        pidfile = self.base / "exec/containerd/containerd.pid"
        kill_pid(self.proc.pid)

        def containerd_gone():
            try:
                pid = pidfile.read_text().strip()
                return Path(f"/proc/{pid}/comm").read_text().strip() != "containerd"
            except FileNotFoundError:
                return True

        try:
            wait_for(containerd_gone, timeout=5, what="dockerd's containerd to exit")
        except TimeoutError:
            return
        pidfile.unlink(missing_ok=True)

    def relaunch(self, timeout=60):
        """Start again on the same data root; the seconds until it answers."""
        started = time.monotonic()
        self._spawn()
        self.wait_ready(timeout)
        return time.monotonic() - started

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def replace(self):
        """Put a fresh daemon (new data root, namespace and containerd
        namespaces) in place of this one, which died, and redo on it what the
        fixtures had set up (on_fresh): one dead daemon then fails the test
        it died in, not every later test that shares it. Returns the dead
        daemon's log tail, for that one report."""
        tail = self.log_tail(80)
        self.stop()
        self._new_identity()
        self.start()
        for redo in self.on_fresh:
            redo()
        return tail

    @property
    def plugins_namespace(self):
        """containerd's namespace for this daemon's plugins (plugins.moby
        for a daemon started without --containerd-plugins-namespace)."""
        return f"pe2e-{self.token}-plugins"

    def shims(self, task=None):
        """PIDs of the containerd shims running this daemon's containers and
        plugins (its two containerd namespaces), or only task's. A shim
        outlives dockerd and its containerd by design, and a plugin's may be
        one the relaunched daemon never learnt of
        (docs/managed-plugin-restart.md)."""
        ours = {f"pe2e-{self.token}", self.plugins_namespace}
        found = []
        for proc in Path("/proc").iterdir():
            argv = [arg.decode(errors="replace") for arg in _cmdline(proc)] if proc.name.isdigit() else []
            if argv[:1] != ["/usr/bin/containerd-shim-runc-v2"] or "-namespace" not in argv[:-1]:
                continue
            options = dict(zip(argv[1::2], argv[2::2]))
            if options.get("-namespace") in ours and task in (None, options.get("-id")):
                found.append(int(proc.name))
        return found

    def end_shims(self):
        """A stopped dockerd has stopped its containers and plugins; a shim
        still running belongs to a daemon that was killed, and it and the
        task under it would outlive the run."""
        for shim in self.shims():
            kill_tree(shim)

    def stop(self):
        # nsenter execs dockerd, so this PID is the daemon's.
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=30)
            self.proc = None
        self.end_shims()
        # dockerd bind-mounts its data root onto itself and, killed or not
        # done in time, leaves that mount behind: it would outlive the test.
        run(["umount", "-l", str(self.base / "data")], timeout=10, check=False)
        run(["ip", "netns", "del", self.netns], timeout=10, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines=40):
        try:
            return "".join(self.log_path.read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return ""

    def docker(self, *args, timeout=60, check=True, input=None):
        return run([self.build.docker, "-H", f"unix://{self.sock}", *map(str, args)],
                   timeout=timeout, check=check, input=input)

    def inspect(self, kind, name):
        out = self.docker(kind, "inspect", name, timeout=20).stdout
        return json.loads(out)[0]


def build_busybox_image(dockerd: Dockerd, workdir: Path, tag="busybox:local"):
    """Import a busybox image from Debian's busybox-static: no registry here."""
    rootfs = workdir / "busybox-rootfs"
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "var/www"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    applets = run([BUSYBOX, "--list-full"], timeout=10).stdout.split()
    for applet in applets:
        link = rootfs / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")
    # httpd serves this file, so a published port has something to return.
    (rootfs / "var/www/index.html").write_text("pontoon-e2e\n")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run(
            [dockerd.build.docker, "-H", f"unix://{dockerd.sock}", "import",
             "--change", 'CMD ["sh"]', "-", tag],
            stdin=tar.stdout, capture_output=True, text=True, timeout=120,
        )
    finally:
        tar.stdout.close()
        tar.wait(timeout=30)
    if proc.returncode != 0:
        raise CommandError(f"docker import failed: {proc.stderr}")
    return tag


class Registry:
    """Debian's docker-registry (distribution 2.8) on a loopback port."""

    def __init__(self, base: Path, dockerd: Dockerd):
        self.base = base
        self.dockerd = dockerd
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout=30):
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.yml"
        # JSON is YAML; dockerd treats 127.0.0.0/8 registries as insecure, so
        # plain HTTP on loopback needs no certificate.
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "data")}},
            "http": {"addr": self.addr},
        }))
        log = open(self.base / "registry.log", "w")
        # In dockerd's namespace: the daemon pulls from its own loopback.
        self.proc = subprocess.Popen(self.dockerd.in_netns([REGISTRY, "serve", config]),
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

        def listening():
            if self.proc.poll() is not None:
                raise CommandError((self.base / "registry.log").read_text())
            probe = self.dockerd.host(
                sys.executable, "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {self.port}), 2)",
                check=False, timeout=10)
            return probe.returncode == 0

        wait_for(listening, timeout=timeout, what=f"registry on {self.addr}")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)
