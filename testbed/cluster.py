"""Several Pontoon hosts on one machine: an underlay (see underlay.py) with
etcd on the switch's address, and per host a network namespace with its own
Pontoon server (the real one, ``python -m plugin serve`` inside the
namespace, its socket and state in a directory of its own) and its own fake
dockerd whose container namespaces get their veths from that host's
namespace.

    with Cluster(tmp_path, hosts=3) as cluster:
        a, b, c = cluster.hosts
        net = a.dockerd.create_network(subnet="10.90.0.0/24")
        ctr = a.dockerd.run(net)

Every process is started and stopped by PID, every name carries a random
tag, and ``close`` removes everything even after a failed test.
"""
from __future__ import annotations

from pathlib import Path

from .etcd import Etcd
from .fake_dockerd import FakeDockerd
from .sandbox import Sandboxes
from .server import Server
from .underlay import Host, Underlay


# Short, so that a test waiting for a dead host's endpoints to leave waits
# seconds, not the default 15.
LEASE_TTL = 3


def cluster_flags(etcd_url: str, host: Host, host_id: str) -> tuple[str, ...]:
    return ("--etcd-endpoints", etcd_url, "--advertise-addr", host.address, "--host-id", host_id)


class PontoonHost:
    """One namespace host of the underlay with its own Pontoon server (a
    process) and a fake dockerd talking to it (not cluster.host.ClusterHost,
    which is that Pontoon's presence in the cluster)."""

    def __init__(self, host: Host, workdir: Path, flags: tuple[str, ...], env: dict[str, str]):
        self.host = host
        self.id = workdir.name
        workdir.mkdir(parents=True, exist_ok=True)
        self.server = Server(workdir, netns=host.ns, flags=flags)
        self.env = env
        self.sandboxes = Sandboxes(home=host.ns)
        self.dockerd: FakeDockerd | None = None

    @property
    def ns(self) -> str:
        return self.host.ns

    @property
    def address(self) -> str:
        return self.host.address

    def start(self) -> None:
        self.server.start(env=self.env)
        if self.dockerd is None:
            self.dockerd = FakeDockerd(self.server.client(), self.sandboxes)

    def kill(self) -> None:
        """kill -9 of the server, master and workers."""
        self.server.kill()

    def run(self, *cmd: str, **kwargs):
        return self.host.run(*cmd, **kwargs)

    def close(self) -> None:
        try:
            if self.dockerd is not None and self.server.proc is not None and self.server.proc.poll() is None:
                self.dockerd.cleanup()
        finally:
            if self.server.proc is not None and self.server.proc.poll() is None:
                self.server.stop()
            self.sandboxes.cleanup()


class Cluster:
    """``clustered=False`` runs the same hosts as plain single-host Pontoons
    (the harness's own test); ``flags`` go to every host's server;
    ``etcd_data`` puts etcd's data elsewhere than under ``workdir``."""

    def __init__(self, workdir: Path, hosts: int = 3, clustered: bool = True, env: dict[str, str] | None = None,
                 flags: tuple[str, ...] = (), etcd_data: Path | None = None):
        self.underlay = Underlay()
        self.etcd: Etcd | None = None
        self.hosts: list[PontoonHost] = []
        try:
            self.etcd = Etcd(workdir / "etcd", self.underlay.address, self.underlay.ns, etcd_data)
            self.etcd.start()
            for index in range(1, hosts + 1):
                host = self.underlay.add_host()
                host_id = f"host{index}"
                own = cluster_flags(self.etcd.url, host, host_id) if clustered else ()
                self.hosts.append(PontoonHost(host, workdir / host_id, own + flags, env or {}))
            for member in self.hosts:
                member.start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        errors = []
        for member in self.hosts:
            try:
                member.close()
            except Exception as exc:  # the others must still go
                errors.append(f"{member.id}: {exc}")
        if self.etcd is not None:
            self.etcd.remove()
        self.underlay.close()
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))
