"""NetworkDriver.ProgramExternalConnectivity and RevokeExternalConnectivity:
an endpoint's published host ports, in the firewall, in the store and held
by sockets, and the bookkeeping the other pieces use to unpublish them."""
from __future__ import annotations

from dataclasses import replace

from datapath.hostports import Claim, Key, PortInUse
from spec.errors import Conflict
from spec.stored import StoredEndpoint, StoredNetwork

from . import ports
from .parts import Part
from .records import _keys, _programmed, _published, endpoint_ports, stored_port
from .rollback import Rollback
from .store import NetworkStore


class Publishing(Part):
    # Host ports are picked and published under the store's write lock: two
    # endpoints must never pick the same free port.
    def program_external_connectivity(self, body: dict) -> dict:
        """{"NetworkID", "EndpointID", "Options": {"com.docker.network.portmap": [...], ...exposedports}}"""
        endpoint_options = body.get("Options") or {}
        portmap = ports.parse_portmap(endpoint_options)
        exposed = ports.parse_exposed(endpoint_options)
        # dockerd 29 calls again when the endpoint's gateway role changes for
        # one family: the same portmap, another set of families.
        versions = list(ports.families(endpoint_options))
        request = {"portmap": portmap, "versions": versions}
        with self._snapshot() as tx:
            # Most containers publish nothing: then there is nothing to write.
            if _programmed(self._endpoint(tx, body["EndpointID"]), request, exposed):
                return {}
        with Rollback() as rollback:
            with self._tx() as tx:
                endpoint = self._endpoint(tx, body["EndpointID"])
                network = self._network(tx, endpoint.network_id)
                if _programmed(endpoint, request, exposed):
                    return {}
                self.unpublish(network, endpoint, rollback)
                endpoint = self._forget_ports(tx, endpoint, rollback)
                pending = ports.plan(portmap, endpoint, network.options.host_binding_ipv4,
                                     tx.ports_in_use, self._firewall.ephemeral_range,
                                     tuple(versions))
                bindings = ports.bindings(pending, self._hold([p.claim for p in pending], rollback))
                endpoint = replace(
                    endpoint, ports=tuple(stored_port(b) for b in bindings),
                    # Counts what Program stored: a request that removed the
                    # rules of a snapshot tells at its commit whether they are
                    # still the stored ones (by content, A-B-A would pass).
                    port_generation=endpoint.port_generation + 1,
                    portmap_request=request, exposed=tuple(exposed) or endpoint.exposed)
                if bindings:
                    self._firewall.add_ports(endpoint_ports(network, endpoint))
                    rollback.undo("remove published ports", self._firewall.remove_ports, endpoint_ports(network, endpoint))
                for b in bindings:
                    tx.add_port(b.proto, b.host_port, b.host_ip, endpoint.id)
                tx.put_endpoint(endpoint)
            rollback.commit()
        return {}

    def revoke_external_connectivity(self, body: dict) -> dict:
        """Ports are freed by the commit, after their rules are gone, so the
        firewall work needs no lock: no other endpoint can pick them sooner."""
        with self._snapshot() as tx:
            endpoint = tx.get_endpoint(body["EndpointID"])
            if not _published(endpoint):
                return {}  # dockerd revokes even what was never programmed
            network = tx.get_network(endpoint.network_id)
        if network is None:
            return {}
        with Rollback() as rollback:
            self.unpublish(network, endpoint, rollback)
            with self._tx() as tx:
                current = tx.get_endpoint(body["EndpointID"])
                if _published(current):
                    tx.put_endpoint(self.forget_ports_since(tx, network, endpoint, current, rollback))
            rollback.commit()
        return {}

    def forget_ports_since(self, tx: NetworkStore, network: StoredNetwork | None, seen: StoredEndpoint | None,
                           current: StoredEndpoint, rollback: Rollback) -> StoredEndpoint:
        """At the commit of a request that unpublished the ports of
        ``seen`` (its snapshot; None: it had none) outside the lock: forget
        what is stored now, ``current``, and first remove the rules of ports
        a Program committed since, which are not the ones removed. Returns
        ``current`` without its ports."""
        if network is not None and current.port_generation != (0 if seen is None else seen.port_generation):
            self.unpublish(network, current, rollback)
        return self._forget_ports(tx, current, rollback)

    def _hold(self, claims: list[Claim], rollback: Rollback) -> list[int]:
        """Hold a host port for each claim (a 409 if one is in use on the
        host); let go again if the request fails."""
        if not claims:
            return []
        try:
            held = self._ports.claim(claims)
        except PortInUse as exc:
            raise Conflict(str(exc)) from None
        keys = [Key(c.proto, c.host_ip, port) for c, port in zip(claims, held)]
        rollback.undo("let published host ports go", self._ports.release, keys)
        return held

    def _forget_ports(self, tx: NetworkStore, endpoint: StoredEndpoint, rollback: Rollback) -> StoredEndpoint:
        """Forget the endpoint's published ports and let their sockets go,
        in the transaction that deletes them; held again if it fails.
        Returns the endpoint without them (for the caller to store)."""
        keys = _keys(endpoint)
        tx.delete_ports(endpoint.id)
        if keys:
            self._ports.release(keys)
            rollback.undo("hold published host ports again", self._hold_again, keys)
        return replace(endpoint, ports=(), portmap_request=None)

    def _hold_again(self, keys: list[Key]) -> None:
        self._ports.claim([Claim.exactly(*k) for k in keys])

    def stored_ports(self) -> list[Key]:
        """Every published host port the store holds: what start-up holds again."""
        with self._snapshot() as tx:
            return [Key(proto, ip, port) for proto in ports.PROTO_NUMBERS
                    for port, ip, _owner in tx.ports_in_use(proto)]

    def unpublish(self, network: StoredNetwork, endpoint: StoredEndpoint, rollback: Rollback) -> None:
        """Remove the endpoint's published ports from the firewall (the
        caller forgets them in the store)."""
        if not endpoint.ports:
            return
        published = endpoint_ports(network, endpoint)
        # Registered before removing: add_ports is idempotent, so it also
        # repairs a removal that failed half-way (after one family, or at
        # the conntrack flush that follows).
        rollback.undo("restore published ports", self._firewall.add_ports, published)
        self._firewall.remove_ports(published)
