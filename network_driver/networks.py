"""NetworkDriver.CreateNetwork and DeleteNetwork: planning a network's
names, recording it pending, making its bridge, rules and segment, undoing
a pending one, and tearing a network down with what it still holds."""
from __future__ import annotations

from dataclasses import replace

from datapath import names
from datapath.model import BRIDGE_PREFIX
from spec.errors import BadRequest, Conflict
from spec.stored import StoredNetwork

from . import options as opts
from .endpoints import Endpoints
from .parts import Part, Parts
from .publishing import Publishing
from .records import (_already, _canonical, _check_bridge_free, _ipam_data, _plan_holds, _settled, bridge_spec,
                      network_rules)
from .rollback import Rollback


class Networks(Part):
    def __init__(self, parts: Parts, endpoints: Endpoints, publishing: Publishing):
        super().__init__(parts)
        self._endpoints = endpoints
        self._publishing = publishing

    def create_network(self, body: dict) -> dict:
        """{"NetworkID": "...", "Options": {...}, "IPv4Data": [...], "IPv6Data": [...]}

        What the network will own is recorded (pending) before the kernel
        sees it: the bridge and chain names it picked, whether the bridge is
        Pontoon's to create or an existing one to adopt, and how an adopted
        one was. So a retry, the rollback and the start-up reconcile (which
        undoes a pending network a crash cut short) know what is Pontoon's.
        One more commit than the kernel work needs, on a rare call."""
        network_id = body["NetworkID"]
        options = opts.parse(body.get("Options"))
        ipv4 = _ipam_data("IPv4Data", body.get("IPv4Data"), 4)
        ipv6 = _ipam_data("IPv6Data", body.get("IPv6Data"), 6)
        if ipv4 and not options.ipv4:
            raise BadRequest(f"IPv4Data holds {ipv4[0].pool} but option {opts.ENABLE_IPV4} is false")
        request = _canonical(body, "Options", "IPv4Data", "IPv6Data")
        what = f"network {network_id}"
        with self._snapshot() as tx:
            stored = tx.get_network(network_id)
            if _already(_settled(stored), request, what):
                return {}  # a retry of what is already done
            if options.bridge_name:
                _check_bridge_free(tx, options.bridge_name)
        if options.bridge_name:
            self._links.check_bridge_name(options.bridge_name)
        # What the segment settles beyond this host (a cluster's VNI and
        # MTU), before the record that plans the network and outside the
        # store's write lock, since it may ask other hosts.
        network = self._segment.prepare(StoredNetwork(network_id, options, ipv4, ipv6, request))
        plan = self._plan_network(network, options.bridge_name) if stored is None else None
        with Rollback() as rollback:
            while True:
                with self._tx() as tx:
                    stored = tx.get_network(network_id)
                    if stored is None:
                        if plan is not None and _plan_holds(tx, plan, options.bridge_name):
                            network = plan
                            tx.put_network(network)
                            break
                    elif _already(_settled(stored), request, what):
                        return {}  # done meanwhile
                    elif stored.request != request:
                        raise Conflict(f"{what} is being created with different settings")
                    else:
                        # An attempt cut short (its process died): carry on with
                        # what it recorded. (Two concurrent creates of one ID would
                        # both carry on; dockerd makes the IDs and sends no such
                        # pair. Another network asking for the same bridge name
                        # meanwhile finds it reserved by this record.)
                        network = stored
                        break
                # Another network took the planned tag meanwhile: plan again.
                plan = self._plan_network(network, options.bridge_name)
            rollback.undo(f"forget network {network_id}", self._forget_pending, network_id)
            spec = bridge_spec(network)
            rollback.undo(f"give back bridge {network.bridge}", self._links.release_bridge,
                          spec, network.bridge_created, network.adopted, True)
            self._links.create_bridge(spec, owned=network.bridge_created)
            # Registered first: removing is idempotent and drops the base
            # chains again when no other network needs them, so a failure
            # half-way through add_network leaves none. (add_network puts
            # in the base chains and jumps it needs in the same restore.)
            rollback.undo(f"remove firewall rules of {network.bridge}", self._firewall.remove_network,
                          network_rules(network))
            self._firewall.add_network(network_rules(network))
            rollback.undo(f"detach {network.bridge} from its segment", self._detach_as_stored, network)
            self._segment.attach(network)
            with self._tx() as tx:
                # As stored now: attaching may have recorded this host's
                # address on the network (cluster.hostaddr) meanwhile.
                tx.put_network(replace(tx.get_network(network_id) or network, pending=False))
            rollback.commit()
        return {}

    def _detach_as_stored(self, network: StoredNetwork) -> None:
        """An undo: detach ``network`` as the store holds it now, with what
        attaching recorded of it (this host's address on it) before it failed."""
        with self._snapshot() as tx:
            stored = tx.get_network(network.id)
        self._segment.detach(stored or network)

    def _plan_network(self, network: StoredNetwork, chosen: str | None) -> StoredNetwork:
        """``network`` as a pending record: with its tag (and default bridge
        name) unused by any stored network, and, for a bridge that exists
        already (``chosen``, the name the user gave), how it is before
        Pontoon touches it. From a snapshot and the kernel, outside the
        store's write lock, which every other call waits on; the commit
        checks again (``_plan_holds``) that no other network took the tag
        or the bridge meanwhile, so two networks never pick one."""
        with self._snapshot() as tx:
            for tag in names.tags(network.id):
                default = BRIDGE_PREFIX + tag
                # A default name held by a link Pontoon did not make is passed
                # over too: only a name the user chose is adopted.
                if tx.network_by_tag(tag) is None and (chosen or (
                        tx.network_by_bridge(default) is None and not self._links.link_exists(default))):
                    break
            else:
                raise Conflict(f"network {network.id}: every name it may take is held "
                               f"({', '.join(names.tags(network.id))})")
            # A chosen bridge was checked free before, and is again under the
            # lock (_plan_holds); a default one, in the loop above.
            bridge = chosen or default
        adopted = self._links.survey_bridge(bridge) if chosen else None
        return replace(network, tag=tag, bridge=bridge, bridge_created=adopted is None, adopted=adopted, pending=True)

    def _forget_pending(self, network_id: str) -> None:
        with self._tx() as tx:
            stored = tx.get_network(network_id)
            if stored is not None and stored.pending:
                tx.delete_network(network_id)

    def delete_network(self, body: dict) -> dict:
        """Firewall first, links last: a failure restores the rules removed so
        far (the re-adds are idempotent, so they also repair a removal that
        failed half-way) and recreates veths deleted so far. The container
        end of a joined endpoint's veth cannot come back, but dockerd never
        deletes a network that still has endpoints in use."""
        network_id = body["NetworkID"]
        with self._snapshot() as tx:
            network = _settled(tx.get_network(network_id))
            if network is None:
                return {}  # dockerd forgets the network whatever we answer
            endpoints = tx.list_endpoints(network_id)
        with Rollback() as rollback:
            for endpoint in endpoints:
                self._publishing.unpublish(network, endpoint, rollback)
            rules = network_rules(network)
            rollback.undo(f"restore firewall rules of {network.bridge}", self._firewall.add_network, rules)
            self._firewall.remove_network(rules)
            for endpoint in endpoints:
                self._endpoints.delete_veth(network, endpoint, rollback)
            rollback.undo(f"attach {network.bridge} to its segment again", self._segment.attach, network)
            self._segment.detach(network)
            spec = bridge_spec(network)
            self._links.release_bridge(spec, network.bridge_created, network.adopted)
            # The commit can still fail (the store's lock held past its
            # timeout): the bridge comes back first, for the veths and the
            # rules (route_localnet is a sysctl of the bridge) to go back on.
            # Made again (tagged) if it was Pontoon's, adopted again (after
            # the release gave it back, so its record of how it was holds).
            rollback.undo(f"recreate bridge {network.bridge}", self._links.create_bridge, spec,
                          network.bridge_created)
            with self._tx() as tx:
                # Read again: dockerd creates no endpoint on a network it is
                # deleting, but a concurrent CreateEndpoint or Program may
                # have committed since the snapshot, and none of it may
                # outlive the network, in the store or in the kernel.
                before = {e.id: e for e in endpoints}
                new, late = [], False
                for endpoint in tx.list_endpoints(network_id):
                    seen = before.get(endpoint.id)
                    late |= seen is None or seen.port_generation != endpoint.port_generation
                    self._publishing.forget_ports_since(tx, network, seen, endpoint, rollback)
                    if seen is None:
                        new.append(endpoint)
                        self._links.delete_veth(endpoint.host_veth)
                    tx.delete_endpoint(endpoint.id)
                if late:  # their port chains kept the base chains of a last network
                    self._firewall.remove_network(rules)
                tx.delete_network(network_id)
            rollback.commit()
        # The records beyond this host of endpoints new since the snapshot
        # may have been published after detach removed this host's: they go
        # too, once the store has forgotten them (nothing is left to undo),
        # and outside its lock, since the segment may ask other hosts. (Those
        # of the snapshot's endpoints went with detach.)
        for endpoint in new:
            self._segment.unpublish(network, endpoint)
        return {}
