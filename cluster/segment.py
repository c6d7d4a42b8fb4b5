"""A cluster network's segment: agreed options, VNI, VXLAN, endpoint records, peers.

``ClusterSegment`` is the ``handlers.segment.Segment`` of cluster mode.
A cluster network is named by its first pool (``keys.pool_name``): every
host's dockerd makes its own network ID for it, but all hand in the pool.

- prepare: the first host to create the network stores the options that
  must agree (``AGREED``) and a VNI, both in one create-if-absent
  transaction; a later host with different values gets a 409 naming the
  option and the value the cluster holds. An MTU left unset takes the
  cluster's, or else the underlay's MTU minus the VXLAN overhead.
- attach / detach: the VXLAN device on the bridge, and the watch of the
  network's endpoint records, which exists only while the network exists
  on this host (nothing cluster-wide is watched).
- publish / unpublish: this host's endpoint records, on the host's lease,
  so they vanish from the others' datapath when this host dies.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import threading

from spec.errors import Conflict

from . import keys
from .etcd import KeyValue, Watch, absent, delete_op, put_op
from .host import ClusterHost

log = logging.getLogger("pontoon.cluster")

# Options every host of a network must share, as (stored option, what the user sets).
AGREED = {
    "mtu": "com.docker.network.driver.mtu",
    "icc": "com.docker.network.bridge.enable_icc",
    "masquerade": "com.docker.network.bridge.enable_ip_masquerade",
    "internal": "--internal",
    "ipv6": "--ipv6",
    "inhibit_ipv4": "com.docker.network.bridge.inhibit_ipv4",
}
VNI_FIRST, VNI_LAST = 4096, (1 << 24) - 1  # below 4096: left to hand-made VXLANs


def cluster_name(network: dict) -> str:
    """The pool naming ``network`` in the cluster: its first IPv4 pool (IPv6
    when it has none)."""
    return pool_names(network)[0]


def pool_names(network: dict) -> list[str]:
    """Every pool of the stored ``network`` as the cluster names it (IPv4
    first), each in the address space dockerd's request gave."""
    request = json.loads(network["request"])
    data = (request.get("IPv4Data") or []) + (request.get("IPv6Data") or [])
    pools = network["ipv4"] + network["ipv6"]
    return [keys.pool_name(d.get("AddressSpace") or "LocalDefault", p["pool"]) for d, p in zip(data, pools)]


class ClusterSegment:
    connectivity = "global"

    def __init__(self, host: ClusterHost, overlay, dp):
        """``overlay`` is a datapath.overlay.Overlay; ``dp`` gives VxlanSpec,
        Peer, default_mtu and vxlan_name (datapath.overlay and names)."""
        self.host = host
        self.overlay = overlay
        self.dp = dp
        self._watches: dict[str, PeerWatch] = {}  # network ID -> its watch
        self._lock = threading.Lock()

    @property
    def _etcd(self):
        return self.host.etcd

    # -- networks ---------------------------------------------------------------
    def prepare(self, network: dict) -> dict:
        if not network["ipv4"] and not network["ipv6"]:
            raise Conflict(f"network {network['id']} has no pool: a cluster network is named by its pool")
        name = cluster_name(network)
        self.host.live()
        options = network["options"]
        while True:
            held = self._etcd.get(keys.key("nets", name))
            if held is not None:
                record = json.loads(held.value)
                self._check_agreement(name, options, record["options"])
                options["mtu"] = record["options"]["mtu"]
                return {"cluster": {"pool": name, "vni": record["vni"]}}
            if options["mtu"] is None:
                options["mtu"] = self.dp.default_mtu(self.host.advertise)  # the underlay's less VXLAN's
            agreed = {k: options[k] for k in AGREED}
            for vni in range(self._vni_start(name), VNI_LAST + 1):
                record = json.dumps({"vni": vni, "options": agreed}, sort_keys=True)
                reply = self._etcd.txn([absent(keys.key("nets", name)), absent(keys.key("vnis", vni))],
                                       [put_op(keys.key("nets", name), record), put_op(keys.key("vnis", vni), name)])
                if reply.get("succeeded"):
                    return {"cluster": {"pool": name, "vni": vni}}
                if self._etcd.get(keys.key("nets", name)) is not None:
                    break  # another host created the network: agree with it
            else:
                raise Conflict("no free VNI left in the cluster")

    def _vni_start(self, name: str) -> int:
        """Hosts creating different networks at once start their search at
        different VNIs, rather than all racing for the lowest."""
        return VNI_FIRST + sum(name.encode()) % 1024

    @staticmethod
    def _check_agreement(name: str, mine: dict, theirs: dict) -> None:
        for key, label in AGREED.items():
            if key == "mtu" and mine["mtu"] is None:
                continue  # unset: this host takes the cluster's
            if mine.get(key) != theirs.get(key):
                space, cidr = keys.cidr_of(name)
                raise Conflict(f"option {label}={_show(mine.get(key))} disagrees with cluster network {cidr} "
                               f"({space}), which holds {label}={_show(theirs.get(key))}")

    def spec(self, network: dict):
        o = network["options"]
        # By the stored tag, like the bridge and chains: two network IDs
        # sharing their first 12 characters get two devices.
        return self.dp.VxlanSpec(name=self.dp.vxlan_name(network["tag"]), vni=network["cluster"]["vni"],
                                  local=self.host.advertise, bridge=network["bridge"], mtu=o["mtu"])

    def attach(self, network: dict) -> None:
        self.overlay.create(self.spec(network))
        self._watch(network)

    def detach(self, network: dict) -> None:
        with self._lock:
            watch = self._watches.pop(network["id"], None)
        if watch is not None:
            watch.stop()
        prefix = keys.prefix("endpoints", network["cluster"]["pool"]) + self.host.host_id + "/"
        self.host.tolerate(f"removing this host's endpoint records of network {network['id']}",
                           lambda: self._etcd.txn([], [delete_op(prefix, prefix=True)]))
        self.overlay.delete(self.spec(network))

    def _watch(self, network: dict) -> None:
        with self._lock:
            if network["id"] in self._watches:
                return
            watch = PeerWatch(self, network)
            self._watches[network["id"]] = watch
        watch.start()

    # -- endpoints ----------------------------------------------------------------
    def publish(self, network: dict, endpoint: dict, lease: int = 0) -> None:
        lease = lease or self.host.live()
        record = {"host": self.host.host_id, "vtep": self.host.advertise, "mac": endpoint["mac"],
                  "addresses": [str(ipaddress.ip_interface(a).ip)
                                for a in (endpoint["address"], endpoint["address_v6"]) if a]}
        self._etcd.put(self._endpoint_key(network, endpoint), json.dumps(record, sort_keys=True), lease)

    def unpublish(self, network: dict, endpoint: dict) -> None:
        key = self._endpoint_key(network, endpoint)
        self.host.tolerate(f"unpublishing endpoint {endpoint['id']}", lambda: self._etcd.delete(key))

    def _endpoint_key(self, network: dict, endpoint: dict) -> str:
        return keys.prefix("endpoints", network["cluster"]["pool"]) + f"{self.host.host_id}/{endpoint['id']}"

    # -- start-up -----------------------------------------------------------------------
    def reconcile(self, networks: list[dict], cut_short: list[dict]) -> list[str]:
        """In the reconcile child: the VXLAN devices only. etcd waits for the
        worker (``resume``), which holds the lease the records ride on. A
        network whose create was cut short after its device was made loses
        it: its bridge went, and the device, named under a prefix the
        single-host reconcile leaves alone, would outlive it (untagged too:
        the crash may have come between adding the device and tagging it).
        Then every other device of ours goes: its network is in no store
        record (a crash, or a store deleted meanwhile)."""
        changes = []
        for network in cut_short:
            if "cluster" in network:
                self.overlay.delete(self.spec(network), untagged=True)
                changes.append(f"vxlan of network {network['id']}, created only in part, removed")
        wanted = set()
        for network in networks:
            if "cluster" in network:
                spec = self.spec(network)
                self.overlay.create(spec)
                wanted.add(spec.name)
                changes.append(f"vxlan of network {network['id']} in place")
        return changes + self.overlay.reconcile(wanted)

    def resume(self, networks: list[dict], endpoints: list[dict], lease: int) -> None:
        """Once the worker has its lease, with the store's cluster networks:
        publish this host's endpoints again and follow the others'."""
        by_id = {n["id"]: n for n in networks if "cluster" in n}
        for endpoint in endpoints:
            if endpoint["network_id"] in by_id:
                self.publish(by_id[endpoint["network_id"]], endpoint, lease)
        for network in by_id.values():
            self._watch(network)

    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._watches)

    def stop(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.stop()


class PeerWatch:
    """One network's remote endpoints -> the VXLAN device's peers."""

    def __init__(self, segment: ClusterSegment, network: dict):
        self._segment = segment
        self._spec = segment.spec(network)
        self._me = segment.host.host_id
        self._known: dict[str, set] = {}  # record key -> its peers
        prefix = keys.prefix("endpoints", network["cluster"]["pool"])
        self._watch = Watch(segment.host.etcd, prefix, self._sync, self._event)

    def start(self) -> None:
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()

    @property
    def resyncs(self) -> int:
        return self._watch.resyncs

    def _peers(self, kv: KeyValue) -> set:
        record = json.loads(kv.value)
        if record["host"] == self._me:
            return set()
        return {self._segment.dp.Peer(mac=record["mac"].lower(), address=a, vtep=record["vtep"])
                for a in record["addresses"]}

    def _sync(self, kvs: list[KeyValue]) -> None:
        self._known = {kv.key: self._peers(kv) for kv in kvs}
        wanted = set().union(*self._known.values()) if self._known else set()
        for change in self._segment.overlay.sync_peers(self._spec, wanted):
            log.info("peers of %s: %s", self._spec.name, change)

    def _event(self, kind: str, kv: KeyValue) -> None:
        """Only what changed: a record written again (a new lease) keeps its
        peers in place rather than dropping them for a moment."""
        old = self._known.pop(kv.key, set())
        new = set() if kind == "DELETE" else self._peers(kv)
        if new:
            self._known[kv.key] = new
        for peer in old - new:
            self._segment.overlay.remove_peer(self._spec, peer)
        for peer in new - old:
            self._segment.overlay.add_peer(self._spec, peer)


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "unset" if value is None else str(value)
