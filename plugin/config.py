"""Settings: command-line flag > environment (PONTOON_*) > YAML file > default."""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urlsplit

from datapath.locks import DEFAULT_TIMEOUT_S
from ipam_driver.allocator import PoolBase

# dockerd's own local defaults, so Pontoon networks look like Docker's; any
# candidate that overlaps a host route (docker0 on 172.17, say) is skipped.
DEFAULT_POOLS = ["172.17.0.0/16:16", "172.18.0.0/15:16", "172.20.0.0/14:16",
                 "172.24.0.0/13:16", "192.168.0.0/16:20"]
# A ULA /48 carved into /64s, so --ipv6 works without --subnet.
DEFAULT_POOLS_V6 = ["fd70:6f6e:746f::/48:64"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    pass


@dataclass
class Settings:
    name: str = "pontoon"
    socket_dir: str = "/run/docker/plugins"
    state_dir: str = "/var/lib/pontoon"
    config: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    workers: int = 1
    threads: int = 8
    default_pools: list[str] = field(default_factory=lambda: list(DEFAULT_POOLS))
    default_pools_v6: list[str] = field(default_factory=lambda: list(DEFAULT_POOLS_V6))
    # Where the host's /proc/sys/net is writable: the managed plugin binds
    # it elsewhere, since dockerd mounts /proc/sys read-only in plugins.
    sysctl_net_dir: str = "/proc/sys/net"
    # Seconds a request waits for the store's or the firewall's lock before
    # it is refused with a 503 (dockerd's own wait for us has no end).
    lock_timeout: float = DEFAULT_TIMEOUT_S
    # Multi-host (see cluster/mode.py): empty keeps the single-host plugin.
    etcd_endpoints: list[str] = field(default_factory=list)
    advertise_addr: str = ""  # empty: the source address of the route to the first endpoint
    host_id: str = ""  # empty: made once and kept in the state dir (cluster/identity.py)
    # PEM files for an etcd that speaks TLS: the CA its server certificate
    # is checked against (empty: the system's), and this host's client
    # certificate and key for an etcd that asks for one (--client-cert-auth).
    etcd_ca: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""
    # Seconds: this host's endpoint records outlive it by at most lease_ttl;
    # its addresses are reclaimed after it has been gone for reclaim_grace.
    lease_ttl: int = 15
    reclaim_grace: int = 600
    # Cluster mode: the resolvers Pontoon's DNS (names/) forwards to what it
    # does not answer itself, as a resolv.conf's nameserver lines.
    dns_resolv_conf: str = "/etc/resolv.conf"
    # Port of that DNS on each cluster network's gateway; 0 turns it off.
    dns_port: int = 53
    # And the one address where it answers every container of the host, the
    # same on every host (datapath/dnsaddress.py says why link-local, on lo);
    # empty: the gateways only.
    dns_address: str = "169.254.53.53"
    # Cluster mode: every cluster network this host makes is encrypted
    # (WireGuard between the hosts) unless made with pontoon.encrypted=false;
    # set it alike on every host of the cluster.
    encrypt: bool = False
    # Cluster mode: dockerd's Engine API socket, where containers' names come
    # from before dockerd 29 (names/engine.py); empty turns it off.
    docker_socket: str = "/var/run/docker.sock"

    @property
    def clustered(self) -> bool:
        return bool(self.etcd_endpoints)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, f"{self.name}.sock")

    def pools(self, v6: bool) -> list[PoolBase]:
        return [PoolBase.parse(p) for p in (self.default_pools_v6 if v6 else self.default_pools)]


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
LIST_FIELDS = ("default_pools", "default_pools_v6", "etcd_endpoints")
INT_FIELDS = ("workers", "threads", "lease_ttl", "reclaim_grace", "dns_port")
FLOAT_FIELDS = ("lock_timeout",)
BOOL_FIELDS = {"encrypt"}
BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting as a flag; unset flags stay None so lower layers show through."""
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        help_text = f"(env PONTOON_{name.upper()})"
        if name == "etcd_endpoints":
            parser.add_argument(flag, help="comma-separated etcd URLs, e.g. http://10.0.0.5:2379 " + help_text)
        elif name in LIST_FIELDS:
            parser.add_argument(flag, help="comma-separated CIDR:SIZE " + help_text)
        else:
            parser.add_argument(flag, help=help_text)


def load(flags: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    given = {k: v for k, v in vars(flags or argparse.Namespace()).items() if k in FIELDS and v is not None}
    env = {name: environ[f"PONTOON_{name.upper()}"] for name in FIELDS
           if environ.get(f"PONTOON_{name.upper()}", "") != ""}
    path = given.get("config") or env.get("config")
    from_file = _read_yaml(path) if path else {}
    merged = {**from_file, **env, **given}
    return _validate(Settings(**{k: _coerce(k, v) for k, v in merged.items()}))


def _read_yaml(path: str) -> dict:
    # Imported only when a file is given: most starts have none, and the
    # import (about 8 ms, mostly compiling one regex) delays listening.
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def _coerce(name: str, value):
    if name in LIST_FIELDS and isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if name in INT_FIELDS:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name}={value!r} is not a whole number") from None
    if name in BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        if str(value).lower() not in BOOLS:
            raise ConfigError(f"setting {name}={value!r} is not true or false")
        return BOOLS[str(value).lower()]
    if name in FLOAT_FIELDS:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name}={value!r} is not a number") from None
    return value


def _validate(s: Settings) -> Settings:
    if s.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level {s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    s.log_level = s.log_level.lower()
    if s.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format {s.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if not 0 <= s.dns_port <= 65535:
        raise ConfigError(f"dns_port={s.dns_port}: a port, or 0 for no DNS")
    _check_address("dns_address", s.dns_address, ipaddress.IPv4Address, "an IPv4 address (or empty for none)")
    if s.workers < 1 or s.threads < 1:
        raise ConfigError("workers and threads must be at least 1")
    if not 0 < s.lock_timeout < float("inf"):
        raise ConfigError(f"lock_timeout {s.lock_timeout!r} must be a number of seconds above 0")
    if not s.name or "/" in s.name:
        raise ConfigError(f"name {s.name!r} is not a valid plugin name")
    for v6 in (False, True):
        try:
            bases = s.pools(v6)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if any((b.base.version == 6) != v6 for b in bases):
            raise ConfigError(f"default_pools{'_v6' if v6 else ''} mixes address families")
    if s.clustered:
        _validate_cluster(s)
    return s


def _check_address(name: str, value: str, parse: Callable[[str], object], want: str) -> None:
    """An address setting, where one is given (empty: the default behaviour)."""
    if not value:
        return
    try:
        parse(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: {want}") from None


def _validate_cluster(s: Settings) -> None:
    for url in s.etcd_endpoints:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"etcd_endpoints: {url!r} is not an http(s)://host:port URL")
    schemes = {urlsplit(url).scheme for url in s.etcd_endpoints}
    if len(schemes) > 1:
        # One etcd cluster speaks one scheme: a mix is a typo, and failover
        # would carry the cluster's traffic in clear text to the http one.
        raise ConfigError(f"etcd_endpoints mix http:// and https://: {', '.join(s.etcd_endpoints)}")
    tls = {name: getattr(s, name) for name in ("etcd_ca", "etcd_cert", "etcd_key") if getattr(s, name)}
    if tls and schemes != {"https"}:
        raise ConfigError(f"{', '.join(sorted(tls))} given, but not every etcd endpoint is https://: "
                          f"{', '.join(s.etcd_endpoints)}")
    if bool(s.etcd_cert) != bool(s.etcd_key):
        raise ConfigError("etcd_cert and etcd_key go together: a client certificate needs its key")
    for name, path in tls.items():
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{name} {path!r} is not a readable file")
    if s.workers != 1:
        # One lease and one watch per network per host: they live in the one
        # worker (see cluster/host.py), so a second worker would be a second host.
        raise ConfigError(f"workers={s.workers}: a cluster member serves with one worker (use threads)")
    if not 2 <= s.lease_ttl <= 300:
        raise ConfigError(f"lease_ttl={s.lease_ttl}: between 2 and 300 seconds")
    if s.reclaim_grace < 3 * s.lease_ttl:
        raise ConfigError(f"reclaim_grace={s.reclaim_grace}: at least three lease TTLs ({3 * s.lease_ttl} s)")
    _check_address("advertise_addr", s.advertise_addr, ipaddress.ip_address, "an IP address")
    if s.host_id and not all(c.isalnum() or c in "-_." for c in s.host_id):
        raise ConfigError(f"host_id {s.host_id!r} may hold letters, digits, '-', '_' and '.' only")
