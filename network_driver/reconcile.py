"""Start-up: make the kernel, the firewall and the segment match the store,
and undo the networks whose create a crash cut short."""
from __future__ import annotations

from spec.stored import StoredNetwork

from .parts import Part
from .records import bridge_spec, endpoint_ports, network_rules, veth_spec


class Startup(Part):
    def reconcile(self) -> list[str]:
        """Make the kernel and firewall match the store; returns what changed."""
        with self._snapshot() as tx:
            stored = tx.list_networks()
            networks = {n.id: n for n in stored if not n.pending}
            endpoints = [e for e in tx.list_endpoints() if e.network_id in networks]
        pending = [n for n in stored if n.pending]
        changes = self._undo_pending(pending)
        changes += self._links.reconcile(
            [(bridge_spec(n), n.bridge_created) for n in networks.values()],
            [veth_spec(networks[e.network_id], e) for e in endpoints],
            {e.host_veth for e in endpoints if e.sandbox},
        )
        changes += self._firewall.reconcile(
            [network_rules(n) for n in networks.values()],
            [endpoint_ports(networks[e.network_id], e) for e in endpoints if e.ports],
        )
        changes += self._segment.reconcile(list(networks.values()), pending)
        return changes

    def _undo_pending(self, pending: list[StoredNetwork]) -> list[str]:
        """Give back the bridges of networks whose create a crash cut short
        (their rules go with the firewall's reconcile, which wants none of
        them), and forget those networks. One that fails stays recorded, to
        be tried again at the next start."""
        changes, undone = [], []
        for network in pending:
            what = f"undo network {network.id}, created only in part, on bridge {network.bridge}"
            try:
                self._links.release_bridge(bridge_spec(network), network.bridge_created,
                                           network.adopted, untagged=True)
            except Exception as exc:  # start-up must get through the other objects
                changes.append(f"failed to {what}: {exc}")
            else:
                changes.append(what)
                undone.append(network.id)
        if undone:
            with self._tx() as tx:
                for network_id in undone:
                    tx.delete_network(network_id)
        return changes
