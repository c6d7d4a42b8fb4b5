"""Applies the rules ``datapath.rules`` renders, to both families at once.

Every public method takes the lock file's exclusive lock first
(``datapath.locks``, a bounded wait): the gunicorn workers and threads of one
Pontoon each hold a ``Firewall`` and call it with no other lock held, and a
read-then-rewrite of one interleaved with another's change would lose that
change. ``-w`` additionally waits for the xtables lock other programs
(dockerd, a user's iptables) take, bounded by the tools' timeout.

Adding a network or an endpoint's ports restores just its own lines
(``rules.adding``) and reads ``FORWARD`` to see our jump is still first
there; removing one reads a single chain, to know whether it is the last
network, and restores ``rules.removing``. Neither reads whole tables, so
their cost does not grow with the networks there are. Where the
rules are not as such a change assumes (the first network, a repeated call,
a user's edits), its restore fails without committing that table, and the
family falls back to reading everything and rewriting what differs
(``rules.plan``), as reconcile does, which also repairs whatever else
drifted.

The families are separate kernel tables with tools of their own, so they run
side by side: a commit that deletes rules waits about 10 ms in the kernel,
and the two wait together.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import subprocess
import threading
from functools import partial
from pathlib import Path
from typing import Callable

from . import rules as R
from .errors import DatapathError
from .locks import DEFAULT_TIMEOUT_S, FileLock
from .model import EndpointPorts, NetworkRules
from .steps import FaultHook, Steps
from .sysctl import Sysctl

log = logging.getLogger(__name__)

_TOOLS = {"ipv4": "iptables", "ipv6": "ip6tables"}
_TIMEOUT = 30

Fragments = Callable[[str], R.Fragment]  # family -> what one network or endpoint adds there


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class Firewall:
    def __init__(self, lock_path: str | Path, faults: FaultHook | None = None, chain_prefix: str = R.PONTOON,
                 sysctl: Sysctl | None = None, lock_timeout: float = DEFAULT_TIMEOUT_S):
        self._lock = FileLock(str(lock_path), "the firewall lock", lock_timeout)
        self._faults = faults
        self._names = R.Names(chain_prefix)
        self._sysctl = sysctl or Sysctl()

    @contextlib.contextmanager
    def _locked(self):
        # A fault hook may refuse this step like any kernel step.
        with Steps(self._faults) as steps:
            steps.run("lock firewall", lambda: None)
        with self._lock.held():
            yield

    # -- one family ---------------------------------------------------------------
    def _restore(self, family: str, text: str) -> None:
        _run([f"{_TOOLS[family]}-restore", "-w", "--noflush"], stdin=text)

    def _rewrite(self, family: str, change: Callable[[R.Ruleset], R.Ruleset]) -> list[str]:
        """Read the family's whole rule set and rewrite what ``change`` makes
        differ, hooks moved back to the top included; returns the changes."""
        saved = R.parse_save(_run([f"{_TOOLS[family]}-save"]), self._names)
        text, changes = R.plan(saved, change(saved.ours), family, self._names)
        if text:
            self._restore(family, text)
        return changes

    def _add(self, family: str, frag: R.Fragment) -> bool:
        """Add the fragment; returns whether that changed anything."""
        try:
            self._restore(family, R.adding(frag, self._names))
        except RuntimeError:  # not as adding() assumes, see there
            # A restore that failed in its nat section has committed its
            # filter section (nat half there from an earlier failure), which
            # the rewrite cannot tell from what was there before: count it as
            # changed, so the undo (an idempotent removal) still runs.
            self._rewrite(family, lambda cur: R.including(cur, frag, self._names))
            return True
        # FORWARD is where dockerd puts its rules above ours when it starts
        # or makes a network, and some accept anything leaving its bridges,
        # into ours too; reading that one short chain costs the same however
        # many networks there are. Checked when a network is added (its
        # entries are in the chain FORWARD jumps to), not for published ports,
        # which are added under the store's write lock. The other hooks go
        # back to the top at the next rewrite.
        if self._names.bridges in frag.shared["filter"]:
            jump = dict(self._names.hooks()["filter"])["FORWARD"]
            if not R.hook_in_place(self._entries(family, "filter", "FORWARD") or [], jump):
                self._rewrite(family, lambda cur: cur)
        return True

    def _remove(self, family: str, frag: R.Fragment) -> None:
        """Remove the fragment, and our hooks and base chains too if it was
        the last network."""
        prune = False
        # Every network has exactly one entry here, whatever its options;
        # endpoints have none, and removing one leaves its network.
        mine = frag.shared["nat"].get(self._names.masquerade)
        if mine:
            entries = self._entries(family, "nat", self._names.masquerade)
            if entries is None or not set(mine) <= set(entries):  # removed already, or drift
                self._remove_slowly(family, frag)
                return
            prune = entries == mine
        try:
            self._restore(family, R.removing(frag, self._names, prune))
        except RuntimeError:  # something missing or left over, see removing()
            self._remove_slowly(family, frag)

    def _entries(self, family: str, table: str, chain: str) -> list[str] | None:
        """The rules of one chain, read without the rest; None if it is missing."""
        try:
            listed = _run([_TOOLS[family], "-w", "-t", table, "-S", chain])
        except RuntimeError:
            return None
        return [R.split_rule(line)[1] for line in listed.splitlines() if line.startswith("-A ")]

    def _remove_slowly(self, family: str, frag: R.Fragment) -> None:
        self._rewrite(family, lambda cur: R.pruned(R.without(R.with_base(cur, self._names), frag), self._names))

    # -- both families --------------------------------------------------------------
    @staticmethod
    def _both(work: Callable[[str], None]) -> None:
        """``work(family)`` for IPv4 here and IPv6 in a thread, at once.

        Waits for both, then raises IPv4's error, else IPv6's: the caller's
        ``Steps`` then undoes what the other family did, so an operation is
        applied in both families or in neither.
        """
        errors: dict[str, BaseException] = {}

        def run(family: str) -> None:
            try:
                work(family)
            except BaseException as exc:  # raised again in the caller's thread below
                errors[family] = exc

        # The thread sees the caller's context variables: a fault hook may
        # look at them (the tests' crash hook asks which request it serves).
        thread = threading.Thread(target=contextvars.copy_context().run, args=(run, "ipv6"))
        thread.start()
        run("ipv4")
        thread.join()
        failed = [errors[f] for f in R.FAMILIES if f in errors]
        for other in failed[1:]:
            log.error("firewall: %r", other)
        if failed:
            raise failed[0]

    def _per_family(self, work: Callable[[Steps, str], None],
                    before: Callable[[Steps], object] | None = None) -> None:
        """``work(steps, family)`` for both families at once, under the lock,
        after the steps of ``before``; one undo stack for all of them. Undo
        runs inside the lock: the lock is the outer context."""
        with self._locked(), Steps(self._faults) as steps:
            if before is not None:
                before(steps)
            self._both(lambda family: work(steps, family))

    def _add_both(self, fragment: Fragments, before: Callable[[Steps], object] | None = None) -> None:
        def work(steps: Steps, family: str) -> None:
            frag = fragment(family)
            if frag.empty():
                return
            changed = False

            def add() -> None:
                nonlocal changed
                changed = self._add(family, frag)

            def undo() -> None:
                # Only what this call added: rules that were there before stay.
                if changed:
                    self._remove(family, frag)

            steps.run(f"apply {family} firewall", add, undo=undo)

        self._per_family(work, before)

    def _remove_both(self, fragment: Fragments) -> None:
        """No undo: the callers put back a half-done removal by adding again."""
        def work(steps: Steps, family: str) -> None:
            frag = fragment(family)
            if not frag.empty():
                steps.run(f"apply {family} firewall", lambda: self._remove(family, frag))

        self._per_family(work)

    def _rewrite_both(self, change: Callable[[R.Ruleset, str], R.Ruleset],
                      before: Callable[[Steps], object] | None = None) -> list[str]:
        changes: dict[str, list[str]] = {}

        def work(steps: Steps, family: str) -> None:
            changes[family] = steps.run(f"apply {family} firewall",
                                        lambda: self._rewrite(family, lambda cur: change(cur, family)))

        self._per_family(work, before)
        return [line for family in R.FAMILIES for line in changes[family]]

    # -- the operations ---------------------------------------------------------------
    def add_network(self, rules: NetworkRules) -> None:
        def localnet(steps: Steps) -> None:
            if rules.subnets_v4 and not rules.internal:
                self._route_localnet(steps, rules.bridge)

        self._add_both(lambda fam: R.network_fragment(rules, fam, self._names), before=localnet)

    def remove_network(self, rules: NetworkRules) -> None:
        self._remove_both(lambda fam: R.network_fragment(rules, fam, self._names))

    def add_ports(self, ports: EndpointPorts) -> None:
        self._add_both(lambda fam: R.ports_fragment(ports, fam, self._names))

    def remove_ports(self, ports: EndpointPorts) -> None:
        self._remove_both(lambda fam: R.ports_fragment(ports, fam, self._names))
        # Flows already DNATed keep their translation in conntrack and would
        # still reach the old container (UDP "connections" never end on their
        # own while traffic flows); the reply tuple (container address and
        # port) names exactly the flows to it. One listing per protocol and
        # container address, and a delete only for ports that have flows:
        # a `conntrack -D` per port took 20 s for 1,000 ports (most find
        # nothing), where publishing them took 0.2 s.
        wanted: dict[tuple[str, str], set[int]] = {}
        for b in ports.bindings:
            wanted.setdefault((b.proto, b.container_ip), set()).add(b.container_port)
        with Steps(self._faults) as steps:
            for (proto, ip), container_ports in wanted.items():
                steps.run(f"flush conntrack {proto} {ip}", partial(self._flush_conntrack, proto, ip, container_ports))

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

        applied = self._rewrite_both(
            lambda cur, fam: R.pruned(R.desired(networks, ports, fam, self._names), self._names), before=localnet)
        return changes + applied

    def _route_localnet(self, steps: Steps, bridge: str) -> bool:
        """Let packets with a 127.0.0.0/8 source leave through the bridge.

        Needed for published ports on 127.0.0.1 (see the localhost masquerade
        in ``datapath.rules``). Returns whether it had to be changed.
        """
        name = f"set route_localnet {bridge}"
        try:
            changed = self._sysctl.read("ipv4", bridge, "route_localnet") != "1"
        except OSError as exc:  # no such bridge
            raise DatapathError(name, exc) from exc
        if changed:
            steps.run(
                name,
                lambda: self._sysctl.write("ipv4", bridge, "route_localnet", "1"),
                undo=lambda: self._sysctl.write("ipv4", bridge, "route_localnet", "0"),
            )
        return changed

    @staticmethod
    def _flush_conntrack(proto: str, container_ip: str, container_ports: set[int]) -> None:
        """Delete the flows answered from ``container_ports`` of the address."""
        common = ["-f", R.binding_family(container_ip), "-p", proto, "--reply-src", container_ip.split("/")[0]]
        listed = _run(["conntrack", "-L", *common])
        for port in sorted(container_ports & _reply_source_ports(listed)):
            argv = ["conntrack", "-D", *common, "--reply-port-src", str(port)]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
            # conntrack exits 1 when no entry matched: the flow ended meanwhile.
            if proc.returncode != 0 and "0 flow entries" not in proc.stderr:
                raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")

    def ephemeral_range(self) -> tuple[int, int]:
        """The kernel's range for ports a program does not choose: where
        ``HostPort`` 0 picks from, as Docker does."""
        low, high = (self._sysctl.root / "ipv4" / "ip_local_port_range").read_text().split()
        return int(low), int(high)


def _reply_source_ports(listing: str) -> set[int]:
    """The reply tuple's source port of each flow `conntrack -L` printed:
    the second ``sport=`` of a line (the first is the original tuple's)."""
    found = set()
    for line in listing.splitlines():
        sports = [word[6:] for word in line.split() if word.startswith("sport=")]
        if len(sports) >= 2 and sports[1].isdigit():
            found.add(int(sports[1]))
    return found
