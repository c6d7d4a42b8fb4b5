"""A fake dockerd: the same calls, in the same order and with the same bodies
as the real one (see tests/fixtures/traces), driven from tests and benchmarks.

``FakeDockerd`` does the protocol side; give it a ``sandboxes`` object (see
``sandbox.py``) and it also does what dockerd does in the kernel: moves
SrcName into a network namespace and configures it from the replies.
"""
from __future__ import annotations

import base64
import ipaddress
import itertools
import secrets
from dataclasses import dataclass, field

from .client import Client

GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}
PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}


def new_id() -> str:
    return secrets.token_hex(32)


@dataclass
class Network:
    id: str
    pools: list[dict]  # {"PoolID", "Pool", "Gateway" (CIDR), "aux": [addr], "v6"}
    internal: bool = False
    name: str = ""  # dockerd 29 orders a container's gateway candidates by it

    def pool(self, v6: bool) -> dict | None:
        return next((p for p in self.pools if p["v6"] == v6), None)


@dataclass
class Container:
    network: Network
    endpoint_id: str
    address: str  # CIDR
    address_v6: str
    mac: str
    join: dict = field(default_factory=dict)
    sandbox: object = None  # a sandbox.Sandbox when the kernel side is played


class FakeDockerd:
    def __init__(self, client: Client, sandboxes=None):
        self.client = client
        self.sandboxes = sandboxes
        self.networks: list[Network] = []  # alive, for cleanup()
        self.containers: list[Container] = []
        spaces = client.ok("IpamDriver.GetDefaultAddressSpaces")
        self.space = spaces["LocalDefaultAddressSpace"]

    # -- networks ---------------------------------------------------------
    def create_network(self, subnet: str = "", ip_range: str = "", gateway: str = "",
                       aux: dict[str, str] | None = None, ipv6: bool = False, subnet6: str = "",
                       gateway6: str = "", internal: bool = False, options: dict | None = None,
                       network_id: str | None = None, ipv4: bool = True, name: str = "") -> Network:
        """``docker network create -d pontoon --ipam-driver pontoon ...``;
        ``ipv4=False`` is dockerd 28's ``--ipv4=false``, which also sends
        ``enable_ipv4`` and asks GwAllocCheck first, as 28 does."""
        net_options = {"com.docker.network.enable_ipv6": ipv6, "com.docker.network.generic": options or {}}
        if internal:
            net_options["com.docker.network.internal"] = True
        skip4 = skip6 = False
        if not ipv4:
            net_options["com.docker.network.enable_ipv4"] = False
            skip = self.client.ok("NetworkDriver.GwAllocCheck", {"Options": net_options})
            skip4, skip6 = skip["SkipIPv4"], skip["SkipIPv6"]
        pools = [self._pool(False, subnet, ip_range, gateway, aux or {}, skip4)] if ipv4 else []
        if ipv6:
            pools.append(self._pool(True, subnet6, "", gateway6, {}, skip6))
        net = Network(network_id or new_id(), pools, internal, name)
        net.name = net.name or net.id
        body = {
            "NetworkID": net.id,
            "Options": net_options,
            "IPv4Data": [self._ipam_data(p) for p in pools if not p["v6"]] if ipv4 else None,
            "IPv6Data": [self._ipam_data(p) for p in pools if p["v6"]],
        }
        try:
            self.client.ok("NetworkDriver.CreateNetwork", body)
        except Exception:
            self._release_pools(net)  # dockerd gives the pools back when the driver refuses
            raise
        self.networks.append(net)
        return net

    def _pool(self, v6: bool, subnet: str, ip_range: str, gateway: str, aux: dict, skip_gateway: bool = False) -> dict:
        reply = self.client.ok("IpamDriver.RequestPool", {
            "AddressSpace": self.space, "Pool": subnet, "SubPool": ip_range, "Options": {}, "V6": v6})
        pool = {"PoolID": reply["PoolID"], "Pool": reply["Pool"], "v6": v6, "aux": {}, "Gateway": ""}
        if not skip_gateway:
            pool["Gateway"] = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": pool["PoolID"], "Address": gateway, "Options": GATEWAY})["Address"]
        for name, addr in aux.items():
            pool["aux"][name] = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": pool["PoolID"], "Address": addr, "Options": None})["Address"]
        return pool

    def _ipam_data(self, pool: dict) -> dict:
        data = {"AddressSpace": self.space, "Pool": pool["Pool"]}
        if pool["Gateway"]:  # dockerd leaves the key out when there is none
            data["Gateway"] = pool["Gateway"]
        if pool["aux"]:
            data["AuxAddresses"] = dict(pool["aux"])
        return data

    def remove_network(self, net: Network) -> None:
        """``docker network rm``: IPAM releases first, then DeleteNetwork (as traced)."""
        self._release_pools(net)
        self.client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": net.id})
        self.networks.remove(net)

    def _release_pools(self, net: Network) -> None:
        for p in net.pools:
            for addr in [a for a in (p["Gateway"], *p["aux"].values()) if a]:
                self.client.ok("IpamDriver.ReleaseAddress", {"PoolID": p["PoolID"], "Address": _bare(addr)})
            self.client.ok("IpamDriver.ReleasePool", {"PoolID": p["PoolID"]})

    # -- containers ---------------------------------------------------------
    def run(self, net: Network, ip: str = "", ip6: str = "", mac: str = "",
            ports: list[tuple] = (), expose: list[tuple] = (), name: str = "") -> Container:
        """``docker run --network N [--ip] [--ip6] [--mac-address] [-p ...] [--name]``.
        ``ports`` are (proto, container_port, host_ip, host_port, host_port_end);
        ``name`` goes in RequestAddress's options, as dockerd 29 sends it."""
        v4 = net.pool(False)
        ask = {"com.docker.network.endpoint.name": name} if name else None
        address = ""
        if v4:  # an IPv6-only network's containers get no IPv4 address
            address = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": v4["PoolID"], "Address": ip, "Options": ask})["Address"]
        address_v6 = ""
        if net.pool(True):
            address_v6 = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": net.pool(True)["PoolID"], "Address": ip6, "Options": ask})["Address"]
        options = port_options(ports, expose)
        create_options = dict(options)
        if mac:
            raw = bytes(int(x, 16) for x in mac.split(":"))
            create_options["com.docker.network.endpoint.macaddress"] = base64.b64encode(raw).decode()
        endpoint_id = new_id()
        try:
            reply = self.client.ok("NetworkDriver.CreateEndpoint", {
                "NetworkID": net.id, "EndpointID": endpoint_id, "Options": create_options,
                "Interface": {"Address": address, "AddressIPv6": address_v6, "MacAddress": mac}})
        except Exception:
            self._release_addresses(net, address, address_v6)
            raise
        ctr = Container(net, endpoint_id, address, address_v6, mac or reply["Interface"]["MacAddress"])
        self.containers.append(ctr)
        ctr.join = self.client.ok("NetworkDriver.Join", {
            "NetworkID": net.id, "EndpointID": endpoint_id, "Options": options,
            "SandboxKey": f"/var/run/docker/netns/{endpoint_id[:12]}"})
        if self.sandboxes is not None:
            ctr.sandbox = self.sandboxes.attach(ctr)
        if not net.internal:
            self.client.ok("NetworkDriver.ProgramExternalConnectivity", {
                "NetworkID": net.id, "EndpointID": endpoint_id, "Options": options})
        return ctr

    def stop(self, ctr: Container) -> None:
        """Container exit: Revoke, Leave, interface back to the host, DeleteEndpoint, releases."""
        ids = {"NetworkID": ctr.network.id, "EndpointID": ctr.endpoint_id}
        self.client.ok("NetworkDriver.RevokeExternalConnectivity", ids)
        self.client.ok("NetworkDriver.Leave", ids)
        if ctr.sandbox is not None:
            self.sandboxes.detach(ctr)
        self.client.ok("NetworkDriver.DeleteEndpoint", ids)
        self._release_addresses(ctr.network, ctr.address, ctr.address_v6)
        self.containers.remove(ctr)

    def cleanup(self) -> None:
        """What is still up at the end of a test, torn down as dockerd would,
        so a failed test leaves no bridge with its subnet behind."""
        for ctr in list(self.containers):
            self.stop(ctr)
        for net in list(self.networks):
            self.remove_network(net)

    def _release_addresses(self, net: Network, address: str, address_v6: str) -> None:
        for v6, addr in ((False, address), (True, address_v6)):
            if addr:
                self.client.ok("IpamDriver.ReleaseAddress", {"PoolID": net.pool(v6)["PoolID"], "Address": _bare(addr)})

    def oper_info(self, ctr: Container) -> dict:
        return self.client.ok("NetworkDriver.EndpointOperInfo", {
            "NetworkID": ctr.network.id, "EndpointID": ctr.endpoint_id})["Value"]


def _bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def port_options(ports, expose) -> dict:
    portmap = [{"Proto": PROTOS[proto], "IP": "", "Port": port, "HostIP": host_ip,
                "HostPort": host_port, "HostPortEnd": host_end}
               for proto, port, host_ip, host_port, host_end in ports]
    exposed = [{"Proto": PROTOS[proto], "Port": port}
               for proto, port in itertools.chain(expose, ((p[0], p[1]) for p in ports))]
    return {"com.docker.network.endpoint.exposedports": exposed, "com.docker.network.portmap": portmap}
