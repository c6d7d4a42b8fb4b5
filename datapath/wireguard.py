"""The WireGuard tunnel the encrypted cluster networks' VXLAN runs over.

One WireGuard device per host (per instance), up while the host holds an
encrypted network. Each host has a tunnel address, and an encrypted
network's VXLAN device has its own as local address and the peers'
tunnel addresses as VTEPs: everything it sends crosses the underlay inside
WireGuard. Peers are the hosts sharing an encrypted network with this one
(``cluster.segment`` says which); each peer's allowed IP is its tunnel
address alone, so a peer cannot speak for another.

- Implementation: the kernel's WireGuard where ``ip link add ... type
  wireguard`` works, else ``wireguard-go`` (userspace, a process of its own
  that outlives a restart of ours, as the kernel device would); ``wg``
  configures both. With neither there is no tunnel (``implementation``
  says None) and no encrypted network is made: nothing falls back to clear
  text.
- Key: made on this host (``wg genkey``) into the state dir, 0600 from its
  creation; only the public key leaves it (``identity``, published in
  ``hosts/<id>`` on the host's lease by cluster.mode).
- Tunnel addresses: ``TUNNEL_PREFIX`` (a ULA /64 of ours) and 64 bits of
  SHA-256 of the host ID. Host IDs are unique in the cluster (hosts/<id> is
  claimed), and two IDs give one address with odds of about n²/2^65 for n
  hosts; a peer that would take this host's address or another peer's is
  refused (``sync_peers``), never routed.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time

from . import rtnl, tool
from .errors import DatapathError

log = logging.getLogger(__name__)

PORT = 51820  # WireGuard's usual port
TUNNEL_PREFIX = ipaddress.ip_network("fd70:6f6e:746f:6f6e::/64")  # "pontoon" in a ULA
# Outer IP (20 or 40) + UDP 8 + WireGuard's data header 16 and tag 16 per packet.
OVERHEAD = {4: 60, 6: 80}
VXLAN_OVER_TUNNEL = 70  # the tunnel addresses are IPv6: 14 + 40 + 8 + 8 (datapath.overlay.OVERHEAD[6])
KEY_FILE = "wireguard.key"
NEXT_KEY_FILE = KEY_FILE + ".next"  # a new key, made by ``rotate-key``, for the running worker to take
PID_FILE = "wireguard-go.pid"
LOG_FILE = "wireguard-go.log"
# Up to its first answer: a few ms here, seconds on a loaded machine.
START_S = 15
# Each peer is sent a keepalive this often when idle, and at once when it is
# added: so a peer's new key (a rotation, datapath.wireguard.offer_key) makes
# a handshake the moment it is configured, and the rotated host's packets,
# held while its own handshakes were refused by peers that knew only the old
# key, flow then, not at its next try (5 s later). Idle, it costs a packet a
# peer every 25 s, WireGuard's usual setting behind NAT.
KEEPALIVE_S = 25


def _new_key(path: str) -> str:
    """A private key made into ``path``, 0600 from its creation;
    FileExistsError if there is one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        key = tool.run("wg", "genkey")
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def public_key(private: str) -> str:
    return tool.run("wg", "pubkey", stdin=private).strip()


def offer_key(state_dir: str) -> str:
    """``rotate-key``'s part: a new private key next to this host's, which
    the running worker takes (``Tunnel.take_next_key``); returns its
    public key. FileExistsError while an earlier one waits."""
    return public_key(_new_key(os.path.join(state_dir, NEXT_KEY_FILE)))


def withdraw_key(state_dir: str) -> bool:
    """The offered key removed if no worker took it; whether it was still there."""
    try:
        os.unlink(os.path.join(state_dir, NEXT_KEY_FILE))
    except FileNotFoundError:
        return False
    return True


def tunnel_address(host_id: str) -> str:
    suffix = int.from_bytes(hashlib.sha256(host_id.encode()).digest()[:8], "big")
    return str(TUNNEL_PREFIX[suffix])


def device_name(owner: str) -> str:
    """Per instance: wireguard-go's control socket is named for the device in
    /var/run/wireguard, which every network namespace of the machine shares."""
    return "ptwg" + hashlib.sha256(owner.encode()).hexdigest()[:8]


def device_mtu(underlay_mtu: int, advertise: str) -> int:
    """What the tunnel carries: the underlay's MTU less WireGuard's overhead."""
    return underlay_mtu - OVERHEAD[ipaddress.ip_address(advertise).version]


def implementation() -> str | None:
    """"kernel", "wireguard-go", or None: this host cannot encrypt."""
    if shutil.which("wg") is None:
        return None
    if os.path.isdir("/sys/module/wireguard"):
        return "kernel"
    # wireguard-go needs the TUN device (a managed plugin has it only if
    # config.json maps it in).
    return "wireguard-go" if shutil.which("wireguard-go") and os.path.exists("/dev/net/tun") else None


def in_force(owner: str) -> str | None:
    """The WireGuard implementation instance ``owner``'s tunnel runs on here
    ("kernel": a device of that kind; "wireguard-go": its TUN device), None
    with no tunnel: what is in force, not what this host could run
    (``implementation``), which a managed plugin's rootfs may differ on."""
    with rtnl.Rtnl() as nl:
        link = nl.get(device_name(owner))
    if link is None:
        return None
    return "kernel" if link.kind == "wireguard" else "wireguard-go"


class Tunnel:
    def __init__(self, owner: str, state_dir: str, host_id: str, port: int = PORT):
        self.name = device_name(owner)
        self.address = tunnel_address(host_id)
        self.port = port
        self._key_path = os.path.join(state_dir, KEY_FILE)
        self._pid_path = os.path.join(state_dir, PID_FILE)
        self._log_path = os.path.join(state_dir, LOG_FILE)
        self._next_path = os.path.join(state_dir, NEXT_KEY_FILE)

    @staticmethod
    def network_mtu(underlay_mtu: int, advertise: str) -> int:
        """What an encrypted network's frames may carry: the tunnel's MTU
        less VXLAN's overhead over the tunnel's IPv6."""
        return device_mtu(underlay_mtu, advertise) - VXLAN_OVER_TUNNEL

    # -- what this host can do and publishes ---------------------------------
    @staticmethod
    def implementation() -> str | None:
        return implementation()

    def identity(self) -> dict | None:
        """What the others need of this host: public key, tunnel address,
        port; None if it cannot encrypt."""
        if self.implementation() is None:
            return None
        return {"key": public_key(self._private_key()), "tunnel": self.address, "port": self.port}

    def _private_key(self) -> str:
        try:
            return _new_key(self._key_path)
        except FileExistsError:
            with open(self._key_path) as f:
                return f.read()

    def take_next_key(self) -> dict | None:
        """The key ``offer_key`` left made this host's: moved over the old
        one first (the commit point: ``withdraw_key`` removes only a key not
        taken, and a restart from here on sets the new one), then set on
        the device if it is up. The device drops its sessions with it; the
        peers handshake again once they have the new public key. Returns
        the new identity; None if no key waits."""
        try:
            os.replace(self._next_path, self._key_path)
        except FileNotFoundError:
            return None
        if self._exists():
            tool.run("wg", "set", self.name, "private-key", self._key_path)
        return self.identity()

    # -- the device --------------------------------------------------------------
    def _exists(self) -> bool:
        # Over netlink, not `ip`: asked at every start-up reconcile and peer
        # sync, encrypted network or not.
        with rtnl.Rtnl() as nl:
            return nl.get(self.name) is not None

    def up(self, underlay_mtu: int, advertise: str) -> None:
        """The device, configured and up (idempotent: a device of ours left
        by an earlier process is taken as it is, and set again)."""
        found = implementation()
        if found is None:
            raise DatapathError("WireGuard tunnel", "this host cannot encrypt: needs wg and wireguard-go "
                                                    "(or a kernel with WireGuard)")
        self._private_key()
        if not self._exists():
            self._make(found)
        tool.run("wg", "set", self.name, "private-key", self._key_path, "listen-port", str(self.port))
        tool.run("ip", "-6", "addr", "replace", f"{self.address}/{TUNNEL_PREFIX.prefixlen}", "dev", self.name, "nodad")
        tool.run("ip", "link", "set", "dev", self.name, "mtu", str(device_mtu(underlay_mtu, advertise)), "up")

    def _make(self, implementation: str) -> None:
        if implementation == "kernel":
            tool.run("ip", "link", "add", "dev", self.name, "type", "wireguard")
            return
        # A session of its own: it is the device, and lives on through a
        # restart of ours; ``down`` ends it by the PID recorded here.
        # Its output goes to a log in the state dir: why it failed to start,
        # or stopped later, is said there (and in the error below).
        with open(self._log_path, "ab") as log_file:
            proc = subprocess.Popen(["wireguard-go", "-f", self.name], stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=log_file, start_new_session=True)
        with open(self._pid_path, "w") as f:
            f.write(str(proc.pid))
        deadline = time.monotonic() + START_S
        while subprocess.run(["wg", "show", self.name], capture_output=True, timeout=tool.TIMEOUT_S).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(self._log_path, "rb") as f:
                    said = f.read()[-400:].decode(errors="replace").strip()
                raise DatapathError(f"start wireguard-go {self.name}",
                                    f"{'exited ' + str(proc.poll()) if proc.poll() is not None else 'no answer'} "
                                    f"after {START_S:g} s; {self._log_path}: {said or '(empty)'}")
            time.sleep(0.05)

    def down(self) -> None:
        """No encrypted network left: the device goes (wireguard-go with it)."""
        if self._exists():
            tool.run("ip", "link", "del", "dev", self.name)
        try:
            with open(self._pid_path) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = f.read().split(b"\0")[:3] == [b"wireguard-go", b"-f", self.name.encode()]
        except OSError:
            ours = False
        if ours:  # a PID taken since by another process is left alone
            os.kill(pid, signal.SIGTERM)
        os.unlink(self._pid_path)

    # -- peers ---------------------------------------------------------------------
    def peer_keys(self) -> set[str]:
        """The public keys of the device's peers."""
        return set(tool.run("wg", "show", self.name, "peers").split())

    def sync_peers(self, wanted: dict[str, dict], prune: bool) -> None:
        """``wanted``: tunnel address -> {key, endpoint}, for the hosts that
        share an encrypted network with this one. ``prune``: remove the
        device's other peers too (not while start-up is under way)."""
        if not self._exists():
            return
        held = self.peer_keys()
        args: list[str] = []
        keys = set()
        for address, peer in sorted(wanted.items()):
            if address == self.address or peer["key"] in keys:
                log.error("WireGuard peer %s (%s) refused: its tunnel address or key is another's", address,
                          peer["endpoint"])
                continue
            keys.add(peer["key"])
            args += ["peer", peer["key"], "endpoint", peer["endpoint"], "allowed-ips", f"{address}/128",
                     "persistent-keepalive", str(KEEPALIVE_S)]
        if prune:
            for key in held:
                if key not in keys:
                    args += ["peer", key, "remove"]
        if args:
            tool.run("wg", "set", self.name, *args)
