"""The firewall against the real kernel, with traffic between namespaces.

Each behaviour is checked by traffic that the rule under test decides, with
the FORWARD policy at DROP as dockerd leaves it, so a missing rule fails.
"""
from __future__ import annotations

import dataclasses
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from datapath.errors import DatapathError
from datapath.firewall import Firewall
from datapath.hostports import Claim, Holder
from datapath.model import EndpointPorts, NetworkRules, PortBinding

from .firewall_env import NAMES, PORT, HostForwarding, Lab, missing, network, sh, trace

pytestmark = pytest.mark.root

_why = missing()
if _why:
    pytest.skip(f"firewall netns tests skipped: {_why}", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def host():
    with HostForwarding() as h:
        yield h


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def ports(net, c, *bindings) -> EndpointPorts:
    return EndpointPorts(uuid.uuid4().hex * 2, net.network_id, net.bridge, tuple(bindings))


def test_icc_on_lets_containers_talk_and_reach_out(lab):
    br = lab.bridge()
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    assert lab.reach(c1.ns, c2.ip) is None  # the DROP policy alone
    lab.add_network(network(br))
    assert lab.reach(c1.ns, c2.ip) == c1.ip
    assert lab.reach(c2.ns, c1.ip) == c2.ip
    assert lab.reach(c1.ns, out.ip) == out.host_ip


def test_icc_off_blocks_containers_but_not_the_outside(lab):
    br = lab.bridge()
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    lab.add_network(network(br, icc=False))
    assert lab.reach(c1.ns, c2.ip) is None
    assert lab.reach(c2.ns, c1.ip, proto="udp") is None
    assert lab.reach(c1.ns, out.ip) == out.host_ip


def test_masquerade_replaces_the_source_with_the_hosts_address(lab):
    br = lab.bridge()
    c1, out = lab.container(br), lab.outside()
    lab.add_network(network(br))
    assert lab.reach(c1.ns, out.ip) == out.host_ip
    assert lab.reach(c1.ns, out.ip, proto="udp") == out.host_ip


def test_without_masquerade_the_container_address_goes_out(lab):
    br = lab.bridge()
    c1, out = lab.container(br), lab.outside()
    lab.add_network(network(br, masquerade=False))
    assert lab.reach(c1.ns, out.ip) == c1.ip
    assert trace(f"! -o {br.name} -j MASQUERADE") == []


def test_outside_cannot_open_connections_to_containers(lab):
    br = lab.bridge()
    c1, out = lab.container(br), lab.outside()
    lab.add_network(network(br, masquerade=False))
    # Allowed by FORWARD's policy if it were ACCEPT; our chain drops it itself.
    sh("iptables", "-w", "-P", "FORWARD", "ACCEPT")
    try:
        assert lab.reach(out.ns, c1.ip) is None
    finally:
        sh("iptables", "-w", "-P", "FORWARD", "DROP")


def test_internal_network_stays_inside(lab):
    br = lab.bridge()
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    lab.add_network(network(br, internal=True))
    assert lab.reach(c1.ns, c2.ip) == c1.ip
    assert lab.reach(c1.ns, out.ip) is None
    assert lab.reach(out.ns, c1.ip) is None
    assert not lab.forwarded(c1.ip, out.ip) and not lab.forwarded(out.ip, c1.ip)
    assert [l for l in trace(br.name) if "MASQUERADE" in l] == []


def test_host_reaches_containers_directly(lab):
    normal, internal = lab.bridge(), lab.bridge()
    c1, c2 = lab.container(normal), lab.container(internal)
    lab.add_network(network(normal, icc=False))
    lab.add_network(network(internal, internal=True))
    assert lab.reach(None, c1.ip) == normal.gateway
    assert lab.reach(None, c2.ip) == internal.gateway


def test_two_pontoon_networks_are_isolated_both_ways(lab):
    a, b = lab.bridge(), lab.bridge()
    ca, cb, out = lab.container(a), lab.container(b), lab.outside()
    net_a = network(a)
    lab.add_network(net_a)
    lab.add_network(network(b, masquerade=False))
    # Published, so only isolation keeps the other network from it.
    lab.add_ports(ports(net_a, ca, PortBinding("udp", "", 18060, ca.ip, PORT)))
    assert lab.reach(ca.ns, cb.ip) is None
    assert lab.reach(cb.ns, ca.ip, proto="udp") is None
    assert not lab.forwarded(ca.ip, cb.ip) and not lab.forwarded(cb.ip, ca.ip)
    assert lab.reach(ca.ns, out.ip) == out.host_ip
    assert lab.reach(cb.ns, out.ip) == cb.ip
    assert lab.forwarded(cb.ip, out.ip)  # the check sees what did get through


def test_isolated_from_dockers_bridges_both_ways(lab):
    ours, docker = lab.bridge(), lab.bridge(name=f"br-{lab.tag}")
    c, d = lab.container(ours), lab.container(docker)
    # Stand-in for Docker's own rules, which accept all traffic leaving its
    # bridges and its replies; our chain runs first and must drop it.
    chain = f"PTTEST-{lab.tag}"
    sh("iptables", "-w", "-N", chain)
    lab._cleanup.append(lambda: sh("iptables", "-w", "-X", chain))
    for rule in ([f"-i {docker.name} -j ACCEPT"], [f"-o {docker.name} -j ACCEPT"]):
        sh("iptables", "-w", "-A", chain, *rule[0].split())
    sh("iptables", "-w", "-A", "FORWARD", "-j", chain)
    lab._cleanup.append(lambda: (sh("iptables", "-w", "-D", "FORWARD", "-j", chain),
                                 sh("iptables", "-w", "-F", chain)))
    net = network(ours, masquerade=False)
    lab.add_network(net)
    # Published, so only isolation keeps Docker's containers from it.
    lab.add_ports(ports(net, c, PortBinding("udp", "", 18070, c.ip, PORT)))
    assert lab.reach(c.ns, d.ip, proto="udp") is None
    assert not lab.forwarded(c.ip, d.ip)
    assert lab.reach(d.ns, c.ip, proto="udp") is None
    assert not lab.forwarded(d.ip, c.ip)


@pytest.fixture
def published(lab):
    """A container publishing PORT as tcp 18080 and udp 18081 on all addresses."""
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    net = network(br)
    lab.add_network(net)
    p = ports(net, c, PortBinding("tcp", "", 18080, c.ip, PORT), PortBinding("udp", "", 18081, c.ip, PORT))
    assert lab.reach(out.ns, out.host_ip, 18080) is None
    lab.add_ports(p)
    return br, c, out, p


def test_published_ports_from_the_outside(lab, published):
    br, c, out, _ = published
    assert lab.reach(out.ns, out.host_ip, 18080) == out.ip
    assert lab.reach(out.ns, out.host_ip, 18081, proto="udp") == out.ip


def test_published_ports_from_the_host(lab, published):
    br, c, out, _ = published
    assert lab.reach(None, out.host_ip, 18080) == out.host_ip
    assert lab.reach(None, out.host_ip, 18081, proto="udp") == out.host_ip


def test_published_ports_on_localhost(lab, published):
    br, c, out, _ = published
    assert lab.reach(None, "127.0.0.1", 18080) == br.gateway
    assert lab.reach(None, "127.0.0.1", 18081, proto="udp") == br.gateway


def test_container_reaches_itself_through_the_host(lab, published):
    br, c, out, _ = published
    assert lab.reach(c.ns, out.host_ip, 18080) == br.gateway
    assert lab.reach(c.ns, out.host_ip, 18081, proto="udp") == br.gateway


def test_containers_cannot_use_the_hosts_loopback(lab, published):
    br, c, out, _ = published
    # route_localnet=1 on the bridge would let a container reach services the
    # host binds to 127.0.0.0/8; the INPUT rule must drop what it sends there.
    # (UDP: a TCP answer from 127.0.0.2 would be a martian in the container,
    # but the host would already have received the packet.)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.2", 0))
        server.settimeout(2)
        # The container's own loopback would take 127.0.0.2 otherwise.
        sh("ip", "-n", c.ns, "link", "set", "lo", "down")
        sh("ip", "-n", c.ns, "route", "add", "127.0.0.2/32", "via", br.gateway)
        sh("ip", "netns", "exec", c.ns, "python3", "-c",
           "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.2', %d))"
           % server.getsockname()[1])
        with pytest.raises(TimeoutError):
            server.recvfrom(10)


def test_port_bound_to_one_host_address(lab):
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    net = network(br)
    lab.add_network(net)
    lab.add_ports(ports(net, c, PortBinding("tcp", out.host_ip, 18090, c.ip, PORT)))
    assert lab.reach(out.ns, out.host_ip, 18090) == out.ip
    assert lab.reach(None, "127.0.0.1", 18090) is None


def test_host_port_range(lab):
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    net = network(br)
    lab.add_network(net)
    lab.add_ports(ports(net, c, *(PortBinding("tcp", "", hp, c.ip, PORT) for hp in range(18100, 18104))))
    for hp in range(18100, 18104):
        assert lab.reach(out.ns, out.host_ip, hp) == out.ip


def test_host_port_zero_picks_a_free_port(lab):
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    low, high = lab.fw.ephemeral_range()
    used = set(range(low, low + (high - low) // 2))
    holder = Holder()
    [port] = holder.claim([Claim.spread("tcp", "0.0.0.0", low, high, skip=used)])
    assert low <= port <= high and port not in used
    net = network(br)
    lab.add_network(net)
    lab.add_ports(ports(net, c, PortBinding("tcp", "", port, c.ip, PORT)))
    # Held (bound and listening) on the host, and still forwarded: the DNAT
    # comes before local delivery.
    assert lab.reach(out.ns, out.host_ip, port) == out.ip
    holder.release(holder.held())


def test_removal_leaves_no_trace(lab):
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    net = network(br)
    p = ports(net, c, PortBinding("tcp", "", 18110, c.ip, PORT), PortBinding("udp", "", 18111, c.ip, PORT))
    lab.add_network(net)
    lab.add_ports(p)
    assert lab.reach(out.ns, out.host_ip, 18111, proto="udp") == out.ip
    assert sh("conntrack", "-L", "-p", "udp", "--reply-src", c.ip, check=False).stdout.strip()
    lab.fw.remove_ports(p)
    assert trace(p.endpoint_id[:12]) == []
    assert sh("conntrack", "-L", "-p", "udp", "--reply-src", c.ip, check=False).stdout.strip() == ""
    assert lab.reach(out.ns, out.host_ip, 18110) is None
    lab.fw.remove_network(net)
    assert trace(net.network_id[:12], br.name) == []
    lab.fw.remove_network(net)  # idempotent
    lab.fw.remove_ports(p)


def test_reconcile_repairs_what_a_user_removed(lab):
    br = lab.bridge()
    c1, c2 = lab.container(br), lab.container(br)
    net = network(br)
    p = ports(net, c1, PortBinding("tcp", "", 18120, c1.ip, PORT))
    lab.add_network(net)
    lab.add_ports(p)
    assert lab.fw.reconcile([net], [p]) == []  # what we applied reads back the same

    chain = NAMES.network(net.network_id)
    sh("iptables", "-w", "-F", chain)
    assert lab.reach(c1.ns, c2.ip) is None
    assert lab.fw.reconcile([net], [p]) == [f"ipv4 filter: rewrite chain {chain}"]
    assert lab.reach(c1.ns, c2.ip) == c1.ip

    sh("iptables", "-w", "-D", "FORWARD", "-j", NAMES.forward)
    assert lab.reach(c1.ns, c2.ip) is None
    assert lab.fw.reconcile([net], [p]) == [f"ipv4 filter: restore jump FORWARD -> {NAMES.forward}"]
    assert lab.reach(c1.ns, c2.ip) == c1.ip


def test_reconcile_deletes_orphans_and_reclaims_the_top(lab):
    br = lab.bridge()
    c1, c2 = lab.container(br), lab.container(br)
    gone, kept = network(lab.bridge()), network(br)
    lab.add_network(gone)
    lab.add_network(kept)
    changes = lab.fw.reconcile([kept], [])
    assert f"ipv4 filter: delete chain {NAMES.network(gone.network_id)}" in changes
    assert trace(gone.network_id[:12], gone.bridge) == []

    # dockerd, when it starts, puts its jumps above ours.
    chain = f"PTTEST-{lab.tag}"
    sh("iptables", "-w", "-N", chain)
    lab._cleanup.append(lambda: sh("iptables", "-w", "-X", chain))
    sh("iptables", "-w", "-I", "FORWARD", "1", "-j", chain)
    lab._cleanup.append(lambda: sh("iptables", "-w", "-D", "FORWARD", "-j", chain))
    assert lab.fw.reconcile([kept], []) == [f"ipv4 filter: restore jump FORWARD -> {NAMES.forward}"]
    forward = sh("iptables", "-S", "FORWARD").stdout.splitlines()
    # Only another Pontoon's jump (one may run on this host) may precede ours.
    assert forward.index(f"-A FORWARD -j {NAMES.forward}") < forward.index(f"-A FORWARD -j {chain}")
    assert lab.reach(c1.ns, c2.ip) == c1.ip


def test_ipv6_icc_masquerade_isolation_and_ports(lab):
    a, b = lab.bridge(v6=True), lab.bridge(v6=True)
    c1, c2, cb, out = lab.container(a), lab.container(a), lab.container(b), lab.outside()
    net = network(a)
    lab.add_network(net)
    lab.add_network(network(b))
    assert lab.reach(c1.ns, c2.ip6) == c1.ip6
    assert lab.reach(c1.ns, out.ip6) == out.host_ip6
    assert lab.reach(c1.ns, cb.ip6) is None and lab.reach(cb.ns, c1.ip6) is None
    assert lab.reach(out.ns, c1.ip6) is None
    lab.add_ports(ports(net, c1, PortBinding("tcp", "", 18140, c1.ip6, PORT),
                        PortBinding("udp", "::", 18141, c1.ip6, PORT)))
    assert lab.reach(out.ns, out.host_ip6, 18140) == out.ip6
    assert lab.reach(out.ns, out.host_ip6, 18141, proto="udp") == out.ip6
    assert lab.reach(None, out.host_ip6, 18140) == out.host_ip6
    assert lab.reach(c1.ns, out.host_ip6, 18140) == a.gateway_v6  # hairpin


def test_concurrent_workers_lose_no_change(lab, tmp_path):
    bridges = [lab.bridge() for _ in range(4)]
    nets = [network(br) for br in bridges]
    for net in nets:
        lab._cleanup.append(lambda net=net: lab.fw.remove_network(net))

    def add(net):  # one Firewall per worker, one lock file, as gunicorn runs them
        Firewall(tmp_path / "firewall.lock", chain_prefix=NAMES.prefix).add_network(net)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, nets))
    saved = sh("iptables-save").stdout
    for net in nets:
        assert f"-A {NAMES.bridges} -i {net.bridge} -j {NAMES.network(net.network_id)}" in saved
    assert lab.fw.reconcile(nets, []) == []


def test_concurrent_adds_and_removes_lose_no_change(lab, tmp_path):
    nets = [network(lab.bridge()) for _ in range(6)]
    kept, removed = nets[:3], nets[3:]
    for net in removed:
        lab.add_network(net)
    for net in kept:
        lab._cleanup.append(lambda net=net: lab.fw.remove_network(net))

    def run(op):  # one Firewall per worker, one lock file, no other lock
        op(Firewall(tmp_path / "firewall.lock", chain_prefix=NAMES.prefix))

    ops = [lambda fw, n=n: fw.add_network(n) for n in kept] + [lambda fw, n=n: fw.remove_network(n) for n in removed]
    with ThreadPoolExecutor(len(ops)) as pool:
        list(pool.map(run, ops))
    assert lab.fw.reconcile(kept, []) == []


def test_repeated_adds_change_nothing(lab):
    br = lab.bridge()
    c = lab.container(br)
    net = network(br)
    p = ports(net, c, PortBinding("tcp", "", 18150, c.ip, PORT))
    lab.add_network(net)
    lab.add_ports(p)
    once = trace(NAMES.prefix)
    lab.fw.add_network(net)
    lab.fw.add_ports(p)
    assert trace(NAMES.prefix) == once
    assert lab.fw.reconcile([net], [p]) == []


def test_an_add_restores_a_missing_jump(lab):
    br = lab.bridge()
    c1, c2 = lab.container(br), lab.container(br)
    net, other = network(br), network(lab.bridge())
    lab.add_network(net)
    sh("iptables", "-w", "-D", "FORWARD", "-j", NAMES.forward)
    assert lab.reach(c1.ns, c2.ip) is None
    lab.add_network(other)
    assert lab.reach(c1.ns, c2.ip) == c1.ip
    assert lab.fw.reconcile([net, other], []) == []


def test_an_add_moves_our_forward_jump_back_to_the_top(lab):
    first, second = network(lab.bridge()), network(lab.bridge())
    lab.add_network(first)
    # dockerd, when it starts or makes a network, puts its rules above ours.
    chain = f"PTTEST-{lab.tag}"
    sh("iptables", "-w", "-N", chain)
    lab._cleanup.append(lambda: sh("iptables", "-w", "-X", chain))
    sh("iptables", "-w", "-I", "FORWARD", "1", "-j", chain)
    lab._cleanup.append(lambda: sh("iptables", "-w", "-D", "FORWARD", "-j", chain))
    lab.add_network(second)
    forward = sh("iptables", "-S", "FORWARD").stdout.splitlines()
    assert forward.index(f"-A FORWARD -j {NAMES.forward}") < forward.index(f"-A FORWARD -j {chain}")


def test_the_base_chains_go_with_the_last_network_only(lab):
    first, last = network(lab.bridge()), network(lab.bridge())
    lab.add_network(first)
    lab.add_network(last)
    lab.fw.remove_network(first)
    assert trace(f"-A FORWARD -j {NAMES.forward}") != []
    assert lab.fw.reconcile([last], []) == []
    lab.fw.remove_network(last)
    assert trace(NAMES.prefix) == []


class Boom(Exception):
    pass


@pytest.mark.parametrize("op", ["network", "ports"])
def test_a_fault_at_any_step_leaves_nothing(lab, op, tmp_path):
    br = lab.bridge()
    c = lab.container(br)
    net = network(br)
    # A v6 binding too, so a fault in the IPv6 step must undo the IPv4 one.
    p = ports(net, c, PortBinding("tcp", "", 18130, c.ip, PORT), PortBinding("tcp", "", 18130, "fd00:250::2", PORT))
    localnet = f"/proc/sys/net/ipv4/conf/{br.name}/route_localnet"
    words = [p.endpoint_id[:12]] if op == "ports" else [net.network_id[:12], br.name]

    def run(faults):
        fw = Firewall(tmp_path / "firewall.lock", faults=faults, chain_prefix=NAMES.prefix)
        fw.add_network(net) if op == "network" else fw.add_ports(p)

    if op == "ports":
        lab.add_network(net)
    steps: list[str] = []
    run(steps.append)  # a clean run names every step
    lab.fw.remove_ports(p) if op == "ports" else lab.fw.remove_network(net)
    assert "apply ipv4 firewall" in steps and "apply ipv6 firewall" in steps
    for step in steps:
        open(localnet, "w").write("0")

        def fault(name, step=step):
            if name == step:
                raise Boom(step)

        with pytest.raises(DatapathError) as err:
            run(fault)
        assert err.value.step == step
        assert trace(*words) == [], f"fault at {step!r} left rules behind"
        if op == "network":
            assert open(localnet).read().strip() == "0", f"fault at {step!r} left route_localnet"


# -- Docker 28's gateway modes and direct-routing protection -------------------
# The outside namespace routes the bridges' subnets to the host, as a
# neighbour on the host's LAN could (firewall_env.Lab.outside).

def routed_lab(lab, **kw):
    """A network with c1 publishing PORT as host port 18200 (tcp and udp),
    and c2 publishing nothing."""
    br = lab.bridge(v6=True)
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    net = network(br, **kw)
    lab.add_network(net)
    published = ports(net, c1, PortBinding("tcp", "", 18200, c1.ip, PORT),
                      PortBinding("udp", "", 18200, c1.ip, PORT),
                      PortBinding("tcp", "::", 18200, c1.ip6, PORT))
    # As network_driver.records.endpoint_ports says for the network's modes.
    lab.add_ports(dataclasses.replace(published, routed=tuple(
        f for f in ("ipv4", "ipv6") if net.gateway_mode(f) == "routed")))
    return br, c1, c2, out, net


def test_nat_mode_keeps_neighbours_off_container_addresses(lab):
    _, c1, c2, out, _ = routed_lab(lab)
    # Published or not, no port is reached at the container's own address...
    for ip in (c1.ip, c2.ip, c1.ip6, c2.ip6):
        assert lab.reach(out.ns, ip) is None, ip
    assert lab.reach(out.ns, c1.ip, proto="udp") is None
    assert not lab.forwarded(out.ip, c1.ip) and not lab.forwarded(out.ip6, c1.ip6)
    # ... published ones are, through the host's address, and the
    # containers still reach out.
    assert lab.reach(out.ns, out.host_ip, 18200) == out.ip
    assert lab.reach(out.ns, out.host_ip, 18200, proto="udp") == out.ip
    assert lab.reach(out.ns, out.host_ip6, 18200) == out.ip6
    assert lab.reach(c2.ns, out.ip) == out.host_ip


def test_trusted_interfaces_reach_published_ports_directly(lab):
    out0 = lab.outside()  # created first so that its interface can be trusted
    _, c1, c2, out, _ = routed_lab(lab, trusted_interfaces=(out0.host_end,))
    assert lab.reach(out0.ns, c1.ip) == out0.ip
    assert lab.reach(out0.ns, c1.ip, proto="udp") == out0.ip
    assert lab.reach(out0.ns, c1.ip6) == out0.ip6
    assert lab.reach(out0.ns, c2.ip) is None  # an unpublished port stays closed
    assert lab.reach(out.ns, c1.ip) is None  # and other interfaces stay untrusted


def test_nat_unprotected_lets_every_port_be_reached_directly(lab):
    _, c1, c2, out, _ = routed_lab(lab, gateway_mode_v4="nat-unprotected", gateway_mode_v6="nat-unprotected")
    assert lab.reach(out.ns, c1.ip) == out.ip
    assert lab.reach(out.ns, c2.ip) == out.ip
    assert lab.reach(out.ns, c2.ip6) == out.ip6
    assert lab.reach(out.ns, out.host_ip, 18200) == out.ip  # still NAT
    assert lab.reach(c2.ns, out.ip) == out.host_ip


def test_routed_mode_publishes_at_the_container_address_without_nat(lab):
    br, c1, c2, out, _ = routed_lab(lab, gateway_mode_v4="routed", gateway_mode_v6="routed")
    assert lab.reach(out.ns, c1.ip) == out.ip
    assert lab.reach(out.ns, c1.ip, proto="udp") == out.ip
    assert lab.reach(out.ns, c1.ip6) == out.ip6
    assert lab.reach(out.ns, c2.ip) is None and lab.reach(out.ns, c2.ip6) is None
    assert lab.ping(out.ns, c2.ip) and lab.ping(out.ns, c2.ip6)
    assert lab.reach(out.ns, out.host_ip, 18200) is None  # no host port mapped
    assert lab.reach(c2.ns, out.ip) == c2.ip  # no masquerade
    assert lab.reach(c2.ns, out.ip6) == c2.ip6
    assert [l for l in trace(br.name) if "MASQUERADE" in l and "127.0.0.0" not in l] == []


def test_modes_are_per_family(lab):
    _, c1, c2, out, _ = routed_lab(lab, gateway_mode_v4="nat", gateway_mode_v6="routed")
    assert lab.reach(out.ns, c1.ip) is None and lab.reach(out.ns, c1.ip6) == out.ip6
    assert lab.reach(c2.ns, out.ip) == out.host_ip and lab.reach(c2.ns, out.ip6) == c2.ip6


def test_isolated_mode_without_a_bridge_address(lab):
    br = lab.bridge(v6=True, address=False)
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    lab.add_network(network(br, internal=True, gateway_mode_v4="isolated", gateway_mode_v6="isolated"))
    assert lab.reach(c1.ns, c2.ip) == c1.ip and lab.reach(c2.ns, c1.ip6) == c2.ip6
    assert lab.reach(None, c1.ip) is None and lab.reach(None, c1.ip6) is None
    assert lab.reach(out.ns, c1.ip) is None and lab.reach(c1.ns, out.ip) is None


def test_a_port_on_the_loopback_address_is_not_reachable_from_a_neighbour(lab):
    br = lab.bridge()
    c, out = lab.container(br), lab.outside()
    net = network(br)
    lab.add_network(net)
    lab.add_ports(ports(net, c, PortBinding("tcp", "127.0.0.1", 18210, c.ip, PORT)))
    assert lab.reach(None, "127.0.0.1", 18210) == br.gateway
    lab.route_loopback_to_host(out)
    # The answer cannot get back (its source is 127.0.0.1), so whether the
    # neighbour's packet reached the container is what conntrack saw leave.
    assert lab.reach(out.ns, "127.0.0.1", 18210) is None
    assert not lab.forwarded(out.ip, "127.0.0.1")
    # Positive control: without our rule the neighbour's packet gets through.
    drop = ["-o", br.name, "-m", "conntrack", "--ctorigdst", "127.0.0.0/8", "-j", "DROP"]
    sh("iptables", "-w", "-D", NAMES.network(net.network_id), *drop)
    lab.reach(out.ns, "127.0.0.1", 18210)
    assert lab.forwarded(out.ip, "127.0.0.1")


def test_host_addresses_are_the_source_of_masqueraded_traffic(lab):
    br = lab.bridge(v6=True)
    c, out = lab.container(br), lab.outside()
    ip, ip6 = lab.second_host_address(out)
    lab.add_network(network(br, host_ipv4=ip, host_ipv6=ip6))
    assert lab.reach(c.ns, out.ip) == ip
    assert lab.reach(c.ns, out.ip, proto="udp") == ip
    assert lab.reach(c.ns, out.ip6) == ip6


def test_ipv6_only_network_forwards_no_ipv4(lab):
    br = lab.bridge(v6=True)
    c1, c2, out = lab.container(br), lab.container(br), lab.outside()
    net = network(br)
    lab.add_network(NetworkRules(net.network_id, br.name, (), net.subnets_v6, ipv4=False))
    assert lab.reach(c1.ns, out.ip6) == out.host_ip6
    assert lab.reach(c1.ns, c2.ip6) == c1.ip6
    # The lab gave the containers IPv4 addresses all the same: none leaves.
    assert lab.reach(c1.ns, out.ip) is None and not lab.forwarded(c1.ip, out.ip)
    assert [l for l in trace(br.name) if l.startswith("-A") and "MASQUERADE" in l and "." in l] == []


@pytest.mark.parametrize("kw", [
    {"gateway_mode_v4": "routed", "gateway_mode_v6": "routed"},
    {"gateway_mode_v4": "nat-unprotected", "gateway_mode_v6": "nat"},
    {"host_ipv4": "192.0.2.1", "host_ipv6": "fd00:252::1", "trusted_interfaces": ("eth9", "vpn0")},
    {"ipv4": False},
], ids=["routed", "unprotected", "host-addresses", "ipv6-only"])
def test_new_rules_read_back_as_rendered(lab, kw):
    """Reconcile compares what iptables-save prints with what we render: a
    rule it prints differently would be rewritten at every start."""
    br = lab.bridge(v6=True)
    c = lab.container(br)
    net = network(br, **kw)
    p = ports(net, c, PortBinding("tcp", "", 18220, c.ip, PORT), PortBinding("tcp", "::", 18220, c.ip6, PORT))
    lab.add_network(net)
    lab.add_ports(p)
    assert lab.fw.reconcile([net], [p]) == []
