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
import time
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
# The CLI from the same Debian package as the daemon: a newer CLI (as in
# /usr/local/bin on some machines) refuses some flags against a 20.10 daemon.
DOCKER = "/usr/bin/docker"
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
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.1)


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dockerd:
    """One dockerd with private data, exec root, socket, pidfile and bridge."""

    def __init__(self, base: Path):
        self.base = base
        self.sock = base / "docker.sock"
        self.pidfile = base / "docker.pid"
        self.log_path = base / "dockerd.log"
        # Our own default bridge: a second daemon on the host may already own
        # docker0, and two daemons programming one bridge fight. dockerd only
        # creates a bridge named docker0 itself, so this one is made here.
        self.token = secrets.token_hex(3)
        self.bridge = "pe2e" + self.token
        self.proc = None

    def start(self, timeout=60):
        self.base.mkdir(parents=True, exist_ok=True)
        run(["ip", "link", "add", self.bridge, "type", "bridge"], timeout=10)
        self._spawn()
        self.wait_ready(timeout)

    def _spawn(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [
                DOCKERD,
                "--data-root", str(self.base / "data"),
                "--exec-root", str(self.base / "exec"),
                "-H", f"unix://{self.sock}",
                "--pidfile", str(self.pidfile),
                "--storage-driver", "vfs",
                "--bridge", self.bridge,
                # dockerd uses a system containerd when one listens on
                # /run/containerd; private namespaces keep our containers
                # apart from another daemon's there.
                "--containerd-namespace", f"pe2e-{self.token}",
                "--containerd-plugins-namespace", f"pe2e-{self.token}-plugins",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout=60):
        def answers():
            if self.proc.poll() is not None:
                raise CommandError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.docker("info", "--format", "{{.ID}}", check=False, timeout=10).returncode == 0

        wait_for(answers, timeout=timeout, what="dockerd to answer `docker info`")

    def restart(self, timeout=60):
        stop_pid(self.proc.pid, grace=30)
        self._spawn()
        self.wait_ready(timeout)

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=30)
            self.proc = None
        run(["ip", "link", "del", self.bridge], timeout=10, check=False)
        # vfs layers and the exec root may still hold mounts of dead
        # containers; unmount them before deleting the tree.
        self._umount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def _umount_below(path: Path):
        prefix = str(path) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            run(["umount", "-l", mnt], timeout=10, check=False)

    def log_tail(self, lines=40):
        try:
            return "".join(self.log_path.read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return ""

    def docker(self, *args, timeout=60, check=True, input=None):
        return run([DOCKER, "-H", f"unix://{self.sock}", *map(str, args)],
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
            [DOCKER, "-H", f"unix://{dockerd.sock}", "import",
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

    def __init__(self, base: Path):
        self.base = base
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
        self.proc = subprocess.Popen([REGISTRY, "serve", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

        def listening():
            if self.proc.poll() is not None:
                raise CommandError((self.base / "registry.log").read_text())
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, what=f"registry on {self.addr}")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)
