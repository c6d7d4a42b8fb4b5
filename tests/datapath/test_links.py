"""datapath.links against the real kernel, observed with the ``ip`` tool."""
from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
import subprocess

import pytest

from datapath import names, rtnl
from datapath.errors import DatapathError, InvalidName, NameConflict, NameTaken
from datapath.links import Links
from datapath.model import BridgeSpec, VethSpec

from testbed.netns import run_in_netns
from testbed.server import fresh_python

from .conftest import IP, ip, ip_json, suffix


class Boom(Exception):
    """What the fault hook raises: the kernel refusing a step."""


def new_bridge_name() -> str:
    return "pt-t" + suffix()


def new_endpoint_id() -> str:
    return secrets.token_hex(32)


def first_names(endpoint_id: str) -> tuple[str, str]:
    """The (host end, peer end) an endpoint takes when its first tag is free."""
    return names.veth_names(next(names.tags(endpoint_id)))


def owned(links: Links) -> dict[str, str]:
    """Name -> kind of every link that ``links`` takes for its own instance's
    (what its reconcile may remove)."""
    with rtnl.Rtnl() as nl:
        present = nl.links()
    by_index = {link.index: link for link in present.values()}
    return {name: link.kind for name, link in present.items() if links._ours(name, link, by_index)}


def free_subnets(links: Links) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """A random /24 and /64 that overlap no route of this host."""
    routes = links.host_routes()
    while True:
        v4 = ipaddress.ip_network(f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.0/24")
        v6 = ipaddress.ip_network(f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64")
        if not any(v4.overlaps(r) or v6.overlaps(r) for r in routes):
            return v4, v6


def gateway(net, host: int = 1) -> str:
    return f"{net[host]}/{net.prefixlen}"


def link_info(name: str, netns: str | None = None) -> dict | None:
    args = (["-n", netns] if netns else []) + ["-d", "link", "show", "dev", name]
    res = ip("-j", *args, check=False)
    return ip_json(*args)[0] if res.returncode == 0 else None


def addresses(name: str, netns: str | None = None) -> set[str]:
    args = (["-n", netns] if netns else []) + ["addr", "show", "dev", name]
    return {f'{a["local"]}/{a["prefixlen"]}'
            for a in ip_json(*args)[0]["addr_info"] if a.get("scope") == "global"}


def sysfs(name: str, attr: str) -> str:
    with open(f"/sys/class/net/{name}/{attr}") as f:
        return f.read().strip()


def read_sysctl(family: str, name: str, key: str) -> str:
    with open(f"/proc/sys/net/{family}/conf/{name}/{key}") as f:
        return f.read().strip()


def write_sysctl(family: str, name: str, key: str, value: str) -> None:
    with open(f"/proc/sys/net/{family}/conf/{name}/{key}", "w") as f:
        f.write(value)


def ipv6_disabled(name: str) -> str:
    return read_sysctl("ipv6", name, "disable_ipv6")


@pytest.fixture
def bridge_spec(kernel):
    links = Links()
    v4, v6 = free_subnets(links)
    return BridgeSpec(kernel.link(new_bridge_name()), mtu=1400,
                      addresses=(gateway(v4), gateway(v6)))


# -- names and MACs (pure, no kernel) -----------------------------------------

def test_veth_names_are_deterministic_short_and_prefixed():
    eid = new_endpoint_id()
    host, peer = first_names(eid)
    assert (host, peer) == first_names(eid)
    assert host.startswith("ptv") and peer.startswith("ptc")
    assert len(host) <= 15 and len(peer) <= 15
    assert host[3:] == peer[3:] == eid[:12]
    assert first_names(new_endpoint_id()) != (host, peer)


@pytest.mark.parametrize("bad", ["", "abc", "Z" * 64, "../" + "0" * 60])
def test_tags_refuse_ids_that_are_not_hex(bad):
    with pytest.raises(InvalidName):
        first_names(bad)


def test_derive_mac_from_ipv4_like_docker():
    assert Links.derive_mac("10.0.0.2", "x") == "02:42:0a:00:00:02"
    # dockerd sends Interface.Address with its prefix
    assert Links.derive_mac("172.18.255.254/16", "x") == "02:42:ac:12:ff:fe"


def test_derive_mac_without_ipv4_is_stable_local_unicast():
    eid = new_endpoint_id()
    mac = Links.derive_mac(None, eid)
    assert mac == Links.derive_mac("", eid)
    first = int(mac.split(":")[0], 16)
    assert first & 0x02, "locally administered bit must be set"
    assert not first & 0x01, "multicast bit must be clear"
    assert len(bytes.fromhex(mac.replace(":", ""))) == 6
    assert Links.derive_mac(None, new_endpoint_id()) != mac


# -- name checks ----------------------------------------------------------------

@pytest.mark.parametrize("bad", ["a" * 16, "a/b", "", ".", "..", "a b", "a:b"])
def test_invalid_bridge_names(kernel, bad):
    with pytest.raises(InvalidName, match="not a valid interface name"):
        Links().check_bridge_name(bad)
    with pytest.raises(InvalidName):
        Links().create_bridge(BridgeSpec(bad))


def test_fifteen_characters_is_valid(kernel):
    Links().check_bridge_name("pt-" + suffix(12))


def test_name_held_by_a_non_bridge_conflicts(kernel):
    # a veth rather than a dummy: some kernels here are built without dummy
    name = kernel.link("pt-d" + suffix())
    ip("link", "add", name, "type", "veth", "peer", "name", "pt-e" + suffix())
    with pytest.raises(NameConflict, match=f'"{name}".*not a bridge'):
        Links().check_bridge_name(name)
    with pytest.raises(NameConflict, match=f'"{name}"'):
        Links().create_bridge(BridgeSpec(name, addresses=("10.255.254.1/24",)))
    info = link_info(name)
    assert info["linkinfo"]["info_kind"] == "veth" and addresses(name) == set()


@pytest.mark.parametrize("name", ["lo", "docker0", "docker_gwbridge"])
def test_host_interface_names_conflict(kernel, name):
    with pytest.raises(NameConflict, match=f'bridge name "{name}" is held by a host interface'):
        Links().check_bridge_name(name)
    with pytest.raises(NameConflict):
        Links().create_bridge(BridgeSpec(name))


@pytest.mark.parametrize("family", ["4", "6"])
def test_default_route_interface_conflicts_even_when_a_bridge(kernel, family):
    # In a namespace of its own, so the test does not depend on how this
    # host routes: a bridge "eth0" there carries the only default route.
    ns = kernel.netns("pt-test-" + suffix())
    ip("-n", ns, "link", "add", "eth0", "type", "bridge")
    ip("-n", ns, "link", "set", "eth0", "up")
    if family == "4":
        ip("-n", ns, "addr", "add", "192.0.2.10/24", "dev", "eth0")
        ip("-n", ns, "route", "add", "default", "via", "192.0.2.1")
    else:
        ip("-n", ns, "addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad")
        ip("-n", ns, "-6", "route", "add", "default", "via", "2001:db8::1")
    with pytest.raises(NameConflict, match='bridge name "eth0" is held by a host interface'):
        run_in_netns(ns, Links().check_bridge_name, "eth0")
    with pytest.raises(NameConflict):
        run_in_netns(ns, Links().create_bridge, BridgeSpec("eth0", addresses=("198.51.100.1/24",)))
    assert addresses("eth0", ns) == ({"192.0.2.10/24"} if family == "4" else {"2001:db8::10/64"})


def test_every_nexthop_of_a_multipath_default_route_conflicts(kernel):
    ns = kernel.netns("pt-test-" + suffix())
    for dev, net in (("eth0", "192.0.2"), ("eth1", "198.51.100")):
        ip("-n", ns, "link", "add", dev, "type", "bridge")
        ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "addr", "add", f"{net}.10/24", "dev", dev)
    ip("-n", ns, "route", "add", "default", "nexthop", "via", "192.0.2.1", "dev", "eth0",
       "nexthop", "via", "198.51.100.1", "dev", "eth1")
    for dev in ("eth0", "eth1"):
        with pytest.raises(NameConflict, match=f'"{dev}" is held by a host interface'):
            run_in_netns(ns, Links().check_bridge_name, dev)


def test_unused_and_bridge_names_pass(kernel):
    links = Links()
    links.check_bridge_name(new_bridge_name())
    name = kernel.link(new_bridge_name())
    ip("link", "add", name, "type", "bridge")
    links.check_bridge_name(name)


# -- bridges ----------------------------------------------------------------------

def test_create_adopt_delete_bridge(kernel, bridge_spec):
    links = Links()
    name = bridge_spec.name
    assert links.create_bridge(bridge_spec) is True
    info = link_info(name)
    assert info["linkinfo"]["info_kind"] == "bridge"
    assert info["mtu"] == 1400
    assert "UP" in info["flags"]
    assert addresses(name) == set(bridge_spec.addresses)
    assert sysfs(name, "addr_assign_type") == "3", "bridge MAC must be pinned (NET_ADDR_SET)"
    assert ipv6_disabled(name) == "0"
    assert links.link_exists(name) and owned(links)[name] == "bridge"
    v4 = ipaddress.ip_interface(bridge_spec.addresses[0]).network
    v6 = ipaddress.ip_interface(bridge_spec.addresses[1]).network
    assert v4 in links.host_routes() and v6 in links.host_routes()

    # a second call (retry after a crash) adopts and changes nothing
    assert links.create_bridge(bridge_spec) is False
    assert addresses(name) == set(bridge_spec.addresses)

    links.release_bridge(bridge_spec, created=True, adopted=None)
    assert link_info(name) is None
    assert not links.link_exists(name) and name not in owned(links)
    links.release_bridge(bridge_spec, created=True, adopted=None)  # already gone is success


def test_adopted_bridge_is_given_back_as_found(kernel, bridge_spec):
    """Its own addresses stay (one of them the same as our gateway), and its
    MTU, MAC, sysctls and down state come back."""
    name = bridge_spec.name
    v4_gateway = bridge_spec.addresses[0]
    ip("link", "add", name, "type", "bridge")
    ip("link", "set", name, "mtu", "1300")
    ip("addr", "add", "192.0.2.77/24", "dev", name)
    ip("addr", "add", v4_gateway, "dev", name)
    write_sysctl("ipv6", name, "disable_ipv6", "1")
    write_sysctl("ipv4", name, "route_localnet", "0")
    mac = link_info(name)["address"]
    links = Links()
    found = links.survey_bridge(name)
    assert found["mtu"] == 1300 and found["up"] is False and found["mac"] == mac
    assert set(found["addresses"]) == {"192.0.2.77/24", v4_gateway}
    assert found["sysctls"] == {"ipv6/disable_ipv6": "1", "ipv4/route_localnet": "0"}
    assert links.survey_bridge("pt-none" + suffix()) is None

    assert links.create_bridge(bridge_spec, owned=False) is False
    write_sysctl("ipv4", name, "route_localnet", "1")  # as the firewall sets it
    assert addresses(name) == set(bridge_spec.addresses) | {"192.0.2.77/24"}
    assert link_info(name)["address"] == mac, "pinning must not change an adopted bridge's MAC"
    assert "ifalias" not in link_info(name), "an adopted bridge is not tagged as ours"

    links.release_bridge(bridge_spec, created=False, adopted=found)
    info = link_info(name)
    assert info is not None, "an adopted bridge is never deleted"
    assert addresses(name) == {"192.0.2.77/24", v4_gateway}
    assert info["mtu"] == 1300 and "UP" not in info["flags"] and info["address"] == mac
    assert ipv6_disabled(name) == "1" and read_sysctl("ipv4", name, "route_localnet") == "0"
    links.release_bridge(bridge_spec, created=False, adopted=found)
    assert addresses(name) == {"192.0.2.77/24", v4_gateway}


def test_a_bridge_that_is_not_tagged_ours_is_never_deleted(kernel, bridge_spec):
    """Released as created, a bridge the user made under that name since
    (no tag, or another instance's) stays, unless the store recorded the
    create and a crash kept the tag off (``untagged``)."""
    name = kernel.link(bridge_spec.name)
    ip("link", "add", name, "type", "bridge")
    Links().release_bridge(bridge_spec, created=True, adopted=None)
    assert link_info(name) is not None
    ip("link", "set", name, "alias", "pontoon:other")
    Links().release_bridge(bridge_spec, created=True, adopted=None, untagged=True)
    assert link_info(name) is not None
    ip("link", "set", name, "alias", "")
    Links().release_bridge(bridge_spec, created=True, adopted=None, untagged=True)
    assert link_info(name) is None


def test_bridge_mac_does_not_follow_ports(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    mac = link_info(bridge_spec.name)["address"]
    eid = new_endpoint_id()
    host, peer = first_names(eid)
    kernel.link(host)
    # 00:00:00:00:00:01 would be the lowest MAC any port could have
    links.create_veth(VethSpec(host, peer, bridge_spec.name, "02:00:00:00:00:01"))
    ip("link", "set", host, "address", "00:00:00:00:00:01")
    assert link_info(bridge_spec.name)["address"] == mac
    assert link_info(host)["address"].startswith("00:00")


# -- fault injection ----------------------------------------------------------------

def record_steps(action) -> list[str]:
    seen: list[str] = []
    action(Links(faults=seen.append))
    return seen


def fail_at(step: str):
    def hook(name: str) -> None:
        if name == step:
            raise Boom(f"injected failure at {name}")
    return hook


def test_create_bridge_step_names(kernel, bridge_spec):
    name = bridge_spec.name
    steps = record_steps(lambda links: links.create_bridge(bridge_spec))
    a4, a6 = bridge_spec.addresses
    assert steps == [
        f"add bridge {name}", f"tag {name}", f"pin mac of {name}", f"set mtu 1400 on {name}",
        f"enable ipv6 on {name}", f"add address {a4} to {name}",
        f"add address {a6} to {name}", f"set {name} up",
    ]


def test_fault_at_every_step_of_create_bridge_leaves_nothing(kernel, bridge_spec):
    name = bridge_spec.name
    steps = record_steps(lambda links: links.create_bridge(bridge_spec))
    Links().release_bridge(bridge_spec, created=True, adopted=None)
    for step in steps:
        with pytest.raises(DatapathError) as err:
            Links(faults=fail_at(step)).create_bridge(bridge_spec)
        assert err.value.step == step and isinstance(err.value.cause, Boom)
        assert step in str(err.value)
        assert link_info(name) is None, f"bridge left behind after failing {step!r}"


def test_fault_at_every_step_of_adopting_a_bridge_restores_it(kernel, bridge_spec):
    name = bridge_spec.name
    ip("link", "add", name, "type", "bridge")
    ip("link", "set", name, "mtu", "1300")
    write_sysctl("ipv6", name, "disable_ipv6", "1")
    found = Links().survey_bridge(name)
    steps = record_steps(lambda links: links.create_bridge(bridge_spec, owned=False))
    assert f"tag {name}" not in steps
    Links().release_bridge(bridge_spec, created=False, adopted=found)
    for step in steps:
        with pytest.raises(DatapathError) as err:
            Links(faults=fail_at(step)).create_bridge(bridge_spec, owned=False)
        assert err.value.step == step
        info = link_info(name)
        assert info is not None, "an adopted bridge is never deleted"
        assert info["mtu"] == 1300 and "UP" not in info["flags"], step
        assert ipv6_disabled(name) == "1", step
        assert addresses(name) == set(), step


def test_create_veth_step_names(kernel, bridge_spec):
    Links().create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    spec = VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:02", mtu=1400)
    steps = record_steps(lambda links: links.create_veth(spec))
    assert steps == [
        f"find bridge {bridge_spec.name}", f"add veth {host} peer {peer}", f"tag {host}, hairpin on", f"tag {peer}",
    ]
    # A pair that exists is adopted and brought into shape.
    steps = record_steps(lambda links: links.create_veth(spec))
    assert steps == [
        f"find bridge {bridge_spec.name}", f"add veth {host} peer {peer}", f"shape {host} onto {bridge_spec.name}",
        f"tag {host}, hairpin on", f"tag {peer}",
    ]


def test_fault_at_every_step_of_create_veth_leaves_nothing(kernel, bridge_spec):
    Links().create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    spec = VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:02", mtu=1400)
    steps = record_steps(lambda links: links.create_veth(spec))
    Links().delete_veth(host)
    for step in steps:
        with pytest.raises(DatapathError) as err:
            Links(faults=fail_at(step)).create_veth(spec)
        assert err.value.step == step and isinstance(err.value.cause, Boom)
        assert link_info(host) is None and link_info(peer) is None, step
        assert ip_json("link", "show", "master", bridge_spec.name) == [], step


# -- veth pairs ------------------------------------------------------------------------

def test_create_and_delete_veth_idempotent(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    eid = new_endpoint_id()
    host, peer = first_names(eid)
    kernel.link(host)
    mac = links.derive_mac("10.1.2.3", eid)
    spec = VethSpec(host, peer, bridge_spec.name, mac, mtu=1400)
    for _ in range(2):
        links.create_veth(spec)
        h, p = link_info(host), link_info(peer)
        assert h["linkinfo"]["info_kind"] == "veth" and h["master"] == bridge_spec.name
        assert "UP" in h["flags"] and h["mtu"] == 1400
        assert h["address"].startswith("fe:") and h["linkinfo"]["info_slave_data"]["hairpin"] is True
        assert p["address"] == mac and p["mtu"] == 1400 and "UP" not in p["flags"]
        assert h["ifalias"] == p["ifalias"] == "pontoon:pontoon"
    assert owned(links)[host] == "veth"
    links.delete_veth(host)
    assert link_info(host) is None and link_info(peer) is None
    links.delete_veth(host)


def crash_left_pair(host: str, peer: str, owner: str = "pontoon") -> None:
    """What a crash right after "add veth" leaves: a pair without its tags,
    marked only by the MAC of its host end."""
    ip("link", "add", host, "address", names.host_end_mac(host, owner), "type", "veth", "peer", "name", peer)


def test_create_veth_completes_a_partial_pair(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    crash_left_pair(host, peer)
    links.create_veth(VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:09", mtu=1400))
    h, p = link_info(host), link_info(peer)
    assert h["master"] == bridge_spec.name and "UP" in h["flags"] and h["mtu"] == 1400
    assert h["address"].startswith("fe:") and h["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert p["address"] == "02:42:0a:00:00:09" and p["mtu"] == 1400
    assert h["ifalias"] == p["ifalias"] == "pontoon:pontoon"


def test_veth_intact_only_for_a_complete_pair(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    spec = VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:0a", mtu=1400)
    assert not links.veth_intact(spec)
    crash_left_pair(host, peer)
    assert not links.veth_intact(spec), "a bare pair (crash after add) is not intact"
    links.create_veth(spec)
    assert links.veth_intact(spec)
    ip("link", "set", host, "nomaster")
    assert not links.veth_intact(spec)
    links.create_veth(spec)
    ip("link", "set", host, "down")
    assert not links.veth_intact(spec)
    links.delete_veth(host)
    assert not links.veth_intact(spec)


def test_create_veth_refuses_names_held_by_others(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    ip("link", "add", host, "type", "bridge")
    with pytest.raises(NameConflict, match=host):
        links.create_veth(VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:09"))
    assert link_info(host)["linkinfo"]["info_kind"] == "bridge", "a device not ours is never deleted"
    ip("link", "del", host)

    other = kernel.link("ptc" + suffix(12))
    crash_left_pair(host, other)
    with pytest.raises(NameConflict, match=f'its peer is not "{peer}"'):
        links.create_veth(VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:09"))
    assert link_info(host) is not None and link_info(other) is not None


@pytest.mark.parametrize("alias", ["", "pontoon:other"])
def test_a_users_pair_under_our_names_is_never_taken_nor_deleted(kernel, bridge_spec, alias):
    """A veth pair named as ours but made by someone else (untagged with its
    own MAC, or another instance's): Join's create_veth refuses it,
    CreateEndpoint's (``new``) says the names are taken, delete leaves it."""
    links = Links()
    links.create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    ip("link", "add", host, "type", "veth", "peer", "name", peer)
    if alias:
        ip("link", "set", host, "alias", alias)
    before = link_info(host), link_info(peer)
    spec = VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:0c")
    with pytest.raises(NameConflict, match="not ours"):
        links.create_veth(spec)
    with pytest.raises(NameTaken):
        links.create_veth(spec, new=True)
    assert not links.veth_intact(spec)
    links.delete_veth(host)
    assert (link_info(host), link_info(peer)) == before


def test_veth_whose_peer_moved_away_is_neither_intact_nor_adopted(kernel, bridge_spec):
    links = Links()
    links.create_bridge(bridge_spec)
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    ns = kernel.netns("pt-test-" + suffix())
    spec = VethSpec(host, peer, bridge_spec.name, "02:42:0a:00:00:0b")
    links.create_veth(spec)
    ip("link", "set", peer, "netns", ns)
    with rtnl.Rtnl() as nl:
        assert nl.get(host).link_netnsid is not None, "the peer's index is another namespace's"
    assert not links.veth_intact(spec)
    with pytest.raises(NameConflict, match=f'its peer is not "{peer}"'):
        links.create_veth(spec)
    links.delete_veth(host)
    assert link_info(host) is None and link_info(peer, ns) is None


def test_create_veth_on_missing_bridge_names_the_step(kernel):
    host, peer = first_names(new_endpoint_id())
    kernel.link(host)
    bridge = new_bridge_name()
    with pytest.raises(DatapathError) as err:
        Links().create_veth(VethSpec(host, peer, bridge, "02:42:0a:00:00:09"))
    assert err.value.step == f"find bridge {bridge}"
    assert f'bridge "{bridge}" does not exist' in str(err.value)
    assert link_info(host) is None


def test_delete_veth_leaves_non_veth_alone(kernel):
    name = kernel.link("ptv" + suffix(12))
    ip("link", "add", name, "type", "bridge")
    Links().delete_veth(name)
    assert link_info(name) is not None


# -- host routes -----------------------------------------------------------------------

def test_host_routes_skip_default_link_local_and_multicast(kernel):
    routes = Links().host_routes()
    assert all(r.prefixlen > 0 for r in routes)
    assert not any(r.is_multicast for r in routes)
    assert not any(r.version == 6 and r.subnet_of(ipaddress.ip_network("fe80::/10")) for r in routes)
    expected = set()
    for family in ("-4", "-6"):
        for r in ip_json(family, "route", "show", "table", "main"):
            if r["dst"] == "default":
                continue
            net = ipaddress.ip_network(r["dst"])
            if not net.is_multicast and not net.is_link_local:
                expected.add(net)
    assert expected == set(routes)


# -- reconcile (in a namespace: it deletes Pontoon-named links nobody owns) ----------

def test_reconcile_recreates_and_removes(kernel):
    ns = kernel.netns("pt-test-" + suffix())
    kept = BridgeSpec(new_bridge_name(), mtu=1400, addresses=("10.20.0.1/24", "fd20::1/64"))
    lost = BridgeSpec(new_bridge_name(), mtu=1400, addresses=("10.21.0.1/24", "fd21::1/64"))
    free_host, free_peer = first_names(new_endpoint_id())
    joined_host, joined_peer = first_names(new_endpoint_id())
    free = VethSpec(free_host, free_peer, kept.name, "02:42:0a:14:00:02", mtu=1400)
    joined = VethSpec(joined_host, joined_peer, kept.name, "02:42:0a:14:00:03", mtu=1400)

    def setup():
        links = Links()
        links.create_bridge(kept)
        links.create_bridge(lost)

    run_in_netns(ns, setup)
    ip("-n", ns, "link", "del", lost.name)
    ip("-n", ns, "addr", "del", "10.20.0.1/24", "dev", kept.name)
    orphan_bridge = "pt-o" + suffix()
    ip("-n", ns, "link", "add", orphan_bridge, "type", "bridge")
    orphan_host, orphan_peer = first_names(new_endpoint_id())
    ip("-n", ns, "link", "add", orphan_host, "type", "veth", "peer", "name", orphan_peer)
    for orphan in (orphan_bridge, orphan_host):  # left tagged by a crash before the commit
        ip("-n", ns, "link", "set", orphan, "alias", "pontoon:pontoon")
    ip("-n", ns, "link", "add", "keep-me", "type", "bridge")  # not a Pontoon name

    changes = run_in_netns(ns, Links().reconcile, [(kept, True), (lost, True)], [free, joined],
                           {joined_host})

    assert f"recreate missing bridge {lost.name}" in changes
    assert f"restore address 10.20.0.1/24 on bridge {kept.name}" in changes
    assert f"delete orphan bridge {orphan_bridge}" in changes
    assert any(c.startswith("delete orphan veth") for c in changes)
    assert f"recreate missing veth {free_host} peer {free_peer}" in changes
    assert len(changes) == 5, changes
    assert addresses(lost.name, ns) == set(lost.addresses)
    assert link_info(lost.name, ns)["mtu"] == 1400
    assert addresses(kept.name, ns) == set(kept.addresses)
    for gone in (orphan_bridge, orphan_host, orphan_peer, joined_host):
        assert link_info(gone, ns) is None, gone
    assert link_info(free_host, ns)["master"] == kept.name
    assert link_info("keep-me", ns) is not None

    assert run_in_netns(ns, Links().reconcile, [(kept, True), (lost, True)], [free, joined],
                        {joined_host}) == []


def test_reconcile_spares_another_instances_links(kernel):
    ns = kernel.netns("pt-test-" + suffix())
    theirs = BridgeSpec(new_bridge_name(), addresses=("10.23.0.1/24",))
    host, peer = first_names(new_endpoint_id())
    cut_host, cut_peer = first_names(new_endpoint_id())

    def setup():
        other = Links(owner="other")
        other.create_bridge(theirs)
        other.create_veth(VethSpec(host, peer, theirs.name, "02:42:0a:17:00:02"))
        crash_left_pair(cut_host, cut_peer, owner="other")  # its crash before the tags

    run_in_netns(ns, setup)
    def state():
        infos = {name: link_info(name, ns) for name in (theirs.name, host, peer, cut_host, cut_peer)}
        return {name: "gone" if info is None else info.get("ifalias", "") for name, info in infos.items()}

    before = state()
    assert run_in_netns(ns, Links(owner="mine").reconcile, [], [], set()) == []
    assert state() == before and before[host] == "pontoon:other"


def test_reconcile_deletes_only_what_carries_our_tag(kernel):
    """Links named with every Pontoon prefix but not made by Pontoon (no
    alias, their own MACs) survive; a pair a crash left before its tags,
    known by its host end's MAC, goes, from either end."""
    ns = kernel.netns("pt-test-" + suffix())
    users = ["pt-u" + suffix(), "ptv" + suffix(12), "ptc" + suffix(12), "ptvx" + suffix(), "ptcx" + suffix()]
    ip("-n", ns, "link", "add", users[0], "type", "bridge")
    ip("-n", ns, "link", "add", users[1], "type", "veth", "peer", "name", users[2])
    ip("-n", ns, "link", "add", users[3], "type", "bridge")
    ip("-n", ns, "link", "add", users[4], "type", "veth", "peer", "name", "user-peer")
    cut_host, cut_peer = first_names(new_endpoint_id())
    run_in_netns(ns, crash_left_pair, cut_host, cut_peer)
    changes = run_in_netns(ns, Links().reconcile, [], [], set())
    assert changes == [f"delete orphan veth {cut_peer}"]
    assert link_info(cut_host, ns) is None and link_info(cut_peer, ns) is None
    for name in users:
        assert link_info(name, ns) is not None, name


def test_reconcile_reports_failures_and_goes_on(kernel):
    ns = kernel.netns("pt-test-" + suffix())
    ip("-n", ns, "link", "add", "pt-held", "type", "veth", "peer", "name", "held-peer")
    ok = BridgeSpec(new_bridge_name(), addresses=("10.22.0.1/24",))
    changes = run_in_netns(ns, Links().reconcile, [(BridgeSpec("pt-held"), True), (ok, True)], [], set())
    assert changes[0].startswith("failed to recreate missing bridge pt-held: ")
    assert changes[1] == f"recreate missing bridge {ok.name}"
    assert link_info("pt-held", ns)["linkinfo"]["info_kind"] == "veth"


# -- traffic -----------------------------------------------------------------------------

@pytest.fixture
def forward_accept(kernel):
    """Let bridged traffic of one bridge through the FORWARD chain.

    With br_netfilter loaded, frames between two ports of one bridge pass
    iptables FORWARD, whose policy is DROP wherever dockerd runs. The product's
    firewall module owns such rules; this test owns only its own pair and
    never touches the policy."""
    def allow(bridge: str) -> None:
        for tool in ("iptables", "ip6tables"):
            rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
            kernel.run([tool, "-w", "-I", *rule], undo=[tool, "-w", "-D", *rule])
    return allow


def ping_command() -> list[str]:
    # CI installs busybox-static but not iputils-ping; busybox's ping takes
    # the same -c/-W and handles both families.
    if shutil.which("ping"):
        return ["ping"]
    if shutil.which("busybox"):
        return ["busybox", "ping"]
    pytest.fail("needs ping (iputils-ping) or busybox (busybox-static)")


def ping(ns: str, address: str) -> subprocess.CompletedProcess:
    return subprocess.run([IP, "netns", "exec", ns, *ping_command(), "-c1", "-W1", address],
                          capture_output=True, text=True)


def test_two_namespaces_talk_over_the_bridge(kernel, forward_accept):
    links = Links()
    v4, v6 = free_subnets(links)
    bridge = BridgeSpec(kernel.link(new_bridge_name()), mtu=1400,
                        addresses=(gateway(v4), gateway(v6)))
    links.create_bridge(bridge)
    forward_accept(bridge.name)

    sandboxes = []
    for host_part in (2, 3):
        eid = new_endpoint_id()
        host, peer = first_names(eid)
        kernel.link(host)
        links.create_veth(VethSpec(host, peer, bridge.name, links.derive_mac(str(v4[host_part]), eid), 1400))
        ns = kernel.netns("pt-test-" + suffix())
        # what dockerd does at Join: move the peer, set addresses, bring it up
        ip("link", "set", peer, "netns", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", gateway(v4, host_part), "dev", peer)
        ip("-n", ns, "addr", "add", gateway(v6, host_part), "dev", peer, "nodad")
        ip("-n", ns, "link", "set", peer, "up")
        sandboxes.append(ns)

    a, b = sandboxes
    for ns, target in [(a, v4[3]), (b, v4[2]), (a, v4[1]), (b, v4[1]),
                       (a, v6[3]), (b, v6[2]), (a, v6[1]), (b, v6[1])]:
        res = ping(ns, str(target))
        assert res.returncode == 0, f"{ns} -> {target}: {res.stdout}{res.stderr}"


def test_release_bridge_leaves_a_name_now_held_by_a_non_bridge(kernel):
    name = kernel.link("pt-d" + suffix())
    ip("link", "add", name, "type", "veth", "peer", "name", "pt-e" + suffix())
    ip("addr", "add", "192.0.2.55/24", "dev", name)
    for created in (True, False):
        Links().release_bridge(BridgeSpec(name, addresses=("192.0.2.55/24",)), created=created, adopted=None)
    assert link_info(name) is not None and addresses(name) == {"192.0.2.55/24"}


def test_importing_datapath_opens_nothing_and_skips_pyroute2():
    # pyroute2 waits for the first netlink operation (datapath.netlink).
    code = ("import sys, datapath, datapath.model, datapath.links, datapath.firewall;"
            " assert 'pyroute2' not in sys.modules")
    fresh_python(code)
