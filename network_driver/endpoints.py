"""NetworkDriver.CreateEndpoint, DeleteEndpoint, EndpointOperInfo, Join
and Leave: an endpoint's veth pair (named from free tags), its record, and
its sandbox."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from datapath import names
from datapath.errors import NameTaken
from spec import values
from spec.errors import Conflict
from spec.stored import StoredEndpoint, StoredNetwork

from . import ports
from .parts import Part, Parts
from .publishing import Publishing
from .records import (_already, _bindings, _canonical, _check_in_pools, _check_unused, _endpoint_reply,
                      _gateway_for, _name_given, veth_spec)
from .rollback import Rollback


class Endpoints(Part):
    def __init__(self, parts: Parts, publishing: Publishing):
        super().__init__(parts)
        self._publishing = publishing

    def create_endpoint(self, body: dict) -> dict:
        """{"NetworkID", "EndpointID", "Interface": {"Address", "AddressIPv6", "MacAddress"}, "Options"}"""
        network_id, endpoint_id = body["NetworkID"], body["EndpointID"]
        iface = body.get("Interface") or {}
        address = iface.get("Address") or ""
        address_v6 = iface.get("AddressIPv6") or ""
        mac = iface.get("MacAddress") or ""
        addr4 = values.interface("Interface.Address", address, 4) if address else None
        addr6 = values.interface("Interface.AddressIPv6", address_v6, 6) if address_v6 else None
        if mac:
            mac = values.mac("Interface.MacAddress", mac)
        endpoint_options = body.get("Options") or {}
        exposed = ports.parse_exposed(endpoint_options)
        request = _canonical(body, "Interface", "Options")
        what = f"endpoint {endpoint_id}"
        addresses = [a for a in (addr4, addr6) if a is not None]
        with self._snapshot() as tx:
            network = self._network(tx, network_id)
            existing = tx.get_endpoint(endpoint_id)
            if _already(existing, request, what):
                return _endpoint_reply(existing)
            _check_unused(tx, network, addresses)
            name = _name_given(tx, network, addresses)
            tags = names.tags(endpoint_id)
            first = next(tags)  # nearly always the one taken: looked up here, at no extra cost
            held = tx.endpoint_by_veth(self._links.veth_names(first)[0]) is not None
            free = self._free_tags(tags, None if held else first)
        _check_in_pools("Interface.Address", addr4, network.ipv4)
        _check_in_pools("Interface.AddressIPv6", addr6, network.ipv6)
        endpoint = StoredEndpoint(
            endpoint_id, network_id, address=str(addr4) if addr4 else "", address_v6=str(addr6) if addr6 else "",
            mac=mac or self._links.derive_mac(str(addr4.ip) if addr4 else None, endpoint_id),
            mac_given=bool(mac), exposed=tuple(exposed), request=request,
            name=name or None,  # optional: dockerd before 29 gives none, and older records have none
        )
        with Rollback() as rollback:
            endpoint = self._new_veth(network, endpoint, free, rollback)
            self._point("veth made")
            rollback.undo(f"unpublish endpoint {endpoint_id}", self._segment.unpublish, network, endpoint)
            self._segment.publish(network, endpoint)
            with self._tx() as tx:
                # What a concurrent request may have changed since the snapshot.
                self._network(tx, network_id)
                existing = tx.get_endpoint(endpoint_id)
                if _already(existing, request, what):
                    return _endpoint_reply(existing)  # the same request, done meanwhile: ours goes
                _check_unused(tx, network, addresses)
                if tx.endpoint_by_veth(endpoint.host_veth) is not None:
                    raise Conflict(f'veth "{endpoint.host_veth}" was taken meanwhile; try again')
                tx.add_endpoint(endpoint)
            rollback.commit()
        return _endpoint_reply(endpoint)

    def _free_tags(self, rest: Iterator[str], first: str | None) -> Iterator[str]:
        """An endpoint's tags no stored endpoint holds: ``first`` (None when
        held), then those of ``rest``, each looked up only when the one
        before it could not be used. A stored endpoint's veth is missing
        from the host while a crash or a user has deleted it, and its name
        must not go to another endpoint."""
        if first is not None:
            yield first
        for tag in rest:
            with self._snapshot() as tx:
                held = tx.endpoint_by_veth(self._links.veth_names(tag)[0]) is not None
            if not held:
                yield tag

    def _new_veth(self, network: StoredNetwork, endpoint: StoredEndpoint, free: Iterator[str],
                  rollback: Rollback) -> StoredEndpoint:
        """Make the endpoint's veth pair under the first of the ``free`` tags
        whose names no link holds; returns ``endpoint`` with the tag and
        names. A link found under a name is never taken over: it may be a
        user's, or another endpoint's."""
        for tag in free:
            host_name, peer_name = self._links.veth_names(tag)
            endpoint = replace(endpoint, tag=tag, host_veth=host_name, peer_veth=peer_name)
            try:
                self._links.create_veth(veth_spec(network, endpoint), new=True)
            except NameTaken:
                continue
            # No store lookup first (as Join's undo does): the name was
            # free, so the pair is this request's alone, and the undo must
            # not need the write lock whose timeout may be what failed.
            rollback.undo(f"delete veth {host_name}", self._links.delete_veth, host_name)
            return endpoint
        raise Conflict(f"endpoint {endpoint.id}: every veth name it may take is held")

    def delete_endpoint(self, body: dict) -> dict:
        with self._snapshot() as tx:
            endpoint = tx.get_endpoint(body["EndpointID"])
            if endpoint is None:
                return {}  # dockerd sends deletes for endpoints we may never have known
            network = tx.get_network(endpoint.network_id)
        with Rollback() as rollback:
            if network is not None:
                self._publishing.unpublish(network, endpoint, rollback)
                rollback.undo(f"publish endpoint {endpoint.id} again", self._segment.publish, network, endpoint)
                self._segment.unpublish(network, endpoint)
            self.delete_veth(network, endpoint, rollback)
            with self._tx() as tx:
                current = tx.get_endpoint(endpoint.id)
                if current is not None:
                    self._publishing.forget_ports_since(tx, network, endpoint, current, rollback)
                    tx.delete_endpoint(endpoint.id)
            rollback.commit()
        if network is not None:
            self._segment.endpoints_changed(network)
        return {}

    def _delete_unowned_veth(self, host_name: str) -> None:
        """An undo: delete a veth this request made or adopted, unless a
        stored endpoint owns it by now (another request for the same
        endpoint adopted it and committed). Under the write lock, so no
        commit comes between the check and the delete."""
        with self._tx() as tx:
            if tx.endpoint_by_veth(host_name) is None:
                self._links.delete_veth(host_name)

    def delete_veth(self, network: StoredNetwork | None, endpoint: StoredEndpoint, rollback: Rollback) -> None:
        """The last, least reversible step of removing an endpoint."""
        self._links.delete_veth(endpoint.host_veth)
        if network is not None and not endpoint.sandbox:
            rollback.undo(f"recreate veth {endpoint.host_veth}", self._links.create_veth,
                          veth_spec(network, endpoint))

    def endpoint_oper_info(self, body: dict) -> dict:
        with self._snapshot() as tx:
            endpoint = self._endpoint(tx, body["EndpointID"])
            network = self._network(tx, endpoint.network_id)
        return {"Value": {
            "bridge": network.bridge,
            "host_veth": endpoint.host_veth,
            "mac": endpoint.mac,
            "addresses": list(endpoint.addresses),
            "sandbox": endpoint.sandbox,
            ports.PORTMAP: ports.as_portmap(_bindings(endpoint)),
            ports.EXPOSED: list(endpoint.exposed),
        }}

    # -- sandboxes -------------------------------------------------------------
    def join(self, body: dict) -> dict:
        """{"NetworkID", "EndpointID", "SandboxKey": "/var/run/docker/netns/…", "Options"}"""
        sandbox = body.get("SandboxKey") or ""
        with self._snapshot() as tx:
            endpoint = self._endpoint(tx, body["EndpointID"])
            network = self._network(tx, endpoint.network_id)
        spec = veth_spec(network, endpoint)
        with Rollback() as rollback:
            if not endpoint.sandbox and not self._links.veth_intact(spec):
                # SrcName must exist in the host namespace when Join returns;
                # after a crash or a hand-deleted veth this brings it back.
                # Checked first: rebuilding an intact pair cost most of Join.
                # Undone if the endpoint is deleted meanwhile.
                rollback.undo(f"delete veth {spec.host_name}", self._delete_unowned_veth, spec.host_name)
                self._links.create_veth(spec)
            with self._tx() as tx:
                endpoint = replace(self._endpoint(tx, body["EndpointID"]), sandbox=sandbox)
                tx.put_endpoint(endpoint)
            rollback.commit()
        self._segment.endpoints_changed(network)
        reply: dict = {"InterfaceName": {"SrcName": endpoint.peer_veth,
                                         "DstPrefix": network.options.iface_prefix}}
        if not network.options.internal:
            # Always name our gateways: without one dockerd would also attach
            # the container to docker_gwbridge and send published ports there.
            gw4 = _gateway_for(network.ipv4, endpoint.address)
            gw6 = _gateway_for(network.ipv6, endpoint.address_v6)
            if gw4:
                reply["Gateway"] = gw4
            if gw6:
                reply["GatewayIPv6"] = gw6
        return reply

    def leave(self, body: dict) -> dict:
        with self._tx() as tx:
            endpoint = tx.get_endpoint(body["EndpointID"])
            if endpoint is not None and endpoint.sandbox:
                tx.put_endpoint(replace(endpoint, sandbox=""))
        return {}
