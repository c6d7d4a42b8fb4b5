"""The NetworkDriver protocol: networks and endpoints, in the store and the kernel.

Each state-changing method reads what it needs from a snapshot, makes its
kernel and firewall changes under a ``Rollback`` (each with its undo), and
commits last in one short store transaction, which checks again what a
concurrent request may have changed meanwhile. Kernel work stays outside the
store's write lock (shared by every worker and thread), so the
requests of other containers never queue behind a veth being made or
deleted. If anything fails, the undos run and the store keeps nothing; if
the process dies before the commit, reconcile at the next start removes the
orphans, or recreates what a delete had removed.

Published host ports are the exception: they are picked from the stored
ones, so ProgramExternalConnectivity does its firewall work inside the
transaction (RevokeExternalConnectivity frees them only at its commit, so
it needs no lock for its own). Each published port is also held by a bound
socket (``ports``, see datapath.hostports and plugin.portkeeper), claimed
and let go inside the transaction that stores and forgets it, so a port is
held exactly while it is stored.

Races. Kernel work outside the lock works from a snapshot, so every commit
checks what changed since and finishes the job for it under the lock (the
rare case pays, not the usual one): Revoke and DeleteEndpoint remove the
rules of ports a concurrent Program published meanwhile, and forget and let
go exactly what is stored at their commit; DeleteNetwork tears down the
endpoints committed after its snapshot; an undo deletes a veth only if no
stored endpoint owns it (another request for the same endpoint may have
adopted and committed it), and a request that adopted a pair checks at its
commit that the pair is still there. ``hook`` (plugin.testhook) names the
points between steps where tests stop a request to force an interleaving.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Callable, ContextManager, Iterator

from datapath import names
from datapath.errors import NameTaken
from datapath.hostports import Claim, Key, PortInUse
from datapath.model import BRIDGE_PREFIX, BridgeSpec, EndpointPorts, NetworkRules, PortBinding, VethSpec
from spec import values
from spec.errors import BadRequest, Conflict, found

from . import options as opts
from . import ports
from .rollback import Rollback
from .segment import LocalSegment, Segment
from .store import NetworkStore

Transaction = Callable[[], ContextManager[NetworkStore]]


class NetworkDriver:
    def __init__(self, transaction: Transaction, snapshot: Transaction, links, firewall, host_ports,
                 hook: Callable[[str], None] | None = None, segment: Segment | None = None):
        self._tx = transaction
        self._snapshot = snapshot
        self._links = links
        self._firewall = firewall
        self._segment = segment or LocalSegment()
        self._ports = host_ports  # claim(list[Claim]) -> ports, release(list[Key])
        self._hook = hook

    def _point(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)

    # -- capabilities and no-ops ------------------------------------------------
    def get_capabilities(self, _body: dict) -> dict:
        # GwAllocChecker: dockerd 28+ then asks GwAllocCheck before it
        # allocates gateways; older ones ignore the field.
        return {"Scope": "local", "ConnectivityScope": self._segment.connectivity, "GwAllocChecker": True}

    def gw_alloc_check(self, body: dict) -> dict:
        """{"Options": <as CreateNetwork's>} -> {"SkipIPv4", "SkipIPv6"}: which
        gateway addresses Pontoon would never put on the bridge or give a
        container, so dockerd need not take them from the pool. The same
        cases as Docker's bridge driver. Bad options are refused here
        already, with CreateNetwork's message."""
        options = opts.parse(body.get("Options"))
        return {"SkipIPv4": options.isolated("ipv4") or (options.inhibit_ipv4 and options.internal),
                "SkipIPv6": options.isolated("ipv6")}

    def nothing_to_do(self, _body: dict) -> dict:
        """Discovery and swarm allocation calls: a local driver has nothing to do."""
        return {}

    # -- networks ------------------------------------------------------------
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
            raise BadRequest(f"IPv4Data holds {ipv4[0]['pool']} but option {opts.ENABLE_IPV4} is false")
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
        network = {"id": network_id, "options": options.to_dict(), "ipv4": ipv4, "ipv6": ipv6,
                   "request": request}
        network.update(self._segment.prepare(network))
        plan = self._plan_network(network_id, options.bridge_name) if stored is None else None
        with Rollback() as rollback:
            while True:
                with self._tx() as tx:
                    stored = tx.get_network(network_id)
                    if stored is None:
                        if plan is not None and _plan_holds(tx, plan, options.bridge_name):
                            network.update(plan)
                            tx.put_network(network)
                            break
                    elif _already(_settled(stored), request, what):
                        return {}  # done meanwhile
                    elif stored["request"] != request:
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
                plan = self._plan_network(network_id, options.bridge_name)
            rollback.undo(f"forget network {network_id}", self._forget_pending, network_id)
            spec = bridge_spec(network)
            rollback.undo(f"give back bridge {network['bridge']}", self._links.release_bridge,
                          spec, network["bridge_created"], network["adopted"], True)
            self._links.create_bridge(spec, owned=network["bridge_created"])
            # Registered first: removing is idempotent and drops the base
            # chains again when no other network needs them, so a failure
            # half-way through add_network leaves none. (add_network puts
            # in the base chains and jumps it needs in the same restore.)
            rollback.undo(f"remove firewall rules of {network['bridge']}", self._firewall.remove_network,
                          network_rules(network))
            self._firewall.add_network(network_rules(network))
            rollback.undo(f"detach {network['bridge']} from its segment", self._segment.detach, network)
            self._segment.attach(network)
            with self._tx() as tx:
                del network["pending"]
                tx.put_network(network)
            rollback.commit()
        return {}

    def _plan_network(self, network_id: str, chosen: str | None) -> dict:
        """What makes a network record pending: its tag (and default bridge
        name) unused by any stored network, and, for a bridge that exists
        already (``chosen``, the name the user gave), how it is before
        Pontoon touches it. From a snapshot and the kernel, outside the
        store's write lock, which every other call waits on; the commit
        checks again (``_plan_holds``) that no other network took the tag
        or the bridge meanwhile, so two networks never pick one."""
        with self._snapshot() as tx:
            for tag in names.tags(network_id):
                default = BRIDGE_PREFIX + tag
                # A default name held by a link Pontoon did not make is passed
                # over too: only a name the user chose is adopted.
                if tx.network_by_tag(tag) is None and (chosen or (
                        tx.network_by_bridge(default) is None and not self._links.link_exists(default))):
                    break
            else:
                raise Conflict(f"network {network_id}: every name it may take is held "
                               f"({', '.join(names.tags(network_id))})")
            # A chosen bridge was checked free before, and is again under the
            # lock (_plan_holds); a default one, in the loop above.
            bridge = chosen or default
        adopted = self._links.survey_bridge(bridge) if chosen else None
        return {"tag": tag, "bridge": bridge, "bridge_created": adopted is None, "adopted": adopted,
                "pending": True}

    def _forget_pending(self, network_id: str) -> None:
        with self._tx() as tx:
            if (tx.get_network(network_id) or {}).get("pending"):
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
                self._unpublish(network, endpoint, rollback)
            rules = network_rules(network)
            rollback.undo(f"restore firewall rules of {network['bridge']}", self._firewall.add_network, rules)
            self._firewall.remove_network(rules)
            for endpoint in endpoints:
                self._delete_veth(network, endpoint, rollback)
            rollback.undo(f"attach {network['bridge']} to its segment again", self._segment.attach, network)
            self._segment.detach(network)
            spec = bridge_spec(network)
            self._links.release_bridge(spec, network["bridge_created"], network["adopted"])
            # The commit can still fail (the store's lock held past its
            # timeout): the bridge comes back first, for the veths and the
            # rules (route_localnet is a sysctl of the bridge) to go back on.
            # Made again (tagged) if it was Pontoon's, adopted again (after
            # the release gave it back, so its record of how it was holds).
            rollback.undo(f"recreate bridge {network['bridge']}", self._links.create_bridge, spec,
                          network["bridge_created"])
            with self._tx() as tx:
                # Read again: dockerd creates no endpoint on a network it is
                # deleting, but a concurrent CreateEndpoint or Program may
                # have committed since the snapshot, and none of it may
                # outlive the network, in the store or in the kernel.
                before = {e["id"]: e for e in endpoints}
                new, late = [], False
                for endpoint in tx.list_endpoints(network_id):
                    seen = before.get(endpoint["id"])
                    late |= seen is None or _generation(seen) != _generation(endpoint)
                    self._forget_ports_since(tx, network, seen or {}, endpoint, rollback)
                    if seen is None:
                        new.append(endpoint)
                        self._links.delete_veth(endpoint["host_veth"])
                    tx.delete_endpoint(endpoint["id"])
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

    # -- endpoints -------------------------------------------------------------
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
        _check_in_pools("Interface.Address", addr4, network["ipv4"])
        _check_in_pools("Interface.AddressIPv6", addr6, network["ipv6"])
        endpoint = {
            "id": endpoint_id, "network_id": network_id,
            "address": str(addr4) if addr4 else "", "address_v6": str(addr6) if addr6 else "",
            "mac": mac or self._links.derive_mac(str(addr4.ip) if addr4 else None, endpoint_id),
            "mac_given": bool(mac), "sandbox": "", "exposed": exposed, "ports": [], "request": request,
        }
        if name:  # optional: dockerd before 29 gives none, and older records have none
            endpoint["name"] = name
        with Rollback() as rollback:
            self._new_veth(network, endpoint, free, rollback)
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
                if tx.endpoint_by_veth(endpoint["host_veth"]) is not None:
                    raise Conflict(f'veth "{endpoint["host_veth"]}" was taken meanwhile; try again')
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

    def _new_veth(self, network: dict, endpoint: dict, free: Iterator[str], rollback: Rollback) -> None:
        """Make the endpoint's veth pair under the first of the ``free`` tags
        whose names no link holds, and record the tag and names in
        ``endpoint``. A link found under a name is never taken over: it may
        be a user's, or another endpoint's."""
        for tag in free:
            host_name, peer_name = self._links.veth_names(tag)
            endpoint.update(tag=tag, host_veth=host_name, peer_veth=peer_name)
            try:
                self._links.create_veth(veth_spec(network, endpoint), new=True)
            except NameTaken:
                continue
            # No store lookup first (as Join's undo does): the name was
            # free, so the pair is this request's alone, and the undo must
            # not need the write lock whose timeout may be what failed.
            rollback.undo(f"delete veth {host_name}", self._links.delete_veth, host_name)
            return
        raise Conflict(f"endpoint {endpoint['id']}: every veth name it may take is held")

    def delete_endpoint(self, body: dict) -> dict:
        with self._snapshot() as tx:
            endpoint = tx.get_endpoint(body["EndpointID"])
            if endpoint is None:
                return {}  # dockerd sends deletes for endpoints we may never have known
            network = tx.get_network(endpoint["network_id"])
        with Rollback() as rollback:
            if network is not None:
                self._unpublish(network, endpoint, rollback)
                rollback.undo(f"publish endpoint {endpoint['id']} again", self._segment.publish, network, endpoint)
                self._segment.unpublish(network, endpoint)
            self._delete_veth(network, endpoint, rollback)
            with self._tx() as tx:
                current = tx.get_endpoint(endpoint["id"])
                if current is not None:
                    self._forget_ports_since(tx, network, endpoint, current, rollback)
                    tx.delete_endpoint(endpoint["id"])
            rollback.commit()
        return {}

    def _delete_unowned_veth(self, host_name: str) -> None:
        """An undo: delete a veth this request made or adopted, unless a
        stored endpoint owns it by now (another request for the same
        endpoint adopted it and committed). Under the write lock, so no
        commit comes between the check and the delete."""
        with self._tx() as tx:
            if tx.endpoint_by_veth(host_name) is None:
                self._links.delete_veth(host_name)

    def _delete_veth(self, network: dict | None, endpoint: dict, rollback: Rollback) -> None:
        """The last, least reversible step of removing an endpoint."""
        self._links.delete_veth(endpoint["host_veth"])
        if network is not None and not endpoint["sandbox"]:
            rollback.undo(f"recreate veth {endpoint['host_veth']}", self._links.create_veth,
                          veth_spec(network, endpoint))

    def endpoint_oper_info(self, body: dict) -> dict:
        with self._snapshot() as tx:
            endpoint = self._endpoint(tx, body["EndpointID"])
            network = self._network(tx, endpoint["network_id"])
        return {"Value": {
            "bridge": network["bridge"],
            "host_veth": endpoint["host_veth"],
            "mac": endpoint["mac"],
            "addresses": [a for a in (endpoint["address"], endpoint["address_v6"]) if a],
            "sandbox": endpoint["sandbox"],
            ports.PORTMAP: ports.as_portmap(_bindings(endpoint)),
            ports.EXPOSED: endpoint["exposed"],
        }}

    # -- sandboxes -------------------------------------------------------------
    def join(self, body: dict) -> dict:
        """{"NetworkID", "EndpointID", "SandboxKey": "/var/run/docker/netns/…", "Options"}"""
        sandbox = body.get("SandboxKey") or ""
        with self._snapshot() as tx:
            endpoint = self._endpoint(tx, body["EndpointID"])
            network = self._network(tx, endpoint["network_id"])
        spec = veth_spec(network, endpoint)
        with Rollback() as rollback:
            if not endpoint["sandbox"] and not self._links.veth_intact(spec):
                # SrcName must exist in the host namespace when Join returns;
                # after a crash or a hand-deleted veth this brings it back.
                # Checked first: rebuilding an intact pair cost most of Join.
                # Undone if the endpoint is deleted meanwhile.
                rollback.undo(f"delete veth {spec.host_name}", self._delete_unowned_veth, spec.host_name)
                self._links.create_veth(spec)
            with self._tx() as tx:
                endpoint = self._endpoint(tx, body["EndpointID"])
                endpoint["sandbox"] = sandbox
                tx.put_endpoint(endpoint)
            rollback.commit()
        reply: dict = {"InterfaceName": {"SrcName": endpoint["peer_veth"],
                                         "DstPrefix": network["options"]["iface_prefix"]}}
        if not network["options"]["internal"]:
            # Always name our gateways: without one dockerd would also attach
            # the container to docker_gwbridge and send published ports there.
            gw4 = _gateway_for(network["ipv4"], endpoint["address"])
            gw6 = _gateway_for(network["ipv6"], endpoint["address_v6"])
            if gw4:
                reply["Gateway"] = gw4
            if gw6:
                reply["GatewayIPv6"] = gw6
        return reply

    def leave(self, body: dict) -> dict:
        with self._tx() as tx:
            endpoint = tx.get_endpoint(body["EndpointID"])
            if endpoint is not None and endpoint["sandbox"]:
                endpoint["sandbox"] = ""
                tx.put_endpoint(endpoint)
        return {}

    # -- published ports ---------------------------------------------------------
    # Host ports are picked and published under the store's write lock: two
    # endpoints must never pick the same free port.
    def program_external_connectivity(self, body: dict) -> dict:
        """{"NetworkID", "EndpointID", "Options": {"com.docker.network.portmap": [...], ...exposedports}}"""
        endpoint_options = body.get("Options") or {}
        portmap = ports.parse_portmap(endpoint_options)
        exposed = ports.parse_exposed(endpoint_options)
        # dockerd 29 calls again when the endpoint's gateway role changes for
        # one family: the same portmap, another set of families.
        request = {"portmap": portmap, "versions": list(ports.families(endpoint_options))}
        with self._snapshot() as tx:
            # Most containers publish nothing: then there is nothing to write.
            if _programmed(self._endpoint(tx, body["EndpointID"]), request, exposed):
                return {}
        with Rollback() as rollback:
            with self._tx() as tx:
                endpoint = self._endpoint(tx, body["EndpointID"])
                network = self._network(tx, endpoint["network_id"])
                if _programmed(endpoint, request, exposed):
                    return {}
                self._unpublish(network, endpoint, rollback)
                self._forget_ports(tx, endpoint, rollback)
                pending = ports.plan(portmap, endpoint, network["options"]["host_binding_ipv4"],
                                     tx.ports_in_use, self._firewall.ephemeral_range,
                                     tuple(request["versions"]))
                bindings = ports.bindings(pending, self._hold([p.claim for p in pending], rollback))
                endpoint["ports"] = [b.__dict__ for b in bindings]
                # Counts what Program stored: a request that removed the
                # rules of a snapshot tells at its commit whether they are
                # still the stored ones (by content, A-B-A would pass).
                endpoint["port_generation"] = _generation(endpoint) + 1
                endpoint["portmap_request"] = request
                endpoint["exposed"] = exposed or endpoint["exposed"]
                if bindings:
                    self._firewall.add_ports(endpoint_ports(network, endpoint))
                    rollback.undo("remove published ports", self._firewall.remove_ports, endpoint_ports(network, endpoint))
                for b in bindings:
                    tx.add_port(b.proto, b.host_port, b.host_ip, endpoint["id"])
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
            network = tx.get_network(endpoint["network_id"])
        if network is None:
            return {}
        with Rollback() as rollback:
            self._unpublish(network, endpoint, rollback)
            with self._tx() as tx:
                current = tx.get_endpoint(body["EndpointID"])
                if _published(current):
                    self._forget_ports_since(tx, network, endpoint, current, rollback)
                    tx.put_endpoint(current)
            rollback.commit()
        return {}

    def _forget_ports_since(self, tx: NetworkStore, network: dict | None, seen: dict, current: dict,
                            rollback: Rollback) -> None:
        """At the commit of a request that unpublished the ports of
        ``seen`` (its snapshot) outside the lock: forget what is stored now,
        ``current``, and first remove the rules of ports a Program committed
        since, which are not the ones removed."""
        if network is not None and _generation(current) != _generation(seen):
            self._unpublish(network, current, rollback)
        self._forget_ports(tx, current, rollback)

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

    def _forget_ports(self, tx: NetworkStore, endpoint: dict, rollback: Rollback) -> None:
        """Forget the endpoint's published ports and let their sockets go,
        in the transaction that deletes them; held again if it fails."""
        keys = _keys(endpoint)
        tx.delete_ports(endpoint["id"])
        endpoint["ports"] = []
        endpoint.pop("portmap_request", None)
        if keys:
            self._ports.release(keys)
            rollback.undo("hold published host ports again", self._hold_again, keys)

    def _hold_again(self, keys: list[Key]) -> None:
        self._ports.claim([Claim.exactly(*k) for k in keys])

    def stored_ports(self) -> list[Key]:
        """Every published host port the store holds: what start-up holds again."""
        with self._snapshot() as tx:
            return [Key(proto, ip, port) for proto in ports.PROTO_NUMBERS
                    for port, ip, _owner in tx.ports_in_use(proto)]

    def _unpublish(self, network: dict, endpoint: dict, rollback: Rollback) -> None:
        """Remove the endpoint's published ports from the firewall (the
        caller forgets them in the store)."""
        if not endpoint["ports"]:
            return
        published = endpoint_ports(network, endpoint)
        # Registered before removing: add_ports is idempotent, so it also
        # repairs a removal that failed half-way (after one family, or at
        # the conntrack flush that follows).
        rollback.undo("restore published ports", self._firewall.add_ports, published)
        self._firewall.remove_ports(published)

    # -- start-up ---------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Make the kernel and firewall match the store; returns what changed."""
        with self._snapshot() as tx:
            stored = tx.list_networks()
            networks = {n["id"]: n for n in stored if not n.get("pending")}
            endpoints = [e for e in tx.list_endpoints() if e["network_id"] in networks]
        pending = [n for n in stored if n.get("pending")]
        changes = self._undo_pending(pending)
        changes += self._links.reconcile(
            [(bridge_spec(n), n["bridge_created"]) for n in networks.values()],
            [veth_spec(networks[e["network_id"]], e) for e in endpoints],
            {e["host_veth"] for e in endpoints if e["sandbox"]},
        )
        changes += self._firewall.reconcile(
            [network_rules(n) for n in networks.values()],
            [endpoint_ports(networks[e["network_id"]], e) for e in endpoints if e["ports"]],
        )
        changes += self._segment.reconcile(list(networks.values()), pending)
        return changes

    def _undo_pending(self, pending: list[dict]) -> list[str]:
        """Give back the bridges of networks whose create a crash cut short
        (their rules go with the firewall's reconcile, which wants none of
        them), and forget those networks. One that fails stays recorded, to
        be tried again at the next start."""
        changes, undone = [], []
        for network in pending:
            what = f"undo network {network['id']}, created only in part, on bridge {network['bridge']}"
            try:
                self._links.release_bridge(bridge_spec(network), network["bridge_created"],
                                           network["adopted"], untagged=True)
            except Exception as exc:  # start-up must get through the other objects
                changes.append(f"failed to {what}: {exc}")
            else:
                changes.append(what)
                undone.append(network["id"])
        if undone:
            with self._tx() as tx:
                for network_id in undone:
                    tx.delete_network(network_id)
        return changes

    # -- lookups -------------------------------------------------------------------
    @staticmethod
    def _network(tx: NetworkStore, network_id: str) -> dict:
        return found(_settled(tx.get_network(network_id)), f"network {network_id} is not a Pontoon network")

    @staticmethod
    def _endpoint(tx: NetworkStore, endpoint_id: str) -> dict:
        return found(tx.get_endpoint(endpoint_id), f"endpoint {endpoint_id} is not a Pontoon endpoint")


# -- stored records -> datapath descriptions ---------------------------------------
def _settled(network: dict | None) -> dict | None:
    """A stored network, unless its create has not finished: until then it
    only reserves its names, and no other call may use it."""
    return None if network is None or network.get("pending") else network


def bridge_spec(network: dict) -> BridgeSpec:
    o = network["options"]
    gateways = [] if o["inhibit_ipv4"] or _mode(o, "ipv4") == "isolated" else \
        [d["gateway"] for d in network["ipv4"] if d["gateway"]]
    if _mode(o, "ipv6") != "isolated":  # isolated: the host cannot reach the containers
        gateways += [d["gateway"] for d in network["ipv6"] if d["gateway"]]
    return BridgeSpec(name=network["bridge"], mtu=o["mtu"], addresses=tuple(gateways))


def _gateway_for(ipam_data: list[dict], address: str) -> str | None:
    """The gateway of the subnet that holds the endpoint's address. With
    several subnets on a network, another subnet's gateway is not on the
    container's link, and dockerd fails the Join ("route for the gateway
    could not be found")."""
    if not address:
        return None
    ip = ipaddress.ip_interface(address).ip
    return next((str(ipaddress.ip_interface(d["gateway"]).ip) for d in ipam_data
                 if d["gateway"] and ip in ipaddress.ip_network(d["pool"])), None)


def _mode(o: dict, family: str) -> str:
    # Networks stored before gateway modes existed have no key: "nat".
    return o.get(f"gateway_mode_{family}", "nat")


def veth_spec(network: dict, endpoint: dict) -> VethSpec:
    return VethSpec(host_name=endpoint["host_veth"], peer_name=endpoint["peer_veth"],
                    bridge=network["bridge"], mac=endpoint["mac"], mtu=network["options"]["mtu"])


def network_rules(network: dict) -> NetworkRules:
    o = network["options"]
    return NetworkRules(
        network_id=network["id"], bridge=network["bridge"],
        subnets_v4=tuple(d["pool"] for d in network["ipv4"]),
        subnets_v6=tuple(d["pool"] for d in network["ipv6"]),
        internal=o["internal"], icc=o["icc"], masquerade=o["masquerade"], tag=network["tag"],
        gateway_mode_v4=_mode(o, "ipv4"), gateway_mode_v6=_mode(o, "ipv6"),
        trusted_interfaces=tuple(o.get("trusted_interfaces", ())),
        host_ipv4=o.get("host_ipv4", ""), host_ipv6=o.get("host_ipv6", ""), ipv4=o.get("ipv4", True),
    )


def endpoint_ports(network: dict, endpoint: dict) -> EndpointPorts:
    o = network["options"]
    return EndpointPorts(endpoint_id=endpoint["id"], network_id=network["id"],
                         bridge=network["bridge"], bindings=tuple(_bindings(endpoint)), tag=endpoint["tag"],
                         routed=tuple(f for f in ("ipv4", "ipv6") if _mode(o, f) == "routed"))


def _bindings(endpoint: dict) -> list[PortBinding]:
    return [PortBinding(**b) for b in endpoint["ports"]]


def _endpoint_reply(endpoint: dict) -> dict:
    # dockerd fails the endpoint if we echo a field it filled itself.
    return {} if endpoint["mac_given"] else {"Interface": {"MacAddress": endpoint["mac"]}}


def _canonical(body: dict, *keys: str) -> str:
    """The parts of a request that define the object, to tell a retry from a clash."""
    return json.dumps({k: body.get(k) for k in keys}, sort_keys=True)


def _ipam_data(field: str, data, version: int) -> list[dict]:
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
        out.append({"pool": str(pool), "gateway": gateway, "aux": canonical_aux})
    return out


def _check_in_pools(field: str, iface, pools: list[dict]) -> None:
    if iface is None:
        return
    if not any(iface.ip in ipaddress.ip_network(p["pool"]) for p in pools):
        subnets = ", ".join(p["pool"] for p in pools) or "none"
        raise BadRequest(f'{field} "{iface}" is not in the network\'s subnets ({subnets})')


def _check_unused(tx: NetworkStore, network: dict, addresses: list) -> None:
    """dockerd's IPAM never hands out an address twice, but a request that
    reuses one (a gateway, another endpoint's) would break both holders,
    and their MACs, derived from the address, would clash as well."""
    gateways = {ipaddress.ip_interface(d["gateway"]).ip for d in network["ipv4"] + network["ipv6"] if d["gateway"]}
    for ip in sorted((a.ip for a in addresses), key=str):
        if ip in gateways:
            raise Conflict(f"address {ip} is the gateway of network {network['id']}")
        holder = tx.address_holder(network["id"], str(ip))
        if holder is not None:
            raise Conflict(f"address {ip} is already used by endpoint {holder}")


def _name_given(tx: NetworkStore, network: dict, addresses: list) -> str | None:
    """The container name dockerd 29 gave with one of the endpoint's
    addresses at RequestAddress (Pontoon's IPAM keeps it; another IPAM
    driver's addresses have none)."""
    request = json.loads(network.get("request") or "{}")
    for address in addresses:
        data = request.get("IPv4Data" if address.version == 4 else "IPv6Data") or []
        for d in data:
            if d.get("Pool") and address.ip in ipaddress.ip_network(d["Pool"], strict=False):
                name = tx.address_name(d.get("AddressSpace") or "LocalDefault", str(address.ip))
                if name:
                    return name
    return None


def _already(existing: dict | None, request: str, what: str) -> bool:
    """Whether ``existing`` is the result of this very request (a retry);
    a different request for the same object is a conflict."""
    if existing is None:
        return False
    if existing["request"] != request:
        raise Conflict(f"{what} already exists with different settings")
    return True


def _plan_holds(tx: NetworkStore, plan: dict, chosen: str | None) -> bool:
    """Whether ``plan`` (``_plan_network``) is still free at the commit: the
    store-only half of its checks. A bridge the user chose that another
    network took meanwhile is refused, as it would have been before; a tag
    taken meanwhile means planning again. (A link appearing under a default
    name meanwhile is as unlikely as one appearing after the commit, which
    the bridge's create finds.)"""
    if chosen:
        _check_bridge_free(tx, chosen)
    return tx.network_by_tag(plan["tag"]) is None and (chosen or tx.network_by_bridge(plan["bridge"]) is None)


def _check_bridge_free(tx: NetworkStore, bridge: str) -> None:
    holder = tx.network_by_bridge(bridge)
    if holder is not None:
        raise Conflict(f'bridge "{bridge}" already serves network {holder["id"]}')


def _programmed(endpoint: dict, request: dict, exposed: list) -> bool:
    """Whether ProgramExternalConnectivity would change nothing."""
    if endpoint["ports"]:
        return endpoint.get("portmap_request") == request
    return not request["portmap"] and exposed in ([], endpoint["exposed"])


def _published(endpoint: dict | None) -> bool:
    return endpoint is not None and bool(endpoint["ports"])


def _generation(endpoint: dict) -> int:
    return endpoint.get("port_generation", 0)


def _keys(endpoint: dict) -> list[Key]:
    return [Key(b["proto"], b["host_ip"], b["host_port"]) for b in endpoint["ports"]]


def methods(driver: NetworkDriver) -> dict:
    """The NetworkDriver protocol: path -> callable(body) -> reply body."""
    return {
        "NetworkDriver.GetCapabilities": driver.get_capabilities,
        "NetworkDriver.GwAllocCheck": driver.gw_alloc_check,
        "NetworkDriver.CreateNetwork": driver.create_network,
        "NetworkDriver.DeleteNetwork": driver.delete_network,
        "NetworkDriver.CreateEndpoint": driver.create_endpoint,
        "NetworkDriver.EndpointOperInfo": driver.endpoint_oper_info,
        "NetworkDriver.DeleteEndpoint": driver.delete_endpoint,
        "NetworkDriver.Join": driver.join,
        "NetworkDriver.Leave": driver.leave,
        "NetworkDriver.ProgramExternalConnectivity": driver.program_external_connectivity,
        "NetworkDriver.RevokeExternalConnectivity": driver.revoke_external_connectivity,
        "NetworkDriver.DiscoverNew": driver.nothing_to_do,
        "NetworkDriver.DiscoverDelete": driver.nothing_to_do,
        "NetworkDriver.AllocateNetwork": driver.nothing_to_do,
        "NetworkDriver.FreeNetwork": driver.nothing_to_do,
    }
