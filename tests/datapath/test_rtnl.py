"""The dumps of datapath.rtnl against the real kernel, observed with the ``ip`` tool,
and the start-up reconcile it lets skip pyroute2."""
from __future__ import annotations

import ipaddress

from datapath import rtnl
from datapath.links import Links
from datapath.model import BridgeSpec, VethSpec

from testbed.netns import run_in_netns
from testbed.server import fresh_python

from .conftest import IP, ip, ip_json, suffix
from .test_links import first_names, new_endpoint_id

IFF_UP = 0x1


def _dump(what: str):
    with rtnl.Rtnl() as nl:
        return getattr(nl, what)()


def _namespace_with_links(kernel) -> str:
    ns = kernel.netns("pt-test-" + suffix())
    ip("-n", ns, "link", "add", "br-d", "mtu", "1400", "type", "bridge")
    ip("-n", ns, "link", "set", "br-d", "alias", "pontoon:dump", "up")
    ip("-n", ns, "addr", "add", "10.30.0.1/24", "dev", "br-d")
    ip("-n", ns, "addr", "add", "fd30::1/64", "dev", "br-d", "nodad")
    ip("-n", ns, "link", "add", "ve-d", "type", "veth", "peer", "name", "vp-d")
    return ns


def test_links_match_what_ip_shows(kernel):
    ns = _namespace_with_links(kernel)
    dumped = run_in_netns(ns, lambda: _dump("links"))
    shown = ip_json("-n", ns, "-d", "link", "show")
    assert set(dumped) == {s["ifname"] for s in shown} == {"lo", "br-d", "ve-d", "vp-d"}
    for s in shown:
        link = dumped[s["ifname"]]
        assert link.index == s["ifindex"]
        assert link.kind == s.get("linkinfo", {}).get("info_kind", "")
        assert link.alias == s.get("ifalias", "")
        assert link.mtu == s["mtu"]
        assert bool(link.flags & IFF_UP) == ("UP" in s["flags"])
    assert (dumped["br-d"].kind, dumped["br-d"].alias, dumped["br-d"].mtu) == ("bridge", "pontoon:dump", 1400)


def test_addresses_match_what_ip_shows(kernel):
    ns = _namespace_with_links(kernel)
    dumped = run_in_netns(ns, lambda: _dump("addresses"))
    shown = {s["ifindex"]: {ipaddress.ip_interface(f'{a["local"]}/{a["prefixlen"]}') for a in s["addr_info"]}
             for s in ip_json("-n", ns, "addr", "show") if s["addr_info"]}
    assert dumped == shown
    bridge = ip_json("-n", ns, "link", "show", "dev", "br-d")[0]["ifindex"]
    assert {ipaddress.ip_interface("10.30.0.1/24"), ipaddress.ip_interface("fd30::1/64")} <= dumped[bridge]


def test_reconcile_with_nothing_to_repair_does_not_import_pyroute2(kernel):
    ns = kernel.netns("pt-test-" + suffix())
    bridge = BridgeSpec("pt-r" + suffix(), mtu=1400, addresses=("10.31.0.1/24", "fd31::1/64"))
    host, peer = first_names(new_endpoint_id())
    veth = VethSpec(host, peer, bridge.name, "02:42:0a:1f:00:02", mtu=1400)

    def setup():
        links = Links()
        links.create_bridge(bridge)
        links.create_veth(veth)

    run_in_netns(ns, setup)
    # A fresh interpreter: this one has pyroute2 loaded already.
    code = ("import sys\n"
            "from datapath.links import Links\n"
            "from datapath.model import BridgeSpec, VethSpec\n"
            f"changes = Links().reconcile([({bridge!r}, True)], [{veth!r}], set())\n"
            "assert changes == [], changes\n"
            "assert 'pyroute2' not in sys.modules, 'pyroute2 imported with nothing to repair'\n")
    fresh_python(code, IP, "netns", "exec", ns)
