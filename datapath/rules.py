"""Pontoon's iptables rules as plain data: rendering, parsing and diffing.

Nothing here runs a command; ``datapath.firewall`` pipes the text this
module renders into ``iptables-restore --noflush`` and feeds the output of
``iptables-save`` in when it has to read. Rules are written exactly as
``iptables-save`` prints them, so a rule read back compares equal to the rule
rendered and re-applying an unchanged rule set is a no-op.

Chain layout (the same for IPv4 and IPv6; chain names are per table)::

    filter FORWARD  -> PONTOON-FORWARD   (our jump is kept first, see Names.hooks)
        PONTOON-FORWARD      -> PONTOON-BRIDGES
        PONTOON-BRIDGES      per network: -i br / -o br -> PONTOON-N-<net>
        PONTOON-N-<net>      everything decided for traffic of that bridge
        PONTOON-ISOL-OUT     -o <any container bridge> DROP
        PONTOON-ISOL-IN      -i <any container bridge> DROP
        PONTOON-PORTS        per endpoint: -o br -> PONTOON-E-<ep>
        PONTOON-E-<ep>       ACCEPT to each published container port
    filter INPUT    -> PONTOON-INPUT
        PONTOON-INPUT        -> PONTOON-LOOPBACK
        PONTOON-LOOPBACK     per bridge (IPv4): guards route_localnet
    nat PREROUTING, OUTPUT (local destinations) -> PONTOON-DNAT
        PONTOON-DNAT         -> PONTOON-PUBLISHED
        PONTOON-PUBLISHED    per endpoint: -> PONTOON-E-<ep>
        PONTOON-E-<ep>       DNAT host port -> container port
    nat POSTROUTING -> PONTOON-POSTROUTING
        PONTOON-POSTROUTING  -> PONTOON-MASQUERADE
        PONTOON-MASQUERADE   per network: -> PONTOON-N-<net>
        PONTOON-N-<net>      masquerade, hairpin, localhost masquerade

The chains the hooks jump to hold one fixed rule each, and the entries of
networks and endpoints are one jump further: every add checks the hooks
(``-C``), and iptables-nft reads all rules of the chain a checked jump goes
to, so a check of a jump into a chain with an entry per network would cost
more with every network.

Two ways to apply a change:

- ``adding``/``removing``: only the fragment's own chains and its entries in
  the base chains, as ``-N``/``-A`` and ``-D``/``-X`` lines, plus checks
  (``-C`` of every hook, ``-N`` of a chain that must not exist yet, ``-D`` of
  an entry that must be there) that make the restore fail, changing nothing
  in that table, unless the rule set is as the change assumes. Their size
  does not depend on how many networks exist, and adding deletes nothing, so
  the kernel's commit stays cheap.
- ``plan``: from a full ``iptables-save``, the lines that turn it into a
  wanted rule set, chains always rewritten whole (declared, which flushes
  them, then refilled), so a reader never sees half of one. For anything the
  first way refuses, and for reconcile.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from .errors import UnsafeValue
from .model import EndpointPorts, NetworkRules

FAMILIES = ("ipv4", "ipv6")
TABLES = ("filter", "nat")

# Every Pontoon's chains start with this; a jump to one of them may stay
# above ours (see Names.hooks).
PONTOON = "PONTOON"

# Docker's default bridge and its user-defined bridges ("br-<12 hex>"): our
# networks are isolated from them both ways, as Docker isolates its own.
DOCKER_BRIDGES = ("docker0", "br-+")

_LOCAL = "-m addrtype --dst-type LOCAL "

Chains = dict[str, list[str]]  # chain name -> rule specs, without "-A <chain> "
Ruleset = dict[str, Chains]  # table -> our chains


@dataclass(frozen=True)
class Names:
    """Chain names of one rule set, all "<prefix>-...".

    Production uses "PONTOON"; tests use a prefix of their own so that a
    Pontoon running on the same host and the tests leave each other's chains
    alone (reconcile deletes every chain under its prefix it does not own).
    """

    prefix: str = PONTOON

    def __post_init__(self):
        # iptables chain names hold 28 characters: "<prefix>-N-" + 12 hex.
        if not self.prefix.startswith(PONTOON) or len(self.prefix) > 13:
            raise ValueError(f"chain prefix {self.prefix!r} must start with {PONTOON} and fit 13 characters")

    @property
    def forward(self) -> str:
        return f"{self.prefix}-FORWARD"

    @property
    def bridges(self) -> str:
        return f"{self.prefix}-BRIDGES"

    @property
    def input(self) -> str:
        return f"{self.prefix}-INPUT"

    @property
    def loopback(self) -> str:
        return f"{self.prefix}-LOOPBACK"

    @property
    def isol_out(self) -> str:
        return f"{self.prefix}-ISOL-OUT"

    @property
    def isol_in(self) -> str:
        return f"{self.prefix}-ISOL-IN"

    @property
    def ports(self) -> str:
        return f"{self.prefix}-PORTS"

    @property
    def dnat(self) -> str:
        return f"{self.prefix}-DNAT"

    @property
    def published(self) -> str:
        return f"{self.prefix}-PUBLISHED"

    @property
    def postrouting(self) -> str:
        return f"{self.prefix}-POSTROUTING"

    @property
    def masquerade(self) -> str:
        return f"{self.prefix}-MASQUERADE"

    def network(self, tag: str) -> str:
        """A network's chain, by its tag (an ID gives its first choice)."""
        return f"{self.prefix}-N-{tag[:12]}"

    def endpoint(self, tag: str) -> str:
        return f"{self.prefix}-E-{tag[:12]}"

    def owns(self, chain: str) -> bool:
        return chain.startswith(self.prefix + "-")

    def hooks(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """(builtin chain, our jump) per table.

        Each jump is kept above every rule of its builtin chain except jumps
        to other Pontoons' chains: dockerd puts its own jumps first when it
        starts, and Docker's per-bridge rules accept anything leaving docker0
        ("-i docker0 ! -o docker0 ACCEPT"), which would let Docker's
        containers into our bridges before our isolation rules run. Our
        chains only decide on packets that enter or leave one of our bridges,
        so running first changes nothing for Docker's traffic.
        """
        return {
            "filter": (("FORWARD", f"-j {self.forward}"), ("INPUT", f"-j {self.input}")),
            "nat": (
                ("PREROUTING", f"{_LOCAL}-j {self.dnat}"),
                ("OUTPUT", f"{_LOCAL}-j {self.dnat}"),
                ("POSTROUTING", f"-j {self.postrouting}"),
            ),
        }

    def base_chains(self) -> Ruleset:
        """The chains every host gets, whatever networks exist."""
        return {
            "filter": {
                self.forward: [f"-j {self.bridges}"],
                self.bridges: [],
                self.input: [f"-j {self.loopback}"],
                self.loopback: [],
                self.isol_out: [f"-o {b} -j DROP" for b in DOCKER_BRIDGES],
                self.isol_in: [f"-i {b} -j DROP" for b in DOCKER_BRIDGES],
                self.ports: [],
            },
            "nat": {
                self.dnat: [f"-j {self.published}"],
                self.published: [],
                self.postrouting: [f"-j {self.masquerade}"],
                self.masquerade: [],
            },
        }


DEFAULT = Names()


@dataclass
class Fragment:
    """What one network or endpoint contributes to one family's rule set.

    ``own`` chains belong to it alone and are rewritten or deleted whole;
    ``shared`` rules are its entries in the base chains.
    """

    # Our chain name in every table, even where it has no rules in this
    # family: removal must find a chain left over from an earlier content.
    name: str
    own: Ruleset = field(default_factory=lambda: {t: {} for t in TABLES})
    shared: Ruleset = field(default_factory=lambda: {t: {} for t in TABLES})

    def add_shared(self, table: str, chain: str, rule: str) -> None:
        self.shared[table].setdefault(chain, []).append(rule)

    def empty(self) -> bool:
        return not any(self.own[t] or self.shared[t] for t in TABLES)


def _version(family: str) -> int:
    return 4 if family == "ipv4" else 6


def _token(value: str) -> str:
    """``value``, if it is one token of a rule line (see ``UnsafeValue``).
    ``isprintable`` is false for every control character and every
    whitespace but the ASCII space, which is checked on its own."""
    if not value or " " in value or not value.isprintable():
        raise UnsafeValue(value)
    return value


def _net(cidr: str) -> str:
    return _token(str(ipaddress.ip_network(cidr, strict=False)))


# An endpoint's bindings repeat one container address and a few host
# addresses: parsed once each, not once per port (parsing was most of the
# time rendering an endpoint with thousands of ports).
_ip = functools.lru_cache(maxsize=256)(lambda address: ipaddress.ip_interface(address).ip)


def _host(address: str) -> str:
    """An address as iptables-save prints a single-host match."""
    ip = _ip(address)
    return _token(f"{ip}/{ip.max_prefixlen}")


def network_fragment(rules: NetworkRules, family: str, names: Names = DEFAULT) -> Fragment:
    """What one network needs in one family, by its gateway mode there.

    Docker 28's modes, matched by behaviour (moby's generated rule sets in
    ``integration/network/bridge/iptablesdoc``), not by chain names:
    ``nat`` masquerades, and only connections DNATed from a host address
    reach a published port, so a neighbour routing the subnet to this host
    reaches no container address directly (Docker drops such packets in
    the raw table; our chain runs first in FORWARD and ends in a DROP for the
    bridge, so it decides the same here); ``nat-unprotected`` also lets every
    port be reached directly; ``routed`` does not masquerade and lets the
    published ports and ICMP be reached at the container's address;
    ``isolated`` (internal networks only) differs in the bridge, which gets
    no address.
    """
    br = _token(rules.bridge)
    chain = _token(names.network(rules.tag or rules.network_id))
    subnets = rules.subnets_v4 if family == "ipv4" else rules.subnets_v6
    mode = rules.gateway_mode(family)
    # An IPv6-only network's containers have no IPv4 address: nothing of
    # IPv4 is forwarded for them, as nothing is for an internal network.
    closed = rules.internal or (family == "ipv4" and not rules.ipv4)
    frag = Fragment(chain)

    frag.add_shared("filter", names.bridges, f"-i {br} -j {chain}")
    frag.add_shared("filter", names.bridges, f"-o {br} -j {chain}")
    frag.add_shared("filter", names.isol_out, f"-o {br} -j DROP")
    frag.add_shared("filter", names.isol_in, f"-i {br} -j DROP")
    f = [
        # Isolation first, so no accept below lets another bridge in or out.
        f"-i {br} ! -o {br} -j {names.isol_out}",
        f"! -i {br} -o {br} -j {names.isol_in}",
    ]
    if closed:
        f += [f"-i {br} ! -o {br} -j DROP", f"! -i {br} -o {br} -j DROP"]
    else:
        f += [
            # A connection DNATed from the host's loopback address can only
            # be forwarded when a neighbour sent it, routing 127.0.0.1 (or
            # ::1) to this host: the host's own go straight into the bridge.
            f"-o {br} -m conntrack --ctorigdst {_LOOPBACK[family]} -j DROP",
            f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            *_inbound(rules, family, names),
        ]
    f.append(f"-i {br} -o {br} -j {'ACCEPT' if rules.icc else 'DROP'}")
    if not closed:
        f.append(f"-i {br} ! -o {br} -j ACCEPT")
    # Nothing else enters the bridge, whatever the FORWARD policy is.
    f.append(f"-o {br} -j DROP")
    frag.own["filter"][chain] = f

    n: list[str] = []
    nat = not closed and mode != "routed"
    if rules.masquerade and nat:
        source = rules.host_ipv4 if family == "ipv4" else rules.host_ipv6
        # host_ipv4/host_ipv6: a fixed source address instead of the one of
        # whichever interface the packet leaves by.
        target = f"SNAT --to-source {_token(source)}" if source else "MASQUERADE"
        n += [f"-s {_net(s)} ! -o {br} -j {target}" for s in subnets]
    if nat:  # an internal or routed network maps no host ports
        # Hairpin: a container reaching a published port (its own or a
        # neighbour's) through a host address is DNATed back into the bridge;
        # without a new source the reply would skip the host and not match.
        n += [f"-s {_net(s)} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE" for s in subnets]
    if family == "ipv4" and subnets and nat:
        # Published ports on 127.0.0.1: OUTPUT DNATs the connection to the
        # container, the bridge's route_localnet=1 lets a packet with a
        # loopback source leave through it, and this masquerade gives it the
        # bridge's address so the container can answer. Docker does the same
        # with a userland proxy process per port; this needs none.
        n.append(f"-s 127.0.0.0/8 -o {br} -j MASQUERADE")
        # route_localnet also lets a container send to 127.0.0.1 on the host
        # (CVE-2020-8558); only answers to the host's own connections may.
        frag.add_shared(
            "filter", names.loopback,
            f"-d 127.0.0.0/8 -i {br} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP",
        )
    frag.own["nat"][chain] = n
    frag.add_shared("nat", names.masquerade, f"-j {chain}")
    return frag


_LOOPBACK = {"ipv4": "127.0.0.0/8", "ipv6": "::1"}  # as iptables-save prints them
_ICMP = {"ipv4": "icmp", "ipv6": "ipv6-icmp"}


def _inbound(rules: NetworkRules, family: str, names: Names) -> list[str]:
    """New connections from outside the bridge that the gateway mode lets in."""
    br = _token(rules.bridge)
    mode = rules.gateway_mode(family)
    if mode == "nat-unprotected":
        return [f"! -i {br} -o {br} -j ACCEPT"]
    # Trusted host interfaces count as the bridge itself: from them a
    # published port is reached at the container's address too.
    out = [f"-i {_token(iface)} -o {br} -j {names.ports}" for iface in rules.trusted_interfaces]
    if mode == "routed":
        return out + [f"! -i {br} -o {br} -j {names.ports}", f"-o {br} -p {_ICMP[family]} -j ACCEPT"]
    return out + [f"! -i {br} -o {br} -m conntrack --ctstate DNAT -j {names.ports}"]


def _any_address(host_ip: str) -> bool:
    return host_ip in ("", "0.0.0.0", "::")


def binding_family(container_ip: str) -> str:
    return "ipv4" if _ip(container_ip).version == 4 else "ipv6"


def ports_fragment(ports: EndpointPorts, family: str, names: Names = DEFAULT) -> Fragment:
    """Rules for the endpoint's bindings whose container address is of ``family``.

    A binding to a specific host address of the other family is a caller error.
    """
    chain = _token(names.endpoint(ports.tag or ports.endpoint_id))
    frag = Fragment(chain)
    accept: list[str] = []
    dnat: list[str] = []
    for b in ports.bindings:
        if b.proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"protocol {b.proto!r} cannot be published")
        if binding_family(b.container_ip) != family:
            continue
        routed = family in ports.routed
        # The stored text is checked, not just what ipaddress makes of it:
        # ``ip_interface(...).ip`` silently drops an IPv6 zone.
        cip = _ip(_token(b.container_ip))
        dst = ""
        if not _any_address(b.host_ip):
            if _ip(_token(b.host_ip)).version != _version(family):
                raise ValueError(f"host address {b.host_ip} and container address {cip} differ in family")
            dst = f"-d {_host(b.host_ip)} "
        to = f"{cip}:{b.container_port}" if family == "ipv4" else f"[{cip}]:{b.container_port}"
        proto = f"-p {b.proto} -m {b.proto}"
        accept.append(f"-d {_host(str(cip))} {proto} --dport {b.container_port} -j ACCEPT")
        if not routed:
            dnat.append(f"{dst}{proto} --dport {b.host_port} -j DNAT --to-destination {to}")
    if accept:
        frag.own["filter"][chain] = accept
        frag.add_shared("filter", names.ports, f"-o {_token(ports.bridge)} -j {chain}")
    if dnat:
        frag.own["nat"][chain] = dnat
        frag.add_shared("nat", names.published, f"-j {chain}")
    return frag


def with_base(current: Ruleset, names: Names = DEFAULT) -> Ruleset:
    """``current`` with any missing base chain added with its fixed rules."""
    new = {t: {c: list(r) for c, r in current.get(t, {}).items()} for t in TABLES}
    for table, chains in names.base_chains().items():
        for chain, rules in chains.items():
            new[table].setdefault(chain, rules)
    return new


def without(current: Ruleset, frag: Fragment) -> Ruleset:
    """``current`` minus the fragment: its chains, and its shared entries.

    Shared entries are matched by text in their chain, and also by jump
    target, so a network whose bridge was renamed still loses its old
    dispatch rules.
    """
    new: Ruleset = {}
    for table in TABLES:
        new[table] = {}
        for chain, rules in current.get(table, {}).items():
            if chain != frag.name:
                drop = frag.shared[table].get(chain, [])
                new[table][chain] = [r for r in rules if r not in drop and _target(r) != frag.name]
    return new


def including(current: Ruleset, frag: Fragment, names: Names = DEFAULT) -> Ruleset:
    """``current`` with the fragment's chains (re)written and entries added once."""
    new = without(with_base(current, names), frag)
    for table in TABLES:
        new[table].update({c: list(r) for c, r in frag.own[table].items()})
        for chain, rules in frag.shared[table].items():
            new[table][chain] = new[table][chain] + rules
    return new


def pruned(state: Ruleset, names: Names = DEFAULT) -> Ruleset:
    """No chains at all once only the base chains are left, so a host whose
    last network is gone keeps no trace of Pontoon: no chains, no jumps."""
    base = names.base_chains()
    if all(set(state.get(t, {})) <= set(base[t]) for t in TABLES):
        return {t: {} for t in TABLES}
    return state


def _target(rule: str) -> str | None:
    words = rule.split()
    return words[words.index("-j") + 1] if "-j" in words else None


def desired(
    networks: list[NetworkRules], ports: list[EndpointPorts], family: str, names: Names = DEFAULT
) -> Ruleset:
    """The complete rule set for these networks and endpoints.

    Built in place (``including`` copies the whole rule set for each
    fragment, which made reconcile at start quadratic in the networks):
    stored networks and endpoints are distinct, so no entry is there twice.
    """
    state = with_base({}, names)
    frags = [network_fragment(n, family, names) for n in networks]
    frags += [ports_fragment(p, family, names) for p in ports]
    for frag in frags:
        for table in TABLES:
            state[table].update({c: list(r) for c, r in frag.own[table].items()})
            for chain, rules in frag.shared[table].items():
                state[table][chain] += rules
    return state


def _lines(table: str, body: list[str]) -> list[str]:
    return [f"*{table}", *body, "COMMIT"] if body else []


def _text(lines: list[str]) -> str:
    """Restore input; every line is checked whole as well, since a control
    character anywhere (a newline above all) would start a line of its own."""
    for line in lines:
        if not line.isprintable():
            raise UnsafeValue(line)
    return "\n".join(lines) + "\n" if lines else ""


def adding(frag: Fragment, names: Names = DEFAULT) -> str:
    """Restore input adding the fragment to a rule set that has our hooks and
    base chains and none of the fragment's chains; "" if it has no rules.

    Where that is not so the restore fails before the first change: ``-C``
    finds a hook missing (checked first, in sections of their own: mixed
    with changes, iptables-nft reads the rules of every chain the section
    names, and some grow with the networks), then ``-N`` finds the chain
    there (an add repeated, or one left half-way) or ``-A`` no base chain
    (the first network). Entries in base chains that jump to the fragment's
    chain cannot be there without the chain, and the others (isolation by
    bridge) are only ever added and removed in the same commit as it.
    """
    checks: list[str] = []
    changes: list[str] = []
    for table in TABLES:
        body: list[str] = []
        for chain, rules in frag.own[table].items():
            body += [f"-N {chain}", *(f"-A {chain} {r}" for r in rules)]
        body += [f"-A {chain} {r}" for chain, rules in frag.shared[table].items() for r in rules]
        if body:
            checks += _lines(table, [f"-C {chain} {jump}" for chain, jump in names.hooks()[table]])
            changes += _lines(table, body)
    return _text(checks + changes)


def removing(frag: Fragment, names: Names = DEFAULT, prune: bool = False) -> str:
    """Restore input removing exactly what ``adding`` added; "" if nothing.

    Fails unless every entry is there (``-D``) and nothing else jumps to the
    fragment's chains (``-X``). With ``prune``, the hooks and base chains go
    too, which fails unless the base chains hold nothing but their fixed
    rules once the fragment is out: for the last network.
    """
    base = names.base_chains()
    out: list[str] = []
    for table in TABLES:
        body = [f"-D {chain} {r}" for chain, rules in frag.shared[table].items() for r in rules]
        for chain in frag.own[table]:
            body += [f"-F {chain}", f"-X {chain}"]
        if prune and body:
            body += [f"-D {chain} {jump}" for chain, jump in names.hooks()[table]]
            body += [f"-D {chain} {r}" for chain, rules in base[table].items() for r in rules]
            body += [f"-X {chain}" for chain in base[table]]
        out += _lines(table, body)
    return _text(out)


@dataclass
class Saved:
    """The part of one family's ``iptables-save`` output Pontoon cares about."""

    ours: Ruleset  # our chains
    builtin: dict[str, Chains]  # table -> builtin chains we hook -> rule specs


def split_rule(line: str) -> tuple[str, str]:
    """"-A <chain> <spec>" as iptables prints it -> (chain, spec). A rule
    with neither match nor target (a user's counter) prints as "-A <chain>"."""
    _, chain, *spec = line.split(" ", 2)
    return chain, spec[0] if spec else ""


def parse_save(text: str, names: Names = DEFAULT) -> Saved:
    ours: Ruleset = {t: {} for t in TABLES}
    builtin: dict[str, Chains] = {t: {c: [] for c, _ in names.hooks()[t]} for t in TABLES}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table not in TABLES:
            continue
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if names.owns(name):
                ours[table][name] = []
        elif line.startswith("-A "):
            chain, spec = split_rule(line)
            if chain in ours[table]:
                ours[table][chain].append(spec)
            elif chain in builtin[table]:
                builtin[table][chain].append(spec)
    return Saved(ours, builtin)


def hook_in_place(rules: list[str], jump: str) -> bool:
    """Our jump is there once, below nothing but other Pontoons' jumps."""
    if rules.count(jump) != 1:
        return False
    return all((_target(r) or "").startswith(PONTOON) for r in rules[: rules.index(jump)])


def _same(chain: str, current: list[str] | None, wanted: list[str], base: set[str]) -> bool:
    """Whether a chain already holds the wanted rules.

    In the base chains (``base``) each network's or endpoint's entries only match its
    own bridge or jump to its own chain, so their order carries no meaning:
    concurrent operations append them in whatever order they ran, and
    reconcile should not rewrite a chain for that.
    """
    if current is None:
        return False
    if chain in base:
        return sorted(current) == sorted(wanted)
    return current == wanted


def plan(saved: Saved, target: Ruleset, family: str, names: Names = DEFAULT) -> tuple[str, list[str]]:
    """Restore input turning ``saved`` into ``target``, and what it changes.

    Returns ("", []) when nothing differs. Chains that differ are declared
    (which flushes them under --noflush) and refilled; chains no longer wanted
    are flushed the same way and then deleted, after every rule that jumped
    to them has been rewritten away in the same transaction.
    """
    out: list[str] = []
    changes: list[str] = []
    base_chains = names.base_chains()
    for table in TABLES:
        current = saved.ours.get(table, {})
        wanted = target.get(table, {})
        base = set(base_chains[table])
        rewrite = [c for c in wanted if not _same(c, current.get(c), wanted[c], base)]
        delete = sorted(c for c in current if c not in wanted)
        hooks = []
        for chain, jump in names.hooks()[table]:
            rules = saved.builtin[table].get(chain, [])
            keep = _target(jump) in wanted
            if (keep and not hook_in_place(rules, jump)) or (not keep and jump in rules):
                hooks.append((chain, jump, rules.count(jump), keep))
        if not (rewrite or delete or hooks):
            continue
        lines = [f"*{table}"]
        lines += [f":{c} - [0:0]" for c in rewrite + delete]
        for c in rewrite:
            lines += [f"-A {c} {r}" for r in wanted[c]]
            changes.append(f"{family} {table}: {'rewrite' if c in current else 'create'} chain {c}")
        for chain, jump, count, keep in hooks:
            lines += [f"-D {chain} {jump}"] * count
            if keep:
                lines.append(f"-I {chain} 1 {jump}")
            changes.append(f"{family} {table}: {'restore' if keep else 'remove'} jump {chain} -> {_target(jump)}")
        for c in delete:
            lines.append(f"-X {c}")
            changes.append(f"{family} {table}: delete chain {c}")
        lines.append("COMMIT")
        out += lines
    return _text(out), changes
