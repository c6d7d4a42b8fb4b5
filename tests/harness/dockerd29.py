"""dockerd 29's side of a container on several networks, on top of
``FakeDockerd``: which endpoint is the container's gateway, per family, and
when ProgramExternalConnectivity and RevokeExternalConnectivity are sent.

No dockerd 29 is in Debian; this follows moby's code at docker-v29.1.0
(see docs/docker-29.md):

- ``daemon/libnetwork/sandbox.go`` ``Endpoint.Less``: a sandbox's
  endpoints are ordered by gw-priority (higher first), then endpoints not on
  docker_gwbridge, not internal, with more gateways (IPv4 and IPv6 before
  one before none), then by network name.
- ``daemon/libnetwork/default_gateway.go`` ``Sandbox.getGatewayEndpoint``:
  in that order, the first endpoint with both gateways is both families'
  gateway; otherwise the first with an IPv4 gateway and the first with an
  IPv6 one. ``endpoint_info.go`` ``hasGatewayOrDefaultRoute``: a gateway
  is Join's ``Gateway``/``GatewayIPv6`` or a default static route, and
  ``endpoint.go`` ``sbJoin`` drops the IPv6 gateway of an endpoint
  without an IPv6 address.
- ``endpoint.go`` ``sbJoin`` / ``updateExternalConnectivity``: after Join,
  if the new endpoint became a gateway, the previous IPv4 and then IPv6
  gateway are told the new gateways first, then the new endpoint; a failure
  tells the previous ones their old roles again.
- ``endpoint.go`` ``sbLeave``: before Leave, the endpoint is told it is no
  gateway; after it, if it was one, the new gateways are told.
- ``drivers/remote/driver.go`` ``ProgramExternalConnectivity``: the remote
  driver remembers, per endpoint joined, whether it is the IPv4 and the IPv6
  gateway, and calls the plugin only when that changes: Revoke when it is
  neither any more, else Program with the sandbox options Join had, plus
  ``no_proxy_6to4: true`` when another endpoint is the IPv6 gateway.
  ``Leave`` forgets the endpoint.
- ``network.go`` ``CreateEndpoint``: RequestAddress's options carry
  ``com.docker.network.endpoint.name`` (the container's name).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from testbed.client import ProtocolError
from testbed.fake_dockerd import Container, FakeDockerd, Network, new_id, port_options

NO_PROXY_6TO4 = "com.docker.network.driver.private.no_proxy_6to4"
ENDPOINT_NAME = "com.docker.network.endpoint.name"


@dataclass
class Endpoint29:
    ctr: Container
    priority: int = 0
    gw4: bool = False  # from Join: a gateway (or default route) of each family
    gw6: bool = False
    # The remote driver's record (drivers/remote/driver.go nwEndpoint),
    # present from Join to Leave.
    joined: bool = False
    sb_options: dict = field(default_factory=dict)  # Join's options, sent again with each Program
    is_gw4: bool = False
    is_gw6: bool = False

    @property
    def network(self) -> Network:
        return self.ctr.network

    def key(self) -> tuple:
        """Sort key of Endpoint.Less (no docker_gwbridge endpoints here)."""
        return (-self.priority, self.network.internal, -(self.gw4 + self.gw6), self.network.name)


@dataclass
class Container29:
    """One container (sandbox) and its endpoints, in Endpoint.Less order."""

    name: str
    options: dict  # the sandbox's labels: portmap and exposed ports, sent in Join
    endpoints: list[Endpoint29] = field(default_factory=list)

    def on(self, net: Network) -> Endpoint29:
        return next(e for e in self.endpoints if e.network is net)

    def gateways(self) -> tuple[Endpoint29 | None, Endpoint29 | None]:
        """Sandbox.getGatewayEndpoint."""
        ep4 = ep6 = None
        for ep in self.endpoints:
            if ep.gw4 and ep.gw6:
                return ep, ep
            if ep.gw4 and ep4 is None:
                ep4 = ep
            if ep.gw6 and ep6 is None:
                ep6 = ep
        return ep4, ep6


class Dockerd29:
    """``docker run`` / ``network connect`` / ``network disconnect`` /
    container stop, as dockerd 29 drives a remote driver. ``calls`` records
    each Program/Revoke sent, as (method, network name, extra options)."""

    def __init__(self, dockerd: FakeDockerd):
        self.d = dockerd
        self.client = dockerd.client
        self.calls: list[tuple[str, str, dict]] = []

    def run(self, net: Network, ports: list[tuple] = (), expose: list[tuple] = (),
            gw_priority: int = 0, name: str = "") -> Container29:
        box = Container29(name or "ctr" + secrets.token_hex(3), port_options(ports, expose))
        self.connect(box, net, gw_priority)
        return box

    def connect(self, box: Container29, net: Network, gw_priority: int = 0) -> Endpoint29:
        """``Network.CreateEndpoint`` then ``Endpoint.sbJoin``. On a failed
        Program, dockerd rolls the join back (Leave) and deletes the
        endpoint, and the error reaches the user."""
        ep = Endpoint29(self._create_endpoint(box, net), gw_priority)
        try:
            self._join(box, ep)
        except ProtocolError:
            self._delete_endpoint(ep)
            raise
        return ep

    def disconnect(self, box: Container29, net: Network, in_delete: bool = False) -> None:
        """``Endpoint.sbLeave`` then the endpoint's delete."""
        ep = box.on(net)
        was_gateway = ep in box.gateways()
        self._program(ep, None, None)  # "no gateway": Revoke if it was one
        self._leave(ep)
        box.endpoints.remove(ep)
        if was_gateway and not in_delete:
            after4, after6 = box.gateways()
            for gw in (after4, after6 if after6 is not after4 else None):
                if gw is not None:
                    self._program(gw, after4, after6)
        self._delete_endpoint(ep)

    def stop(self, box: Container29) -> None:
        """The sandbox's delete: each endpoint leaves, no new gateway chosen."""
        for ep in list(box.endpoints):
            self.disconnect(box, ep.network, in_delete=True)

    # -- the steps ------------------------------------------------------------
    def _create_endpoint(self, box: Container29, net: Network) -> Container:
        ipam_options = {ENDPOINT_NAME: box.name}
        address = address_v6 = ""
        if net.pool(False):
            address = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": net.pool(False)["PoolID"], "Address": "", "Options": ipam_options})["Address"]
        if net.pool(True):
            address_v6 = self.client.ok("IpamDriver.RequestAddress", {
                "PoolID": net.pool(True)["PoolID"], "Address": "", "Options": ipam_options})["Address"]
        endpoint_id = new_id()
        reply = self.client.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": net.id, "EndpointID": endpoint_id, "Options": dict(box.options),
            "Interface": {"Address": address, "AddressIPv6": address_v6, "MacAddress": ""}})
        ctr = Container(net, endpoint_id, address, address_v6, reply["Interface"]["MacAddress"])
        self.d.containers.append(ctr)  # so FakeDockerd.cleanup would take it down
        return ctr

    def _join(self, box: Container29, ep: Endpoint29) -> None:
        ctr = ep.ctr
        ctr.join = self.client.ok("NetworkDriver.Join", {
            "NetworkID": ctr.network.id, "EndpointID": ctr.endpoint_id, "Options": box.options,
            "SandboxKey": f"/var/run/docker/netns/{box.name}"})
        ep.joined, ep.sb_options = True, box.options
        ep.gw4 = bool(ctr.join.get("Gateway")) or _default_route(ctr.join, 4)
        # sbJoin discards the IPv6 gateway of an endpoint without an IPv6 address.
        ep.gw6 = bool(ctr.address_v6) and (bool(ctr.join.get("GatewayIPv6")) or _default_route(ctr.join, 6))
        before4, before6 = box.gateways()
        box.endpoints.append(ep)
        box.endpoints.sort(key=Endpoint29.key)
        try:
            self._update_external_connectivity(box, ep, before4, before6)
        except ProtocolError:
            # sbJoin's deferred rollback: the driver's Leave, then sbLeave,
            # whose "no gateway" finds the endpoint forgotten (an error,
            # only logged) and whose Leave comes again.
            self._leave(ep)
            box.endpoints.remove(ep)
            self._leave(ep)
            raise

    def _update_external_connectivity(self, box: Container29, ep: Endpoint29,
                                      before4: Endpoint29 | None, before6: Endpoint29 | None) -> None:
        after4, after6 = box.gateways()
        restore = []
        try:
            if ep is after4 or ep is after6:
                for old in (before4, before6):
                    if old is not None:
                        self._program(old, after4, after6)
                        restore.append(old)
            self._program(ep, after4, after6)
        except ProtocolError:
            for old in reversed(restore):
                try:
                    self._program(old, before4, before6)
                except ProtocolError:
                    pass  # logged by dockerd
            raise

    def _program(self, ep: Endpoint29, gw4: Endpoint29 | None, gw6: Endpoint29 | None) -> None:
        """drivers/remote/driver.go ProgramExternalConnectivity."""
        if not ep.joined:
            return  # "endpoint not found": an error dockerd logs
        is4, is6 = gw4 is ep, gw6 is ep
        if (ep.is_gw4, ep.is_gw6) == (is4, is6):
            return
        ids = {"NetworkID": ep.network.id, "EndpointID": ep.ctr.endpoint_id}
        if not is4 and not is6:
            ep.is_gw4 = ep.is_gw6 = False
            self.calls.append(("Revoke", ep.network.name, {}))
            self.client.ok("NetworkDriver.RevokeExternalConnectivity", ids)
            return
        ep.is_gw4, ep.is_gw6 = is4, is6
        extra = {NO_PROXY_6TO4: True} if not is6 and gw6 is not None else {}
        self.calls.append(("Program", ep.network.name, extra))
        self.client.ok("NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {**ep.sb_options, **extra}})

    def _leave(self, ep: Endpoint29) -> None:
        ids = {"NetworkID": ep.network.id, "EndpointID": ep.ctr.endpoint_id}
        self.client.ok("NetworkDriver.Leave", ids)
        ep.joined = ep.is_gw4 = ep.is_gw6 = False
        ep.sb_options = {}

    def _delete_endpoint(self, ep: Endpoint29) -> None:
        ctr = ep.ctr
        self.client.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": ctr.network.id, "EndpointID": ctr.endpoint_id})
        self.d._release_addresses(ctr.network, ctr.address, ctr.address_v6)
        self.d.containers.remove(ctr)


def _default_route(join: dict, version: int) -> bool:
    zero = "0.0.0.0/0" if version == 4 else "::/0"
    return any(r.get("Destination") == zero for r in join.get("StaticRoutes") or [])
