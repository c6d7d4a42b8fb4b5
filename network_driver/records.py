"""Stored records -> datapath descriptions, and the checks of requests.

Plain functions of the stored network and endpoint records (and of a store
transaction where a check needs one): what the kernel and firewall are told
(``bridge_spec``, ``veth_spec``, ``network_rules``, ``endpoint_ports``),
how requests are parsed and told from retries, and the small questions the
pieces of the driver ask of a record. No collaborators, no state.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Protocol, TypeGuard, TypeVar

from datapath.hostports import Key
from datapath.model import BridgeSpec, EndpointPorts, NetworkRules, PortBinding, VethSpec
from spec import values
from spec.errors import BadRequest, Conflict
from spec.stored import IpamData, StoredEndpoint, StoredNetwork, StoredPort

from .store import NetworkStore


class _Requested(Protocol):
    @property
    def request(self) -> str: ...


R = TypeVar("R", bound=_Requested)


# -- stored records -> datapath descriptions ---------------------------------------
def _settled(network: StoredNetwork | None) -> StoredNetwork | None:
    """A stored network, unless its create has not finished: until then it
    only reserves its names, and no other call may use it."""
    return None if network is None or network.pending else network


def bridge_spec(network: StoredNetwork) -> BridgeSpec:
    o = network.options
    gateways = [] if o.inhibit_ipv4 or o.isolated("ipv4") else [d.gateway for d in network.ipv4 if d.gateway]
    if not o.isolated("ipv6"):  # isolated: the host cannot reach the containers
        gateways += [d.gateway for d in network.ipv6 if d.gateway]
    return BridgeSpec(name=network.bridge, mtu=o.mtu, addresses=tuple(gateways))


def _gateway_for(ipam_data: tuple[IpamData, ...], address: str) -> str | None:
    """The gateway of the subnet that holds the endpoint's address. With
    several subnets on a network, another subnet's gateway is not on the
    container's link, and dockerd fails the Join ("route for the gateway
    could not be found")."""
    if not address:
        return None
    ip = ipaddress.ip_interface(address).ip
    return next((str(ipaddress.ip_interface(d.gateway).ip) for d in ipam_data
                 if d.gateway and ip in ipaddress.ip_network(d.pool)), None)


def veth_spec(network: StoredNetwork, endpoint: StoredEndpoint) -> VethSpec:
    return VethSpec(host_name=endpoint.host_veth, peer_name=endpoint.peer_veth,
                    bridge=network.bridge, mac=endpoint.mac, mtu=network.options.mtu)


def network_rules(network: StoredNetwork) -> NetworkRules:
    o = network.options
    return NetworkRules(
        network_id=network.id, bridge=network.bridge,
        subnets_v4=tuple(d.pool for d in network.ipv4),
        subnets_v6=tuple(d.pool for d in network.ipv6),
        internal=o.internal, icc=o.icc, masquerade=o.masquerade, tag=network.tag,
        gateway_mode_v4=o.gateway_mode_ipv4, gateway_mode_v6=o.gateway_mode_ipv6,
        trusted_interfaces=o.trusted_interfaces, host_ipv4=o.host_ipv4, host_ipv6=o.host_ipv6, ipv4=o.ipv4,
    )


def endpoint_ports(network: StoredNetwork, endpoint: StoredEndpoint) -> EndpointPorts:
    o = network.options
    return EndpointPorts(endpoint_id=endpoint.id, network_id=network.id,
                         bridge=network.bridge, bindings=tuple(_bindings(endpoint)), tag=endpoint.tag,
                         routed=tuple(f for f in ("ipv4", "ipv6") if o.gateway_mode(f) == "routed"))


def _bindings(endpoint: StoredEndpoint) -> list[PortBinding]:
    return [port_binding(p) for p in endpoint.ports]


# A published port is two types, the store's (spec/) and the datapath's, since
# neither layer may import the other; these are the one way between them.
def port_binding(port: StoredPort) -> PortBinding:
    return PortBinding(proto=port.proto, host_ip=port.host_ip, host_port=port.host_port,
                       container_ip=port.container_ip, container_port=port.container_port)


def stored_port(binding: PortBinding) -> StoredPort:
    return StoredPort(proto=binding.proto, host_ip=binding.host_ip, host_port=binding.host_port,
                      container_ip=binding.container_ip, container_port=binding.container_port)


def _endpoint_reply(endpoint: StoredEndpoint) -> dict:
    # dockerd fails the endpoint if we echo a field it filled itself.
    return {} if endpoint.mac_given else {"Interface": {"MacAddress": endpoint.mac}}


def _canonical(body: dict, *keys: str) -> str:
    """The parts of a request that define the object, to tell a retry from a clash."""
    return json.dumps({k: body.get(k) for k in keys}, sort_keys=True)


def _ipam_data(field: str, data, version: int) -> tuple[IpamData, ...]:
    out = []
    for where, entry in values.objects(field, data):
        pool = values.network(f"{where}.Pool", entry.get("Pool"), version)
        gateway = None
        if entry.get("Gateway"):
            gw = values.interface(f"{where}.Gateway", entry["Gateway"], version)
            if gw.ip not in pool:
                raise BadRequest(f'{where}.Gateway "{entry["Gateway"]}" is not in pool {pool}')
            gateway = f"{gw.ip}/{pool.prefixlen}"
        aux = entry.get("AuxAddresses") or {}
        if not isinstance(aux, dict):
            raise BadRequest(f"{where}.AuxAddresses {aux!r} is not an object")
        canonical_aux = {}
        for name, value in aux.items():
            ip = values.address(f"{where}.AuxAddresses[{name!r}]", value, version)
            if ip not in pool:
                raise BadRequest(f'{where}.AuxAddresses[{name!r}] "{value}" is not in pool {pool}')
            canonical_aux[name] = str(ip)
        out.append(IpamData(str(pool), gateway, canonical_aux))
    return tuple(out)


def _check_in_pools(field: str, iface, pools: tuple[IpamData, ...]) -> None:
    if iface is None:
        return
    if not any(iface.ip in ipaddress.ip_network(p.pool) for p in pools):
        subnets = ", ".join(p.pool for p in pools) or "none"
        raise BadRequest(f'{field} "{iface}" is not in the network\'s subnets ({subnets})')


def _check_unused(tx: NetworkStore, network: StoredNetwork, addresses: list) -> None:
    """dockerd's IPAM never hands out an address twice, but a request that
    reuses one (a gateway, another endpoint's) would break both holders,
    and their MACs, derived from the address, would clash as well."""
    gateways = {ipaddress.ip_interface(d.gateway).ip for d in network.ipam if d.gateway}
    for ip in sorted((a.ip for a in addresses), key=str):
        if ip in gateways:
            raise Conflict(f"address {ip} is the gateway of network {network.id}")
        holder = tx.address_holder(network.id, str(ip))
        if holder is not None:
            raise Conflict(f"address {ip} is already used by endpoint {holder}")


def _name_given(tx: NetworkStore, network: StoredNetwork, addresses: list) -> str | None:
    """The container name dockerd 29 gave with one of the endpoint's
    addresses at RequestAddress (Pontoon's IPAM keeps it; another IPAM
    driver's addresses have none)."""
    request = json.loads(network.request or "{}")
    for address in addresses:
        data = request.get("IPv4Data" if address.version == 4 else "IPv6Data") or []
        for d in data:
            if d.get("Pool") and address.ip in ipaddress.ip_network(d["Pool"], strict=False):
                name = tx.address_name(d.get("AddressSpace") or "LocalDefault", str(address.ip))
                if name:
                    return name
    return None


def _already(existing: R | None, request: str, what: str) -> TypeGuard[R]:
    """Whether ``existing`` is the result of this very request (a retry);
    a different request for the same object is a conflict."""
    if existing is None:
        return False
    if existing.request != request:
        raise Conflict(f"{what} already exists with different settings")
    return True


def _plan_holds(tx: NetworkStore, plan: StoredNetwork, chosen: str | None) -> bool:
    """Whether ``plan`` (``_plan_network``) is still free at the commit: the
    store-only half of its checks. A bridge the user chose that another
    network took meanwhile is refused, as it would have been before; a tag
    taken meanwhile means planning again. (A link appearing under a default
    name meanwhile is as unlikely as one appearing after the commit, which
    the bridge's create finds.)"""
    if chosen:
        _check_bridge_free(tx, chosen)
    return tx.network_by_tag(plan.tag) is None and (bool(chosen) or tx.network_by_bridge(plan.bridge) is None)


def _check_bridge_free(tx: NetworkStore, bridge: str) -> None:
    holder = tx.network_by_bridge(bridge)
    if holder is not None:
        raise Conflict(f'bridge "{bridge}" already serves network {holder.id}')


def _programmed(endpoint: StoredEndpoint, request: dict, exposed: list) -> bool:
    """Whether ProgramExternalConnectivity would change nothing."""
    if endpoint.ports:
        return endpoint.portmap_request == request
    return not request["portmap"] and exposed in ([], list(endpoint.exposed))


def _published(endpoint: StoredEndpoint | None) -> TypeGuard[StoredEndpoint]:
    return endpoint is not None and bool(endpoint.ports)


def _keys(endpoint: StoredEndpoint) -> list[Key]:
    return [Key(p.proto, p.host_ip, p.host_port) for p in endpoint.ports]
