"""Applies the rules ``datapath.rules`` renders, one transaction per family.

Every public method takes an exclusive ``flock`` on the lock file first: the
gunicorn workers of one Pontoon each hold a ``Firewall``, and an
``iptables-save``/``iptables-restore`` pair from two of them interleaved would
lose one side's change. ``-w`` additionally waits for the xtables lock other
programs (dockerd, a user's iptables) take.
"""
from __future__ import annotations

import contextlib
import fcntl
import random
import socket
import subprocess
from pathlib import Path
from typing import Callable

from . import rules as R
from .errors import DatapathError
from .model import EndpointPorts, NetworkRules
from .steps import FaultHook, Steps

_TOOLS = {"ipv4": ("iptables-save", "iptables-restore"), "ipv6": ("ip6tables-save", "ip6tables-restore")}
_TIMEOUT = 30

Transform = Callable[[R.Ruleset, str], R.Ruleset]


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class Firewall:
    def __init__(self, lock_path: str | Path, faults: FaultHook | None = None, chain_prefix: str = R.PONTOON):
        self._lock_path = Path(lock_path)
        self._faults = faults
        self._names = R.Names(chain_prefix)

    @contextlib.contextmanager
    def _locked(self):
        with open(self._lock_path, "a") as f:
            with Steps(self._faults) as steps:
                steps.run("lock firewall", lambda: fcntl.flock(f, fcntl.LOCK_EX))
            yield  # closing the file releases the lock

    def _save(self, family: str) -> R.Saved:
        return R.parse_save(_run([_TOOLS[family][0]]), self._names)

    def _restore(self, family: str, text: str) -> None:
        _run([_TOOLS[family][1], "-w", "--noflush"], stdin=text)

    def _apply(
        self,
        change: Transform,
        undo: Transform | None = None,
        before: Callable[[Steps], object] | None = None,
    ) -> list[str]:
        """Rewrite our chains per family as ``change`` says, under the lock.

        If IPv6 fails after IPv4 succeeded, ``undo`` turns IPv4 back (and the
        steps of ``before`` are undone), so an operation is applied in both
        families or in neither.
        """
        changes: list[str] = []
        # Undo runs inside the lock: the lock is the outer context.
        with self._locked(), Steps(self._faults) as steps:
            if before is not None:
                before(steps)
            for family in R.FAMILIES:
                saved = steps.run(f"read {family} firewall", lambda f=family: self._save(f))
                target = change(saved.ours, family)
                text, done = R.plan(saved, target, family, self._names)
                if not text:
                    continue

                def revert(f=family, t=target):
                    back_text, _ = R.plan(self._save(f), undo(t, f), f, self._names, fix_hooks=False)
                    if back_text:
                        self._restore(f, back_text)

                steps.run(
                    f"apply {family} firewall",
                    lambda f=family, t=text: self._restore(f, t),
                    undo=revert if undo else None,
                )
                changes += done
        return changes

    def ensure_base(self) -> list[str]:
        """Create the base chains and the jumps to them where missing."""
        return self._apply(lambda cur, fam: R.with_base(cur, self._names))

    def add_network(self, rules: NetworkRules) -> None:
        def add(cur, fam):
            return R.including(cur, R.network_fragment(rules, fam, self._names), self._names)

        def remove(cur, fam):
            return R.without(cur, R.network_fragment(rules, fam, self._names))

        def localnet(steps: Steps) -> None:
            if rules.subnets_v4 and not rules.internal:
                self._route_localnet(steps, rules.bridge)

        self._apply(add, remove, before=localnet)

    def remove_network(self, rules: NetworkRules) -> None:
        self._apply(lambda cur, fam: R.pruned(
            R.without(R.with_base(cur, self._names), R.network_fragment(rules, fam, self._names)), self._names))

    def add_ports(self, ports: EndpointPorts) -> None:
        def add(cur, fam):
            return R.including(cur, R.ports_fragment(ports, fam, self._names), self._names)

        def remove(cur, fam):
            return R.without(cur, R.ports_fragment(ports, fam, self._names))

        self._apply(add, remove)

    def remove_ports(self, ports: EndpointPorts) -> None:
        self._apply(
            lambda cur, fam: R.without(R.with_base(cur, self._names), R.ports_fragment(ports, fam, self._names))
        )
        # Flows already DNATed keep their translation in conntrack and would
        # still reach the old container (UDP "connections" never end on their
        # own while traffic flows); the reply tuple (container address and
        # port) names exactly the flows to it.
        with Steps(self._faults) as steps:
            for b in ports.bindings:
                steps.run(
                    f"flush conntrack {b.proto} {b.container_ip} {b.container_port}",
                    lambda b=b: self._flush_conntrack(b.proto, b.container_ip, b.container_port),
                )

    def reconcile(self, networks: list[NetworkRules], ports: list[EndpointPorts]) -> list[str]:
        """Make our chains exactly what these networks and endpoints need.

        Restores the base chains and the jumps, rewrites any chain whose rules
        differ and deletes the chains under our prefix that nothing here owns. Returns a
        line per change; an empty list means the kernel already matched.
        """
        changes: list[str] = []

        def localnet(steps: Steps) -> None:
            for n in networks:
                if n.subnets_v4 and not n.internal and self._route_localnet(steps, n.bridge):
                    changes.append(f"set route_localnet on {n.bridge}")

        applied = self._apply(lambda cur, fam: R.pruned(R.desired(networks, ports, fam, self._names), self._names),
                              before=localnet)
        return changes + applied

    def _route_localnet(self, steps: Steps, bridge: str) -> bool:
        """Let packets with a 127.0.0.0/8 source leave through the bridge.

        Needed for published ports on 127.0.0.1 (see the localhost masquerade
        in ``datapath.rules``). Returns whether it had to be changed.
        """
        path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
        name = f"set route_localnet {bridge}"
        try:
            changed = path.read_text().strip() != "1"
        except OSError as exc:  # no such bridge
            raise DatapathError(name, exc) from exc
        if changed:
            steps.run(
                name,
                lambda: path.write_text("1"),
                undo=lambda: path.write_text("0"),
            )
        return changed

    @staticmethod
    def _flush_conntrack(proto: str, container_ip: str, container_port: int) -> None:
        family = R.binding_family(container_ip)
        ip = container_ip.split("/")[0]
        argv = [
            "conntrack", "-D", "-f", family, "-p", proto,
            "--reply-src", ip, "--reply-port-src", str(container_port),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
        # conntrack exits 1 when no entry matched, which is the usual case.
        if proc.returncode != 0 and "0 flow entries" not in proc.stderr:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")

    def pick_host_port(self, proto: str, host_ip: str, used: set[int]) -> int:
        """A free port for HostPort 0, from the kernel's ephemeral range.

        Skips ``used`` (ports Pontoon already published) and any port some
        host process has bound, found by trying to bind it: our DNAT would
        otherwise hide that process's service.
        """
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        ports = list(range(low, high + 1))
        # A random start spreads consecutive picks of concurrent workers.
        start = random.randrange(len(ports))
        try:
            for port in ports[start:] + ports[:start]:
                if port not in used and _bindable(proto, host_ip, port):
                    return port
        except OSError as exc:  # no socket of that kind at all, e.g. no sctp module
            raise DatapathError(f"pick host port for {proto}", exc) from exc
        raise DatapathError(f"pick host port for {proto}", f"no free port in {low}-{high}")


def _bindable(proto: str, host_ip: str, port: int) -> bool:
    v6 = ":" in host_ip
    family = socket.AF_INET6 if v6 else socket.AF_INET
    address = host_ip if host_ip not in ("", "0.0.0.0", "::") else ("::" if v6 else "0.0.0.0")
    kind, number = {
        "tcp": (socket.SOCK_STREAM, 0),
        "udp": (socket.SOCK_DGRAM, 0),
        "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
    }[proto]
    with socket.socket(family, kind, number) as s:
        try:
            s.bind((address, port))
        except OSError:  # taken
            return False
    return True
