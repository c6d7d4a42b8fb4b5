"""Run the real plugin server (python -m plugin serve) as a child process."""
from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import socket
import subprocess
import sys
import time
from pathlib import Path

from .client import Client, SocketTransport

REPO = Path(__file__).resolve().parents[1]



def process_tree(pid: int) -> list[int]:
    """The process and its direct children (gunicorn's master and workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *kids]


def fresh_python(code: str, *wrapper: str) -> None:
    """Run ``code`` in a new interpreter from the repository root (so what it
    imports is only what ``code`` imports), under ``wrapper`` (such as
    ``ip netns exec NS``) if given; a failed assert fails the caller."""
    subprocess.run([*wrapper, sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)

class Server:
    # Where the server runs, and so which checkout's plugin it imports
    # (bench.plugin_share runs other checkouts' servers).
    cwd: Path = REPO

    def __init__(self, workdir: Path, name: str | None = None, workers: int = 1, threads: int = 8,
                 netns: str | None = None, flags: tuple[str, ...] = (), wrapper: tuple[str, ...] = ()):
        self.name = name or "pt" + secrets.token_hex(4)
        self.socket_dir = workdir / "sock"
        self.state_dir = workdir / "state"
        self.log_path = workdir / f"{self.name}.log"
        self.workers, self.threads = workers, threads
        self.netns = netns  # run inside this network namespace (the socket is still on the host's filesystem)
        self.flags = flags  # more command-line settings, such as the cluster's
        self.wrapper = wrapper  # a command that runs the server, e.g. setpriv with fewer privileges
        self.proc: subprocess.Popen | None = None

    @property
    def socket_path(self) -> str:
        return str(self.socket_dir / f"{self.name}.sock")

    def command(self) -> list[str]:
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*inside, *self.wrapper, sys.executable, "-m", "plugin", "serve", "--name", self.name,
                "--socket-dir", str(self.socket_dir), "--state-dir", str(self.state_dir),
                "--workers", str(self.workers), "--threads", str(self.threads), "--log-level", "debug", *self.flags]

    def start(self, timeout: float = 15.0, env: dict[str, str] | None = None) -> float:
        """Start and wait until the socket accepts; returns the seconds that took.
        ``env`` adds variables to the server's environment (test hooks)."""
        begin = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd, stdout=log, stderr=log,
                                         env={**os.environ, **(env or {})})
        while time.monotonic() - begin < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if self._accepts():
                return time.monotonic() - begin
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.log()}")

    def _accepts(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd or docker would; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group's server: master and workers."""
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.wait_exit()

    def wait_exit(self, timeout: float = 15.0) -> None:
        """Wait until the master has exited and no worker holds the listening
        socket any more: a worker killed a moment after its master may still
        accept a connection, which a restart would then take for its own."""
        self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while self._accepts():
            if time.monotonic() > deadline:
                raise RuntimeError("a worker of the dead server still accepts connections")
            time.sleep(0.01)

    def pids(self) -> list[int]:
        """The master and its worker processes."""
        return [] if self.proc is None else process_tree(self.proc.pid)

    def socket_is_private(self) -> bool:
        """The socket has mode 0660 and belongs to root."""
        st = os.stat(self.socket_path)
        return stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0

    def socket_inodes(self, pids: list[int] | None = None) -> set[str]:
        """Inodes of every socket the server's processes (or ``pids``) hold."""
        inodes = set()
        for pid in self.pids() if pids is None else pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        return inodes

    def inet_sockets(self, pids: list[int] | None = None) -> list[str]:
        """Lines of /proc/net/{tcp,udp}{,6} (of the server's namespace) for
        sockets the server's processes (or ``pids`` of them) hold."""
        ours = self.socket_inodes(pids)
        net = f"/proc/{self.proc.pid}/net"
        return [f"{table}: {line}" for table in ("tcp", "tcp6", "udp", "udp6")
                for line in Path(f"{net}/{table}").read_text().splitlines()[1:]
                if line.split()[9] in ours]

    def held_ports(self, pids: list[int] | None = None) -> set[tuple[str, int]]:
        """(protocol, port) of every TCP or UDP socket the server holds."""
        return {(line.split(":")[0].rstrip("6"), int(line.split()[2].split(":")[-1], 16))
                for line in self.inet_sockets(pids)}

    def client(self, timeout: float = 30.0) -> Client:
        return Client(SocketTransport(self.socket_path, timeout))

    def inspect(self) -> dict:
        """The stored state, read the way a user would: ``python -m plugin inspect --json``."""
        out = subprocess.run([sys.executable, "-m", "plugin", "inspect", "--state-dir", str(self.state_dir), "--json"],
                             cwd=REPO, capture_output=True, text=True, check=True, timeout=30).stdout
        return json.loads(out)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
