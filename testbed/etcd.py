"""A real etcd for the cluster tests: Debian's etcd-server binary, with a data
dir of its own, on an address of the underlay (inside the switch namespace)
or on 127.0.0.1, started and stopped by PID.

``ip netns exec`` execs etcd, so the PID is etcd's own. Readiness and reads
go through etcdctl (Debian's etcd-client) in the same namespace: the
underlay address is not reachable from the machine's own namespace.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

from .dockerd import CommandError, stop_pid, wait_for

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
OPENSSL = "/usr/bin/openssl"


def missing() -> str | None:
    """Why etcd cannot run here, or None."""
    if os.geteuid() != 0:
        return "the cluster tests need root (network namespaces)"
    for path, package in ((ETCD, "etcd-server"), (ETCDCTL, "etcd-client"), (OPENSSL, "openssl")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install {package}"
    return None


def make_pki(directory: Path, address: str) -> dict[str, Path]:
    """A throw-away CA, a server certificate for ``address`` and a client
    certificate, as PEM files in ``directory`` (openssl's CLI, valid a day)."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run([OPENSSL, *argv], cwd=directory, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=pontoon test CA")
    # etcd's JSON gateway calls etcd's gRPC side with the server certificate,
    # so with client certificates required that one must be a client's too.
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(f"subjectAltName=IP:{address}\nextendedKeyUsage={usage}\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=pontoon test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class Etcd:
    """``tls``: https only, with a server certificate from a CA of its own
    and client certificates required (``pki`` holds the PEM files)."""

    def __init__(self, workdir: Path, address: str = "127.0.0.1", netns: str | None = None,
                 data_dir: Path | None = None, tls: bool = False):
        self.workdir = workdir
        self.address, self.netns = address, netns
        self.pki = make_pki(workdir / "pki", address) if tls else None
        # A namespace of our own has every port free; on 127.0.0.1 another
        # run may hold one, and start() says so through etcd's exit.
        # Both below the kernel's ephemeral range (from 32768), which the
        # machine's outgoing connections draw from.
        self.client_port = random.randint(20000, 25999)
        self.peer_port = self.client_port + 6000
        self.name = f"pt{self.client_port}"
        self.data_dir = data_dir or workdir / "etcd-data"
        self.log_path = workdir / "etcd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://{self.address}:{self.client_port}"

    def _tls_args(self, server: bool) -> list[str]:
        if not self.pki:
            return []
        if server:
            return ["--cert-file", str(self.pki["server.pem"]), "--key-file", str(self.pki["server.key"]),
                    "--client-cert-auth", "--trusted-ca-file", str(self.pki["ca.pem"])]
        return ["--cacert", str(self.pki["ca.pem"]), "--cert", str(self.pki["client.pem"]),
                "--key", str(self.pki["client.key"])]

    def _inside(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        peer = f"http://{self.address}:{self.peer_port}"
        argv = [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
                "--log-level", "warn", "--logger", "zap", *self._tls_args(server=True)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._inside(argv), stdout=log, stderr=log, start_new_session=True)

        def healthy():
            if self.proc.poll() is not None:
                raise CommandError(f"etcd exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.ctl("endpoint", "health", check=False).returncode == 0

        wait_for(healthy, timeout=timeout, interval=0.1, what=f"etcd at {self.url}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace; the data dir stays, so a
        start() afterwards is the same cluster coming back."""
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=10)
            self.proc = None

    def remove(self) -> None:
        """Stop and delete the data: the end of the test."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def ctl(self, *args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._inside([ETCDCTL, "--endpoints", self.url, "--dial-timeout", "2s", *self._tls_args(server=False), *args]),
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, "ETCDCTL_API": "3"})
        if check and proc.returncode != 0:
            raise CommandError(f"etcdctl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (all keys when empty)."""
        return [line for line in self.ctl("get", "--prefix", "--keys-only", prefix).stdout.splitlines() if line]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

