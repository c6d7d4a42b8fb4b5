"""Bridges, veth pairs and their addresses, through netlink.

Every multi-step change runs through ``Steps``: a failure at step k undoes
steps k-1..1 and raises ``DatapathError`` naming step k. Setup follows "add,
tolerate EEXIST, re-read and verify", so a retry after a crash adopts what the
first attempt left behind or says clearly that something else holds the name.
Teardown treats "already gone" as success.

A netlink socket is opened per operation and closed with it: nothing is held
between requests, and nothing is created when this module is imported (nor
is pyroute2 imported before the first operation; see ``datapath.netlink``).
Veth pairs, made and removed on every container start and stop, use the
link requests of ``datapath.rtnl`` instead of pyroute2 (see there why).
"""
from __future__ import annotations

import errno
import ipaddress
import logging
from functools import partial
from typing import Any

from . import names, netlink, rtnl
from .errors import DatapathError, NameConflict, NameTaken
from .model import BRIDGE_PREFIX, VETH_HOST_PREFIX, VETH_PEER_PREFIX, BridgeSpec, VethSpec
from .steps import FaultHook, Steps
from .sysctl import Sysctl

log = logging.getLogger(__name__)

MAIN_TABLE = 254
IFA_F_NODAD = 0x02
RTN_MULTICAST = 5

# Names Pontoon never takes over as a bridge, present or not: dockerd creates
# docker0 and docker_gwbridge* itself when it needs them.
_RESERVED_NAMES = ("lo", "docker0")
_RESERVED_PREFIXES = ("docker_gwbridge",)

_PONTOON_PREFIXES = (BRIDGE_PREFIX, VETH_HOST_PREFIX, VETH_PEER_PREFIX)
ALIAS_PREFIX = "pontoon:"
_LINK_LOCAL_V6 = ipaddress.IPv6Network("fe80::/10")

# The per-bridge sysctls Pontoon may change on a bridge (disable_ipv6 here,
# route_localnet in datapath.firewall): an adopted bridge's are recorded
# before and put back after.
BRIDGE_SYSCTLS = (("ipv6", "disable_ipv6"), ("ipv4", "route_localnet"))


def _add_link(steps: Steps, ipr, step: str, **attrs) -> bool:
    """Add a link as a step, tolerating one that exists (a retry after a
    crash); True when this call created it, and only then is it undone."""
    created = False

    def add():
        nonlocal created
        try:
            ipr.link("add", **attrs)
            created = True
        except netlink.NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def undo():
        if created:
            _delete_index(ipr, _get_link(ipr, attrs["ifname"])["index"])

    steps.run(step, add, undo=undo)
    return created


def _host_end(name: str, link: rtnl.Link, by_index: dict[int, rtnl.Link]) -> rtnl.Link | None:
    """The host end of the veth pair ``link`` is part of, if in this namespace."""
    if name.startswith(VETH_HOST_PREFIX):
        return link
    return by_index.get(link.link) if link.link is not None and link.link_netnsid is None else None


def _foreign(name: str, kind: str, found: str) -> bool:
    """Whether the link ``name``, about to be deleted as a ``kind``, is now
    another kind of device (``found``), which is left alone."""
    if found == kind:
        return False
    log.warning("not touching %r: it is a %s device now, not a %s", name, found or "kindless", kind)
    return True


def _tagged(name: str, kind: str, alias: str, ours: str, untagged: bool = False) -> bool:
    """Whether a device Pontoon would delete carries its tag (``ours``), or
    no tag at all when ``untagged`` (a create the store recorded and a crash
    cut short before the tag); anything else is left alone."""
    if alias == ours or (untagged and not alias):
        return True
    log.warning('not deleting %s "%s": it is not tagged as ours (alias %r)', kind, name, alias)
    return False


def _bridge_index(nl: rtnl.Rtnl, name: str) -> int:
    link = nl.get(name)
    if link is None or link.kind != "bridge":
        raise LookupError(f'bridge "{name}" does not exist')
    return link.index


def _delete_link(nl: rtnl.Rtnl, name: str) -> None:
    link = nl.get(name)
    if link is not None:
        nl.delete(link.index)


def _get_link(ipr, name: str):
    """The link message for ``name``, or None when no such device exists."""
    try:
        return ipr.link("get", ifname=name)[0]
    except netlink.NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _kind(link) -> str:
    return link.get(("linkinfo", "kind")) or ""


def _delete_index(ipr, index: int) -> None:
    """Delete a link; one that is already gone counts as deleted."""
    try:
        ipr.link("del", index=index)
    except netlink.NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise


def _default_route_ifindexes(ipr) -> set[int]:
    """Interfaces that carry a default route of the main table, both families
    and every nexthop of a multipath route."""
    found: set[int] = set()
    for route in ipr.route("dump", table=MAIN_TABLE):
        if route.get("dst_len") != 0:
            continue
        if route.get("oif"):
            found.add(route.get("oif"))
        for hop in route.get("multipath") or ():
            found.add(hop["oif"])
    return found


def _check_reserved(name: str) -> None:
    if name in _RESERVED_NAMES or name.startswith(_RESERVED_PREFIXES):
        raise NameConflict(f'bridge name "{name}" is held by a host interface')


def _check_bridge_holder(ipr, name: str, index: int, kind: str) -> None:
    """Raise NameConflict unless the device named ``name`` (``index``,
    ``kind``) is a bridge Pontoon may use."""
    if index in _default_route_ifindexes(ipr):
        raise NameConflict(f'bridge name "{name}" is held by a host interface')
    if kind != "bridge":
        suffix = f" ({kind})" if kind else ""
        raise NameConflict(f'bridge name "{name}" is held by a device that is not a bridge{suffix}')


def _add_address(ipr, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bool:
    """Add an address; False when it was already there (so not ours to remove)."""
    kwargs = {}
    if iface.version == 6:
        # Without NODAD the gateway address stays "tentative" until the bridge
        # has carrier (its first port up) and a DAD round has passed; the
        # kernel neither answers for nor sources from it meanwhile, so the
        # first container's IPv6 fails for a second or two. IPAM hands out
        # the gateway address once, so duplicate detection adds nothing.
        kwargs["flags"] = IFA_F_NODAD
    try:
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kwargs)
    except netlink.NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise
    return True


def _remove_address(ipr, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    """Remove an address; one that is already gone counts as removed."""
    try:
        ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except netlink.NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise


class Links:
    """Kernel operations on bridges and veth pairs. ``faults`` is the
    ``Steps`` test hook; production passes None."""

    def __init__(self, faults: FaultHook | None = None, owner: str = "pontoon", sysctl: Sysctl | None = None):
        self.faults = faults
        self.sysctl = sysctl or Sysctl()
        # Links we create carry the alias "pontoon:<owner>" (the instance
        # name), so reconcile never takes another Pontoon instance's links on
        # the same host for orphans of its own.
        self.owner = owner
        self.alias = ALIAS_PREFIX + owner

    # -- names ---------------------------------------------------------------

    veth_names = staticmethod(names.veth_names)
    derive_mac = staticmethod(names.derive_mac)

    def check_bridge_name(self, name: str) -> None:
        names.validate_ifname(name, "bridge name")
        _check_reserved(name)
        with rtnl.Rtnl() as nl:
            link = nl.get(name)
        if link is not None:  # only then the route dump, through pyroute2
            with netlink.connect() as ipr:
                _check_bridge_holder(ipr, name, link.index, link.kind)

    # -- queries -------------------------------------------------------------

    def link_exists(self, name: str) -> bool:
        with rtnl.Rtnl() as nl:
            return nl.get(name) is not None

    def host_routes(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Destinations of the main routing table, without default routes,
        IPv6 link-local and multicast: the subnets a new pool must not
        overlap."""
        found: dict = {}
        with netlink.connect() as ipr:
            for route in ipr.route("dump", table=MAIN_TABLE):
                if not route.get("dst_len") or route.get("type") == RTN_MULTICAST:
                    continue
                net = ipaddress.ip_network(f'{route.get("dst")}/{route.get("dst_len")}', strict=False)
                if net.is_multicast or (isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_LINK_LOCAL_V6)):
                    continue
                found[net] = None  # ordered and without duplicates (ECMP, metrics)
        return list(found)

    def _ours(self, name: str, link: rtnl.Link, by_index: dict[int, rtnl.Link]) -> bool:
        """Whether reconcile may take ``link`` for an orphan of this instance:
        a Pontoon name AND this instance's mark. The name alone is never
        enough, a user may name a link "pt-..." too."""
        if not name.startswith(_PONTOON_PREFIXES):
            return False
        if link.kind != "veth" or link.alias:
            return link.alias == self.alias
        # An untagged veth: ours only if its host end carries the MAC this
        # instance gives it (see names.host_end_mac), that is a pair left
        # by a crash between creating it and tagging it.
        return self._marked(_host_end(name, link, by_index))

    def _marked(self, host_end: rtnl.Link | None) -> bool:
        """Whether a veth host end is this instance's: its alias, or before
        the alias is on it, its MAC."""
        if host_end is None:
            return False
        if host_end.alias:
            return host_end.alias == self.alias
        return host_end.address == names.host_end_mac(host_end.name, self.owner)

    # -- bridges -------------------------------------------------------------

    def survey_bridge(self, name: str) -> dict | None:
        """What the link named ``name`` is like before Pontoon changes
        anything on it, so that a bridge it adopts is given back as found:
        its addresses, MTU, MAC, up state and the sysctls Pontoon may
        change. None when no link holds the name. Read once, when a network
        is created; the caller records it before the bridge is touched."""
        with rtnl.Rtnl() as nl:
            link = nl.get(name)
            if link is None:
                return None
            addresses = nl.addresses().get(link.index, set())
        sysctls = {}
        for family, key in BRIDGE_SYSCTLS:
            try:
                sysctls[f"{family}/{key}"] = self.sysctl.read(family, name, key)
            except OSError:  # that family is off in this kernel: nothing to change
                pass
        return {"addresses": sorted(str(a) for a in addresses), "mtu": link.mtu, "mac": link.address,
                "up": link.up, "sysctls": sysctls}

    def create_bridge(self, spec: BridgeSpec, owned: bool = True) -> bool:
        """Make the bridge of ``spec`` exist with its MTU and addresses, up.
        True when this call created it. ``owned``: the store records the
        bridge as Pontoon's to create (recorded before it was made), so one
        found under the name is what an earlier attempt left, and is tagged;
        False for a bridge adopted (see ``survey_bridge``), which is never
        tagged nor deleted."""
        name = spec.name
        names.validate_ifname(name, "bridge name")
        _check_reserved(name)  # before adding: creating docker0 would already be harm
        addresses = [ipaddress.ip_interface(a) for a in spec.addresses]
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            created = _add_link(steps, ipr, f"add bridge {name}", ifname=name, kind="bridge")
            if owned:
                steps.run(f"tag {name}", lambda: ipr.link("set", ifname=name, ifalias=self.alias))
            link = _get_link(ipr, name)
            if link is None:
                raise DatapathError(f"add bridge {name}", "the bridge vanished right after it was added")
            if not created:
                # Only a device that was there before can be a host
                # interface; the check dumps every route, which grows with
                # every network's bridge.
                _check_bridge_holder(ipr, name, link["index"], _kind(link))
            index = link["index"]

            # A Linux bridge whose address was never set explicitly takes the
            # lowest MAC among its ports, so it would change as containers come
            # and go and every neighbour would hold a stale entry for the
            # gateway. Setting the address to itself pins it (addr_assign_type
            # becomes "set"), without changing it on a bridge we adopted.
            steps.run(f"pin mac of {name}",
                      lambda: ipr.link("set", index=index, address=link.get("address")))

            if spec.mtu:
                old_mtu = link.get("mtu")
                steps.run(f"set mtu {spec.mtu} on {name}",
                          lambda: ipr.link("set", index=index, mtu=spec.mtu),
                          undo=lambda: ipr.link("set", index=index, mtu=old_mtu))

            if any(a.version == 6 for a in addresses):
                # A bridge created while the host default is disable_ipv6=1
                # inherits it and would refuse IPv6 addresses.
                old_disable = ""  # read by the step: its undo is registered only once the step succeeded

                def enable_ipv6():
                    nonlocal old_disable
                    old_disable = self.sysctl.read("ipv6", name, "disable_ipv6")
                    self.sysctl.write("ipv6", name, "disable_ipv6", "0")

                steps.run(f"enable ipv6 on {name}", enable_ipv6,
                          undo=lambda: self.sysctl.write("ipv6", name, "disable_ipv6", old_disable))

            for iface in addresses:
                self._add_address_step(steps, ipr, name, index, iface)

            was_up = bool(link.get("flags", 0) & rtnl.IFF_UP)
            steps.run(f"set {name} up", lambda: ipr.link("set", index=index, state="up"),
                      undo=lambda: was_up or ipr.link("set", index=index, state="down"))
            return created

    @staticmethod
    def _add_address_step(steps: Steps, ipr, name: str, index: int, iface) -> None:
        added = False

        def add():
            nonlocal added
            added = _add_address(ipr, index, iface)

        def remove():
            if added:  # one that was there before is not ours to remove
                _remove_address(ipr, index, iface)

        steps.run(f"add address {iface} to {name}", add, undo=remove)

    def release_bridge(self, spec: BridgeSpec, created: bool, adopted: dict | None,
                       untagged: bool = False) -> None:
        """Delete a bridge Pontoon created, or give back one it adopted as
        ``adopted`` (``survey_bridge``) found it: the addresses it had stay,
        ours go, its MTU, MAC, sysctls and down state come back. Already
        gone is success; a name now held by something other than a bridge,
        or (for ``created``) by a bridge without this instance's tag, is
        left alone. ``untagged``: also delete an untagged one, for a create
        the store recorded and a crash cut short before the tag."""
        name = spec.name
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            link = _get_link(ipr, name)
            if link is None or _foreign(name, "bridge", _kind(link)):
                return
            index = link["index"]
            if created:
                if not _tagged(name, "bridge", link.get("ifalias") or "", self.alias, untagged):
                    return
                steps.run(f"delete bridge {name}", lambda: _delete_index(ipr, index))
                return
            adopted = adopted or {}
            before = {ipaddress.ip_interface(a) for a in adopted.get("addresses", ())}
            for iface in (ipaddress.ip_interface(a) for a in spec.addresses):
                if iface not in before:
                    steps.run(f"remove address {iface} from {name}", partial(_remove_address, ipr, index, iface),
                              undo=partial(_add_address, ipr, index, iface))
            for attr, now in (("mtu", link.get("mtu")), ("address", link.get("address"))):
                was = adopted.get("mac" if attr == "address" else attr)
                if was and was != now:
                    steps.run(f"restore {attr} {was} of {name}", partial(ipr.link, "set", index=index, **{attr: was}),
                              undo=partial(ipr.link, "set", index=index, **{attr: now}))
            for key, was in adopted.get("sysctls", {}).items():
                family, _, sysctl = key.partition("/")
                now = self.sysctl.read(family, name, sysctl)
                if was != now:
                    steps.run(f"restore {key} {was} on {name}", partial(self.sysctl.write, family, name, sysctl, was),
                              undo=partial(self.sysctl.write, family, name, sysctl, now))
            if adopted.get("up") is False and link.get("flags", 0) & rtnl.IFF_UP:
                steps.run(f"set {name} down as it was", lambda: ipr.link("set", index=index, state="down"),
                          undo=lambda: ipr.link("set", index=index, state="up"))

    # -- veth pairs ----------------------------------------------------------

    def create_veth(self, spec: VethSpec, new: bool = False) -> bool:
        """Make the veth pair of ``spec``: host end enslaved to the bridge,
        hairpin on and up, peer end down in this namespace with its MAC,
        waiting for dockerd to move it into the sandbox; both ends tagged. A
        pair of this instance's under the same names (Join's, rebuilt) is
        brought into shape; one that is not ours is a NameConflict. ``new``:
        the names must be free, a link holding either is a NameTaken and is
        left as it is (CreateEndpoint then tries its next names). Returns
        whether this call made the pair."""
        host, peer = spec.host_name, spec.peer_name
        names.validate_ifname(host, "veth name")
        names.validate_ifname(peer, "veth peer name")
        host_shape: dict[str, Any] = dict(address=names.host_end_mac(host, self.owner), mtu=spec.mtu, up=True)
        with rtnl.Rtnl() as nl, Steps(self.faults) as steps:
            bridge_index = steps.run(f"find bridge {spec.bridge}", lambda: _bridge_index(nl, spec.bridge))
            created = False

            def add():
                nonlocal created
                # One RTM_NEWLINK makes the pair in its final shape (MACs,
                # MTUs, host end on the bridge and up) rather than a request
                # per attribute.
                created = nl.add_veth(host, peer, peer_address=spec.mac, master=bridge_index, **host_shape)

            # Only a pair this call added is undone: an adopted one may belong
            # to a stored endpoint (Join re-runs this on its pair), and a
            # caller that knows an adopted pair is an orphan deletes it itself.
            def delete():
                if created:
                    _delete_link(nl, host)

            steps.run(f"add veth {host} peer {peer}", add, undo=delete)
            peer_shape: dict[str, Any] = {}
            if not created:
                if new:
                    raise NameTaken(f'veth name "{host}" or "{peer}" is held by another link')
                self._check_pair(host, peer, nl.get(host), nl.get(peer))
                # A pair left by a crash, or by a concurrent request for the
                # same endpoint, may lack any of what the add would have set.
                steps.run(f"shape {host} onto {spec.bridge}",
                          lambda: nl.set(host, master=bridge_index, **host_shape))
                peer_shape = dict(address=spec.mac, mtu=spec.mtu)
            # The kernel ignores IFLA_IFALIAS in the RTM_NEWLINK that creates a
            # link, and refuses bridge-port flags there (IFLA_PROTINFO:
            # EOPNOTSUPP; IFLA_INFO_SLAVE_DATA: silently dropped), so the tag
            # and hairpin follow in one request on the enslaved host end.
            # Hairpin: a container reaching its own published port through
            # the host's address has its packet DNATed back to itself while it
            # is still being bridged (br_netfilter), so the bridge must be
            # allowed to send the frame out of the port it came in on.
            steps.run(f"tag {host}, hairpin on", lambda: nl.set(host, alias=self.alias, hairpin=True))
            steps.run(f"tag {peer}", lambda: nl.set(peer, alias=self.alias, **peer_shape))
        return created

    def veth_intact(self, spec: VethSpec) -> bool:
        """Whether the pair of ``spec`` is as create_veth leaves it, checked
        with three lookups instead of re-running create_veth (seven requests
        on a pair that exists): the host end a veth, up, on the bridge, its
        peer in this namespace."""
        with rtnl.Rtnl() as nl:
            host_link, peer_link = nl.get(spec.host_name), nl.get(spec.peer_name)
            if host_link is None or peer_link is None:
                return False
            try:
                self._check_pair(spec.host_name, spec.peer_name, host_link, peer_link)
                bridge_index = _bridge_index(nl, spec.bridge)
            except (NameConflict, LookupError):
                return False
            return host_link.master == bridge_index and host_link.up

    def _check_pair(self, host: str, peer: str, host_link: rtnl.Link | None, peer_link: rtnl.Link | None) -> None:
        if host_link is None:
            raise NameConflict(f'veth peer name "{peer}" is held by another device')
        if host_link.kind != "veth":
            raise NameConflict(f'veth name "{host}" is held by a {host_link.kind or "non-veth"} device')
        if not self._marked(host_link):
            raise NameConflict(f'veth name "{host}" is held by a veth that is not ours')
        # IFLA_LINK of a veth is its peer's index; with IFLA_LINK_NETNSID set
        # that index is in another namespace (the peer was moved).
        if peer_link is None or host_link.link_netnsid is not None or host_link.link != peer_link.index:
            raise NameConflict(f'veth "{host}" exists but its peer is not "{peer}" in this namespace')

    def delete_veth(self, host_name: str) -> None:
        """Delete a veth pair by its host end (the peer goes with it, in
        whatever namespace it is). Already gone is success; a link now under
        the name that is not ours is left alone."""
        with rtnl.Rtnl() as nl, Steps(self.faults) as steps:
            link = nl.get(host_name)
            if link is None or _foreign(host_name, "veth", link.kind):
                return
            if not self._marked(link):
                log.warning('not deleting veth "%s": it is not tagged as ours (alias %r)', host_name, link.alias)
                return
            steps.run(f"delete veth {host_name}", lambda: nl.delete(link.index))

    # -- reconcile -----------------------------------------------------------

    def reconcile(self, bridges: list[tuple[BridgeSpec, bool]], veths: list[VethSpec],
                  joined_hosts: set[str]) -> list[str]:
        """Make the kernel match the stored networks and endpoints, after a
        restart or a crash: delete Pontoon-named bridges and veths nobody
        owns, recreate missing bridges (and missing addresses, MTU, up state
        of present ones), recreate missing veth pairs of endpoints not joined
        to a sandbox. One object failing does not stop the others; failures
        are logged and listed as "failed to ...". Returns the changes made."""
        changes: list[str] = []

        def attempt(what: str, action) -> None:
            try:
                action()
            except Exception as exc:  # startup must get through the other objects

                log.error("reconcile: failed to %r: %r", what, exc)
                changes.append(f"failed to {what}: {exc}")
            else:
                log.info("reconcile: %r", what)
                changes.append(what)

        # One dump of links and addresses for every check below: a lookup
        # per object made a restart with 1,000 endpoints and 200 networks
        # take over 5 s (make bench), and dockerd gives a managed plugin
        # about 10 s to listen. Read without pyroute2 (see rtnl), which
        # only the repairs below import. Deleting orphans changes no link
        # the later checks look at (those are all owned).
        with rtnl.Rtnl() as nl:
            present, addresses = nl.links(), nl.addresses()

        owned_bridges = {spec.name for spec, _ in bridges}
        owned_veths = {v.host_name for v in veths} | {v.peer_name for v in veths}
        taken_along: set[int] = set()  # peers of orphan veths already deleted
        by_index = {link.index: link for link in present.values()}
        for name, link in sorted(present.items()):
            if not self._ours(name, link, by_index):
                continue
            if name.startswith(BRIDGE_PREFIX) and link.kind == "bridge" and name not in owned_bridges:
                attempt(f"delete orphan bridge {name}",
                        lambda name=name: self.release_bridge(BridgeSpec(name), created=True, adopted=None))
            elif (name.startswith((VETH_HOST_PREFIX, VETH_PEER_PREFIX)) and link.kind == "veth"
                  and name not in owned_veths and link.index not in taken_along):
                # By its host end when that is here: an untagged pair is
                # known as ours by that end alone.
                host = _host_end(name, link, by_index) or link
                attempt(f"delete orphan veth {name}", lambda host=host.name: self.delete_veth(host))
                if link.link_netnsid is None and link.link is not None:
                    taken_along.add(link.link)

        for spec, created in bridges:
            missing = self._bridge_drift(spec, present.get(spec.name), addresses)
            if missing is None:
                note = "" if created else " (it was adopted, so network delete will leave it)"
                attempt(f"recreate missing bridge {spec.name}{note}", partial(self.create_bridge, spec, owned=created))
            elif missing:
                attempt(f"restore {', '.join(missing)} on bridge {spec.name}",
                        partial(self.create_bridge, spec, owned=created))

        for veth in veths:
            if veth.host_name not in joined_hosts and veth.host_name not in present:
                attempt(f"recreate missing veth {veth.host_name} peer {veth.peer_name}", partial(self.create_veth, veth))
        return changes

    @staticmethod
    def _bridge_drift(spec: BridgeSpec, link: rtnl.Link | None, addresses: dict[int, set]) -> list[str] | None:
        """What a present bridge (``link``, from a dump) lacks compared to
        ``spec``; None when the bridge itself is missing (or its name holds
        something else, which create_bridge then reports)."""
        if link is None or link.kind != "bridge":
            return None
        present = addresses.get(link.index, set())
        lacking = [f"address {a}" for a in spec.addresses
                   if ipaddress.ip_interface(a) not in present]
        if spec.mtu and link.mtu != spec.mtu:
            lacking.append(f"mtu {spec.mtu}")
        if not link.up:
            lacking.append("up state")
        return lacking
