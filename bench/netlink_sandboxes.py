"""The kernel side of dockerd, done the way dockerd does it: in-process,
through netlink, in a sandbox made before Join.

testbed/sandbox.py plays dockerd with the `ip` tool (about ten
processes per container), which is right for tests (an implementation
independent of the plugin's) and wrong for a latency figure: those
processes cost about 200 ms, which a real dockerd never spends. dockerd
creates the sandbox's namespace before it calls Join, and after Join moves
the interface in, renames it and sets its MAC, addresses and routes over
netlink; that is what is done here, with pyroute2 sockets opened in both
namespaces before Join.
"""
from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute

from testbed.sandbox import Sandbox, Sandboxes


class NetlinkSandboxes(Sandboxes):
    """``home`` is the namespace the plugin makes its veths in. Only the
    set-up differs from the harness's: the teardown, after Leave and out of
    any timed window, is its `ip` tool's."""

    def __init__(self, home: str):
        super().__init__(home)
        self._home_nl = IPRoute(netns=home)
        self._next: tuple[str, IPRoute] | None = None

    def prepare(self) -> None:
        """What dockerd does before Join: the sandbox's namespace (and here
        a netlink socket in it)."""
        ns = self.new_namespace()
        self._next = (ns, IPRoute(netns=ns))

    def attach(self, ctr) -> Sandbox:
        ns, nl = self._next
        self._next = None
        try:
            src, dst = ctr.join["InterfaceName"]["SrcName"], ctr.join["InterfaceName"]["DstPrefix"] + "0"
            self._home_nl.link("set", index=self._home_nl.link_lookup(ifname=src)[0], net_ns_fd=ns)
            index = nl.link_lookup(ifname=src)[0]
            nl.link("set", index=index, ifname=dst, address=ctr.mac)
            for address in filter(None, (ctr.address, ctr.address_v6)):
                iface = ipaddress.ip_interface(address)
                nl.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                        **({"flags": 0x02} if iface.version == 6 else {}))  # IFA_F_NODAD, as dockerd sets
            nl.link("set", index=nl.link_lookup(ifname="lo")[0], state="up")
            nl.link("set", index=index, state="up")
            for key in ("Gateway", "GatewayIPv6"):
                if key in ctr.join:
                    gateway = ipaddress.ip_address(ctr.join[key])
                    nl.route("add", dst="default" if gateway.version == 4 else "::/0", gateway=str(gateway),
                             family=10 if gateway.version == 6 else 2)
        finally:
            nl.close()
        return Sandbox(ns, dst)

    def close(self) -> None:
        if self._next is not None:
            self._next[1].close()
        self.cleanup()
        self._home_nl.close()
