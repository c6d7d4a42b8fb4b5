"""Network options: Docker's bridge option names, parsed into a typed object.

``docker network create -o k=v`` arrives as strings under
``Options["com.docker.network.generic"]``; ``--internal`` and ``--ipv6`` as
booleans at the top of ``Options``. Using Docker's own names lets a user
switch ``-d bridge`` to ``-d pontoon`` without rewriting anything. An unknown
or malformed option is refused, naming it: silently ignoring a typo would
leave the user with a network that is not what they asked for.
"""
from __future__ import annotations

from datapath.names import IFNAMSIZ, validate_ifname
from spec import values
from spec.errors import BadRequest
from spec.stored import NetworkOptions

GENERIC = "com.docker.network.generic"
INTERNAL = "com.docker.network.internal"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"
ENABLE_IPV4 = "com.docker.network.enable_ipv4"  # dockerd 28+; absent means true

BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"
ENABLE_ICC = "com.docker.network.bridge.enable_icc"
ENABLE_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
HOST_BINDING_IPV4 = "com.docker.network.bridge.host_binding_ipv4"
INHIBIT_IPV4 = "com.docker.network.bridge.inhibit_ipv4"
IFACE_PREFIX = "com.docker.network.container_iface_prefix"
GATEWAY_MODE_IPV4 = "com.docker.network.bridge.gateway_mode_ipv4"
GATEWAY_MODE_IPV6 = "com.docker.network.bridge.gateway_mode_ipv6"
TRUSTED_INTERFACES = "com.docker.network.bridge.trusted_host_interfaces"
HOST_IPV4 = "com.docker.network.host_ipv4"
HOST_IPV6 = "com.docker.network.host_ipv6"
ENCRYPTED = "pontoon.encrypted"  # a cluster network's traffic between hosts in WireGuard (cluster.segment)

GATEWAY_MODES = ("nat", "nat-unprotected", "routed", "isolated")

# dockerd appends an index of up to two digits to the container interface prefix.
IFACE_PREFIX_MAX = IFNAMSIZ - 2
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
MTU_MIN, MTU_MAX = 68, 65535
IPV6_MTU_MIN = 1280


def parse(options) -> NetworkOptions:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise BadRequest(f"Options {options!r} is not an object")
    generic = options.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise BadRequest(f"Options[{GENERIC!r}] {generic!r} is not an object")
    fields: dict = {
        "internal": _bool(INTERNAL, options.get(INTERNAL, False)),
        "ipv6": _bool(ENABLE_IPV6, options.get(ENABLE_IPV6, False)),
        "ipv4": _bool(ENABLE_IPV4, options.get(ENABLE_IPV4, True)),
    }
    for key, value in generic.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise BadRequest(f'unknown network option "{key}" (value "{value}"); Pontoon accepts: {", ".join(sorted(_PARSERS))}')
        name, parse_value = parser
        fields[name] = parse_value(key, value)
    opts = NetworkOptions(**fields)
    if opts.ipv6 and opts.mtu is not None and opts.mtu < IPV6_MTU_MIN:
        raise BadRequest(f'option {MTU}="{opts.mtu}" is below {IPV6_MTU_MIN}, the IPv6 minimum, on an --ipv6 network')
    if not opts.ipv4 and not opts.ipv6:
        raise BadRequest(f'options {ENABLE_IPV4}=false and {ENABLE_IPV6}=false leave the network no address family')
    for key, mode in ((GATEWAY_MODE_IPV4, opts.gateway_mode_ipv4), (GATEWAY_MODE_IPV6, opts.gateway_mode_ipv6)):
        # As Docker: with no way out of the subnet, a gateway would serve nothing.
        if mode == "isolated" and not opts.internal:
            raise BadRequest(f'option {key}="isolated" needs an --internal network')
    if opts.bridge_name in opts.trusted_interfaces:
        raise BadRequest(f'option {TRUSTED_INTERFACES} names the network\'s own bridge "{opts.bridge_name}"')
    return opts


def _bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLS:
        return _BOOLS[value.lower()]
    raise BadRequest(f'option {key}="{value}" is not a boolean (true or false)')


def _mtu(key: str, value) -> int:
    try:
        mtu = int(value, 10) if isinstance(value, str) else value
    except ValueError:
        mtu = None
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not MTU_MIN <= mtu <= MTU_MAX:
        raise BadRequest(f'option {key}="{value}" is not an MTU between {MTU_MIN} and {MTU_MAX}')
    return mtu


def _host_address(version: int):
    def parse_address(key: str, value) -> str:
        try:
            return values.host_address(f"option {key}", value, version)
        except BadRequest:
            raise BadRequest(f'option {key}="{value}" is not an IPv{version} address') from None
    return parse_address


_ipv4, _ipv6 = _host_address(4), _host_address(6)


def _gateway_mode(key: str, value) -> str:
    if value not in GATEWAY_MODES:
        raise BadRequest(f'option {key}="{value}" is not a gateway mode ({", ".join(GATEWAY_MODES)})')
    return value


def _interfaces(key: str, value) -> tuple[str, ...]:
    """Docker's colon-separated list; empty parts are skipped, as Docker does."""
    if not isinstance(value, str):
        raise BadRequest(f'option {key}="{value}" is not a colon-separated list of interface names')
    names = tuple(n for n in value.split(":") if n)
    for name in names:
        validate_ifname(name, f"option {key}")
    return names


def _bridge(key: str, value) -> str:
    validate_ifname(value, f"option {key}")
    return value


def _prefix(key: str, value) -> str:
    validate_ifname(value, f"option {key}")
    if len(value) > IFACE_PREFIX_MAX:
        raise BadRequest(f'option {key}="{value}" is longer than {IFACE_PREFIX_MAX} characters, '
                         "leaving no room for the index dockerd appends")
    return value


_PARSERS = {
    BRIDGE_NAME: ("bridge_name", _bridge),
    MTU: ("mtu", _mtu),
    ENABLE_ICC: ("icc", _bool),
    ENABLE_MASQUERADE: ("masquerade", _bool),
    HOST_BINDING_IPV4: ("host_binding_ipv4", _ipv4),
    INHIBIT_IPV4: ("inhibit_ipv4", _bool),
    IFACE_PREFIX: ("iface_prefix", _prefix),
    GATEWAY_MODE_IPV4: ("gateway_mode_ipv4", _gateway_mode),
    GATEWAY_MODE_IPV6: ("gateway_mode_ipv6", _gateway_mode),
    TRUSTED_INTERFACES: ("trusted_interfaces", _interfaces),
    HOST_IPV4: ("host_ipv4", _ipv4),
    HOST_IPV6: ("host_ipv6", _ipv6),
    ENCRYPTED: ("encrypted", _bool),
}
