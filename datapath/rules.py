"""Pontoon's iptables rules as plain data: rendering, parsing and diffing.

Nothing here runs a command; ``datapath.firewall`` feeds the output of
``iptables-save`` in and pipes the text this module renders into
``iptables-restore --noflush``. Rules are written exactly as ``iptables-save``
prints them, so a rule read back compares equal to the rule rendered and
re-applying an unchanged rule set is a no-op.

Chain layout (the same for IPv4 and IPv6; chain names are per table)::

    filter FORWARD  -> PONTOON-FORWARD   (our jump is kept first, see HOOKS)
        PONTOON-FORWARD      per network: -i br / -o br -> PONTOON-N-<net>
        PONTOON-N-<net>      everything decided for traffic of that bridge
        PONTOON-ISOL-OUT     -o <any container bridge> DROP
        PONTOON-ISOL-IN      -i <any container bridge> DROP
        PONTOON-PORTS        per endpoint: -o br -> PONTOON-E-<ep>
        PONTOON-E-<ep>       ACCEPT to each published container port
    filter INPUT    -> PONTOON-INPUT     (IPv4: guards route_localnet)
    nat PREROUTING, OUTPUT (local destinations) -> PONTOON-DNAT
        PONTOON-DNAT         per endpoint: -> PONTOON-E-<ep>
        PONTOON-E-<ep>       DNAT host port -> container port
    nat POSTROUTING -> PONTOON-POSTROUTING
        PONTOON-POSTROUTING  per network: -> PONTOON-N-<net>
        PONTOON-N-<net>      masquerade, hairpin, localhost masquerade

A chain is always rewritten whole (declared, which flushes it, then refilled)
inside one restore, so a reader never sees half of one.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .model import EndpointPorts, NetworkRules

PREFIX = "PONTOON"
FORWARD = "PONTOON-FORWARD"
INPUT = "PONTOON-INPUT"
ISOL_OUT = "PONTOON-ISOL-OUT"
ISOL_IN = "PONTOON-ISOL-IN"
PORTS = "PONTOON-PORTS"
DNAT = "PONTOON-DNAT"
POSTROUTING = "PONTOON-POSTROUTING"

FAMILIES = ("ipv4", "ipv6")
TABLES = ("filter", "nat")

# Docker's default bridge and its user-defined bridges ("br-<12 hex>"): our
# networks are isolated from them both ways, as Docker isolates its own.
DOCKER_BRIDGES = ("docker0", "br-+")

# (builtin chain, our jump) per table. Each jump is kept as the first rule of
# its builtin chain: dockerd puts its own jumps first when it starts, and
# Docker's per-bridge rules accept anything leaving docker0 ("-i docker0
# ACCEPT"), which would let Docker's containers into our bridges before our
# isolation rules run. Our chains only decide on packets that enter or leave
# one of our bridges, so running first changes nothing for Docker's traffic.
_LOCAL = "-m addrtype --dst-type LOCAL "
HOOKS = {
    "filter": (("FORWARD", f"-j {FORWARD}"), ("INPUT", f"-j {INPUT}")),
    "nat": (
        ("PREROUTING", f"{_LOCAL}-j {DNAT}"),
        ("OUTPUT", f"{_LOCAL}-j {DNAT}"),
        ("POSTROUTING", f"-j {POSTROUTING}"),
    ),
}

Chains = dict[str, list[str]]  # chain name -> rule specs, without "-A <chain> "
Ruleset = dict[str, Chains]  # table -> our chains


def base_chains() -> Ruleset:
    """The chains every host gets, whatever networks exist."""
    return {
        "filter": {
            FORWARD: [],
            INPUT: [],
            ISOL_OUT: [f"-o {b} -j DROP" for b in DOCKER_BRIDGES],
            ISOL_IN: [f"-i {b} -j DROP" for b in DOCKER_BRIDGES],
            PORTS: [],
        },
        "nat": {DNAT: [], POSTROUTING: []},
    }


def network_chain(network_id: str) -> str:
    return f"{PREFIX}-N-{network_id[:12]}"


def endpoint_chain(endpoint_id: str) -> str:
    return f"{PREFIX}-E-{endpoint_id[:12]}"


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


def _version(family: str) -> int:
    return 4 if family == "ipv4" else 6


def _net(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def _host(address: str) -> str:
    """An address as iptables-save prints a single-host match."""
    ip = ipaddress.ip_interface(address).ip
    return f"{ip}/{ip.max_prefixlen}"


def network_fragment(rules: NetworkRules, family: str) -> Fragment:
    br = rules.bridge
    chain = network_chain(rules.network_id)
    subnets = rules.subnets_v4 if family == "ipv4" else rules.subnets_v6
    frag = Fragment(chain)

    frag.add_shared("filter", FORWARD, f"-i {br} -j {chain}")
    frag.add_shared("filter", FORWARD, f"-o {br} -j {chain}")
    frag.add_shared("filter", ISOL_OUT, f"-o {br} -j DROP")
    frag.add_shared("filter", ISOL_IN, f"-i {br} -j DROP")
    f = [
        # Isolation first, so no accept below lets another bridge in or out.
        f"-i {br} ! -o {br} -j {ISOL_OUT}",
        f"! -i {br} -o {br} -j {ISOL_IN}",
    ]
    if rules.internal:
        f += [f"-i {br} ! -o {br} -j DROP", f"! -i {br} -o {br} -j DROP"]
    else:
        f += [
            f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"! -i {br} -o {br} -j {PORTS}",
        ]
    f.append(f"-i {br} -o {br} -j {'ACCEPT' if rules.icc else 'DROP'}")
    if not rules.internal:
        f.append(f"-i {br} ! -o {br} -j ACCEPT")
    # Nothing else enters the bridge, whatever the FORWARD policy is.
    f.append(f"-o {br} -j DROP")
    frag.own["filter"][chain] = f

    n: list[str] = []
    if rules.masquerade and not rules.internal:
        n += [f"-s {_net(s)} ! -o {br} -j MASQUERADE" for s in subnets]
    # Hairpin: a container reaching a published port (its own or a
    # neighbour's) through a host address is DNATed back into the bridge;
    # without a new source the reply would skip the host and not match.
    n += [f"-s {_net(s)} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE" for s in subnets]
    if family == "ipv4" and subnets and not rules.internal:
        # Published ports on 127.0.0.1: OUTPUT DNATs the connection to the
        # container, the bridge's route_localnet=1 lets a packet with a
        # loopback source leave through it, and this masquerade gives it the
        # bridge's address so the container can answer. Docker does the same
        # with a userland proxy process per port; this needs none.
        n.append(f"-s 127.0.0.0/8 -o {br} -j MASQUERADE")
        # route_localnet also lets a container send to 127.0.0.1 on the host
        # (CVE-2020-8558); only answers to the host's own connections may.
        frag.add_shared(
            "filter", INPUT,
            f"-d 127.0.0.0/8 -i {br} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP",
        )
    frag.own["nat"][chain] = n
    frag.add_shared("nat", POSTROUTING, f"-j {chain}")
    return frag


def _any_address(host_ip: str) -> bool:
    return host_ip in ("", "0.0.0.0", "::")


def binding_family(container_ip: str) -> str:
    return "ipv4" if ipaddress.ip_interface(container_ip).version == 4 else "ipv6"


def ports_fragment(ports: EndpointPorts, family: str) -> Fragment:
    """Rules for the endpoint's bindings whose container address is of ``family``.

    A binding to a specific host address of the other family is a caller error.
    """
    chain = endpoint_chain(ports.endpoint_id)
    frag = Fragment(chain)
    accept: list[str] = []
    dnat: list[str] = []
    for b in ports.bindings:
        if b.proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"protocol {b.proto!r} cannot be published")
        if binding_family(b.container_ip) != family:
            continue
        cip = ipaddress.ip_interface(b.container_ip).ip
        dst = ""
        if not _any_address(b.host_ip):
            if ipaddress.ip_address(b.host_ip).version != _version(family):
                raise ValueError(f"host address {b.host_ip} and container address {cip} differ in family")
            dst = f"-d {_host(b.host_ip)} "
        to = f"{cip}:{b.container_port}" if family == "ipv4" else f"[{cip}]:{b.container_port}"
        proto = f"-p {b.proto} -m {b.proto}"
        accept.append(f"-d {_host(str(cip))} {proto} --dport {b.container_port} -j ACCEPT")
        dnat.append(f"{dst}{proto} --dport {b.host_port} -j DNAT --to-destination {to}")
    if dnat:
        frag.own["filter"][chain] = accept
        frag.own["nat"][chain] = dnat
        frag.add_shared("filter", PORTS, f"-o {ports.bridge} -j {chain}")
        frag.add_shared("nat", DNAT, f"-j {chain}")
    return frag


def with_base(current: Ruleset) -> Ruleset:
    """``current`` with any missing base chain added with its fixed rules."""
    new = {t: {c: list(r) for c, r in current.get(t, {}).items()} for t in TABLES}
    for table, chains in base_chains().items():
        for chain, rules in chains.items():
            new[table].setdefault(chain, rules)
    return new


def without(current: Ruleset, frag: Fragment) -> Ruleset:
    """``current`` minus the fragment: its chains, and its shared entries.

    Shared entries are matched by text and also by jump target, so a network
    whose bridge was renamed still loses its old dispatch rules.
    """
    new: Ruleset = {}
    for table in TABLES:
        drop_rules = {r for rules in frag.shared[table].values() for r in rules}
        new[table] = {}
        for chain, rules in current.get(table, {}).items():
            if chain != frag.name:
                new[table][chain] = [
                    r for r in rules if r not in drop_rules and _target(r) != frag.name
                ]
    return new


def including(current: Ruleset, frag: Fragment) -> Ruleset:
    """``current`` with the fragment's chains (re)written and entries added once."""
    new = without(with_base(current), frag)
    for table in TABLES:
        new[table].update({c: list(r) for c, r in frag.own[table].items()})
        for chain, rules in frag.shared[table].items():
            new[table][chain] = new[table][chain] + rules
    return new


def _target(rule: str) -> str | None:
    words = rule.split()
    return words[words.index("-j") + 1] if "-j" in words else None


def desired(networks: list[NetworkRules], ports: list[EndpointPorts], family: str) -> Ruleset:
    """The complete rule set for these networks and endpoints."""
    state = with_base({})
    for rules in networks:
        state = including(state, network_fragment(rules, family))
    for p in ports:
        state = including(state, ports_fragment(p, family))
    return state


@dataclass
class Saved:
    """The part of one family's ``iptables-save`` output Pontoon cares about."""

    ours: Ruleset  # our chains
    builtin: dict[str, Chains]  # table -> builtin chains we hook -> rule specs


def parse_save(text: str) -> Saved:
    ours: Ruleset = {t: {} for t in TABLES}
    builtin: dict[str, Chains] = {t: {c: [] for c, _ in HOOKS[t]} for t in TABLES}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table not in TABLES:
            continue
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(PREFIX + "-"):
                ours[table][name] = []
        elif line.startswith("-A "):
            _, chain, spec = line.split(" ", 2)
            if chain in ours[table]:
                ours[table][chain].append(spec)
            elif chain in builtin[table]:
                builtin[table][chain].append(spec)
    return Saved(ours, builtin)


def plan(saved: Saved, target: Ruleset, family: str, fix_hooks: bool = True) -> tuple[str, list[str]]:
    """Restore input turning ``saved`` into ``target``, and what it changes.

    Returns ("", []) when nothing differs. Chains that differ are declared
    (which flushes them under --noflush) and refilled; chains no longer wanted
    are flushed the same way and then deleted, after every rule that jumped
    to them has been rewritten away in the same transaction.
    """
    out: list[str] = []
    changes: list[str] = []
    for table in TABLES:
        current = saved.ours.get(table, {})
        wanted = target.get(table, {})
        rewrite = [c for c in wanted if current.get(c) != wanted[c]]
        delete = sorted(c for c in current if c not in wanted)
        hooks = []
        if fix_hooks:
            for chain, jump in HOOKS[table]:
                rules = saved.builtin[table].get(chain, [])
                if rules[:1] != [jump] or rules.count(jump) != 1:
                    hooks.append((chain, jump, rules.count(jump)))
        if not (rewrite or delete or hooks):
            continue
        lines = [f"*{table}"]
        lines += [f":{c} - [0:0]" for c in rewrite + delete]
        for c in rewrite:
            lines += [f"-A {c} {r}" for r in wanted[c]]
            changes.append(f"{family} {table}: {'rewrite' if c in current else 'create'} chain {c}")
        for chain, jump, count in hooks:
            lines += [f"-D {chain} {jump}"] * count
            lines.append(f"-I {chain} 1 {jump}")
            changes.append(f"{family} {table}: restore jump {chain} -> {_target(jump)}")
        for c in delete:
            lines.append(f"-X {c}")
            changes.append(f"{family} {table}: delete chain {c}")
        lines.append("COMMIT")
        out += lines
    return ("\n".join(out) + "\n" if out else ""), changes
