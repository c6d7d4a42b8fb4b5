"""Hypothesis strategies for hostile plugin requests, built from spec/'s schemas.

``request(method, ids)`` walks the method's request schema: every known
field gets values of its declared type, drawn mostly from hostile pools
(bad CIDRs and mixed families, multicast MACs, host interfaces as bridge
names, out-of-range MTUs, IDs of other networks), and then a mutation
breaks the body further: a wrong type, a missing or extra field, a huge or
odd string, a body that is not an object, not JSON, or over the size limit.

Values that would be accepted are kept inside 10.199.0.0/16 and
fd00:199::/48 (no /0 pools), and the only bridge names that could be
created are the test's own, so a request the plugin accepts never puts a
route or a link on the host that anything else could trip on.
"""
from __future__ import annotations

import json
import re
import secrets

from hypothesis import strategies as st

import spec
from plugin.app import MAX_BODY

HUGE = 200_000  # characters: well past any sane value, well under MAX_BODY
ODD = ["", " ", "\x00", "\n", "../../etc/passwd", "%s%n%x", "ünïcødé", "\u202e", "\ud800", "a" * 300,
       "' OR 1=1 --", "${jndi:x}", "null", "[]", "{}", "-1", "1e309",
       # issue 11: what iptables or a log line could read as more than one value
       "a\n", "x\r\n-A INPUT -j ACCEPT", "-j", "--help", "\t", "a b", "\x1b[2J"]

V4 = ["10.199.1.0/24", "10.199.1.1/24", "10.199.1.2/24", "10.199.1.7/24", "10.199.1.0/25", "10.199.0.0/16", "10.199.2.0/24",
      "10.199.1.255/24", "10.199.1.1", "10.199.1.0/33", "10.199.1.1/24/1", "10.199.1", "256.1.1.1/24",
      "10.199.1.0/-1", "10.199.1.0 /24", "010.199.1.0/24"]
V6 = ["fd00:199:1::/64", "fd00:199:1::1/64", "fd00:199:1::2/64", "fd00:199:1::7/64", "fd00:199::/48", "fd00:199:1::1",
      "fd00:199:1::/129", "fd00:199:1::gg/64", "fe80::1/64", "::ffff:10.199.1.1/120", "fd00:199:1::1%eth0/64",
      "fd00:199:1::%eth0/64", "fd00:199:1::2%x\n-A INPUT -j ACCEPT/64", "fd00:199:1::7%lo/64", "FD00:199:1:0::7/64",
      "fd00:199:1::/64\n"]
MACS = ["02:42:0a:c7:01:09", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "02:42:0a:c7:01", "02-42-0a-c7-01-09",
        "zz:42:0a:c7:01:09", "02:42:0a:c7:01:09:00", "0242.0ac7.0109", "02:42:0a:c7:01:09\n", "02:42:0A:C7:01:0A"]
MTUS = ["0", "67", "68", "1279", "1500", "65535", "65536", "1000000", "-1", "1e3", "abc", " 1500", 1500, True, None]
BOOLS = ["true", "false", "maybe", "1", "", 1, None, True]
# Existing or reserved names, and names the kernel or Pontoon refuses.
HOST_IFACES = ["eth0", "lo", "docker0", "docker_gwbridge", "ifb0", "sixteen-chars-xx", "x" * 40,
               "br name", "br/0", "br:0", ".", "..", "-", "ptz\u00e9", "", "-j", "-i", "--in", "ptz0\n"]
OPTION_KEYS = ["com.docker.network.bridge.name", "com.docker.network.driver.mtu",
               "com.docker.network.bridge.enable_icc", "com.docker.network.bridge.enable_ip_masquerade",
               "com.docker.network.bridge.host_binding_ipv4", "com.docker.network.bridge.inhibit_ipv4",
               "com.docker.network.container_iface_prefix", "com.docker.network.bridge.unknown"]
SPACES = ["LocalDefault", "GlobalDefault", "", "localdefault", "Other"]


def json_values(max_leaves: int = 4):
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=max_leaves)


def _strings(field: str, ids: dict) -> st.SearchStrategy:
    """Hostile and valid strings for a field, chosen by what the field holds."""
    if field in ("NetworkID", "EndpointID"):
        return st.sampled_from(ids[field]) | st.sampled_from(ODD)
    if field == "PoolID":
        return st.sampled_from(ids["PoolID"]) | st.sampled_from(ODD)
    if field in ("Pool", "SubPool", "Address", "Gateway"):
        return st.sampled_from(V4 + V6 + ODD)
    if field == "AddressIPv6":
        return st.sampled_from(V6 + V4 + ODD)
    if field == "MacAddress":
        return st.sampled_from(MACS + ODD)
    if field == "AddressSpace":
        return st.sampled_from(SPACES + ODD)
    return st.sampled_from(ODD) | st.text(max_size=30)


def _options(ids: dict) -> st.SearchStrategy:
    """The free-form Options objects: network options, port maps, IPAM options."""
    names = st.sampled_from(HOST_IFACES + ids["bridge"])
    bools = st.sampled_from(BOOLS)
    generic = st.fixed_dictionaries({}, optional={
        OPTION_KEYS[0]: names, OPTION_KEYS[1]: st.sampled_from(MTUS), OPTION_KEYS[2]: bools,
        OPTION_KEYS[3]: bools, OPTION_KEYS[4]: st.sampled_from(V4 + ODD), OPTION_KEYS[5]: bools,
        OPTION_KEYS[6]: names | st.sampled_from(["eth", "x" * 14]), OPTION_KEYS[7]: st.sampled_from(ODD)})
    port = st.fixed_dictionaries({}, optional={
        "Proto": st.sampled_from([6, 17, 132, 0, 1, -6, "tcp", None]),
        "IP": st.sampled_from(["", "10.199.1.9"] + V4 + ODD),
        "Port": st.sampled_from([80, 0, -1, 65535, 65536, "80", None]),
        "HostIP": st.sampled_from(["", "127.0.0.1", "::1", "0.0.0.0", "::", "fd00:199:1::1", "127.0.0.1/32",
                                   "::ffff:127.0.0.1", "0:0::1", "::1%lo", "fe80::1%eth0", "0::0"] + V4 + ODD),
        "HostPort": st.sampled_from([0, 1, 80, 65535, 65536, -1, "8080", None]),
        "HostPortEnd": st.sampled_from([0, 1, 80, 65535, 65536, -1, None])})
    known = st.fixed_dictionaries({}, optional={
        "com.docker.network.generic": generic | json_values(),
        "com.docker.network.internal": st.sampled_from(BOOLS),
        "com.docker.network.enable_ipv6": st.sampled_from(BOOLS),
        "com.docker.network.portmap": st.lists(port, max_size=3) | json_values(),
        "com.docker.network.endpoint.exposedports": st.lists(port, max_size=3) | json_values(),
        "com.docker.network.endpoint.macaddress": st.sampled_from(["AkIKxwEJ", "!!", ""] + ODD),
        "RequestAddressType": st.sampled_from(["com.docker.network.gateway", "", "other"]),
    })
    return known | json_values()


def from_schema(schema: dict, root: dict, ids: dict, field: str = "") -> st.SearchStrategy:
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    types = schema.get("type", "object")
    types = [types] if isinstance(types, str) else types
    return st.one_of(*(_typed(t, schema, root, ids, field) for t in types))


def _typed(kind: str, schema: dict, root: dict, ids: dict, field: str) -> st.SearchStrategy:
    if kind == "object":
        props = schema.get("properties")
        if props is None and "additionalProperties" in schema:  # AuxAddresses
            return st.dictionaries(st.text(max_size=8), from_schema(schema["additionalProperties"], root, ids, "Address"),
                                   max_size=3)
        if props is None:
            return _options(ids)
        required = schema.get("required", [])
        return st.fixed_dictionaries(
            {k: from_schema(props[k], root, ids, k) for k in required},
            optional={k: from_schema(v, root, ids, k) for k, v in props.items() if k not in required})
    if kind == "string":
        return _strings(field, ids)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), root, ids, field), max_size=3)
    return {"boolean": st.booleans(), "null": st.none(), "integer": st.integers(),
            "number": st.floats(allow_nan=False)}[kind]


def _mutate(draw, body: dict) -> bytes | dict:
    """One more way to be wrong, or none."""
    if not isinstance(body, dict):  # a free-form schema gave something else already
        return json.dumps(body).encode()
    how = draw(st.sampled_from(["none", "wrong type", "drop", "extra", "huge", "odd", "not an object",
                                "not json", "too big", "deep"]))
    keys = sorted(body)
    if how == "wrong type" and keys:
        body[draw(st.sampled_from(keys))] = draw(json_values())
    elif how == "drop" and keys:
        body.pop(draw(st.sampled_from(keys)))
    elif how == "extra":
        body[draw(st.text(min_size=1, max_size=12))] = draw(json_values())
    elif how == "huge" and keys:
        body[draw(st.sampled_from(keys))] = draw(st.sampled_from(["1", "a", "/", ":"])) * HUGE
    elif how == "odd" and keys:
        body[draw(st.sampled_from(keys))] = draw(st.sampled_from(ODD))
    elif how == "not an object":
        return json.dumps(draw(st.lists(json_values(), max_size=3) | st.text(max_size=10) | st.integers())).encode()
    elif how == "not json":
        return draw(st.sampled_from([b"{", b"\xff\xfe", b"{'a': 1}", b"nul", b"{\"NetworkID\": }", b"\x00" * 10]))
    elif how == "too big":
        return b'{"x": "' + b"a" * (MAX_BODY + 1) + b'"}'
    elif how == "deep" and keys:
        # Written as text: json.dumps would itself fail at this depth.
        levels = draw(st.sampled_from([30, 40, 900, 5000, 200_000 // 2]))
        open_, close = draw(st.sampled_from([(b"[", b"]"), (b'{"a": ', b"}")]))
        text = json.dumps({**body, draw(st.sampled_from(keys)): "\x00deep"}).encode()
        return text.replace(b'"\\u0000deep"', open_ * levels + b"1" + close * levels)
    return body


@st.composite
def request(draw, method: str, ids: dict) -> bytes:
    """A request body for ``method``: schema-shaped, hostile values, maybe mutated."""
    name = f"{method}.request"
    body = draw(from_schema(spec.schema(name), spec.schema(name), ids))
    body = _mutate(draw, body)
    return body if isinstance(body, bytes) else json.dumps(body).encode()


# Absolute paths of two or more parts, as a traceback or an OSError shows them.
PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@-]+/)+[\w.@-]+")
LEAKS = ("Traceback", 'File "', ".py", "site-packages")


def check_refusal(raw: bytes, status: int, reply: dict) -> None:
    """A refusal is a 4xx with a JSON ``Err`` that shows no traceback, no
    source file and no path the request did not hold itself."""
    assert 400 <= status < 500, (status, reply, raw[:300])
    spec.validate("Error.response", reply)
    err = reply["Err"]
    assert not any(leak in err for leak in LEAKS), err
    text = raw.decode(errors="replace")
    assert [p for p in PATH.findall(err) if p not in text] == [], err


SUBNET, SUBNET6, OTHER = "10.199.1.0/24", "fd00:199:1::/64", "10.199.2.0/24"


class Baseline:
    """One network with a joined, published endpoint, and a second network,
    as dockerd would have set them up; ``restore`` brings back whatever an
    accepted request removed (every call here is idempotent)."""

    def __init__(self, client):
        self.client = client
        self.net, self.other, self.ep = (secrets.token_hex(32) for _ in range(3))
        self.bridge = "ptz" + secrets.token_hex(4)
        self.pools = {SUBNET: "", SUBNET6: "", OTHER: ""}
        # IDs that share their first 12 characters with the baseline's own:
        # names derived from them must not reach its bridge, veths or chains.
        self.ids = {
            "NetworkID": [self.net, self.other, secrets.token_hex(32), self.net + "\n",
                          self.net[:12] + secrets.token_hex(26)],
            "EndpointID": [self.ep, secrets.token_hex(32), self.net, self.ep + "\n",
                           self.ep[:12] + secrets.token_hex(26)],
            "PoolID": ["LocalDefault/10.199.1.0/24", "LocalDefault/fd00:199:1::/64", "LocalDefault/10.199.1.0/24\n",
                       "LocalDefault/10.199.2.0/24", "LocalDefault/10.199.9.0/24", "GlobalDefault/10.199.1.0/24"],
            "bridge": [self.bridge, "ptz" + secrets.token_hex(4)],
        }

    def _ipam(self, pool: str, *addresses: str) -> None:
        v6 = ":" in pool
        self.client.call("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": pool, "V6": v6})
        for address in addresses:  # 409 when still held: fine
            self.client.call("IpamDriver.RequestAddress", {"PoolID": f"LocalDefault/{pool}", "Address": address})

    def restore(self) -> None:
        self._ipam(SUBNET, "10.199.1.1", "10.199.1.2")
        self._ipam(SUBNET6, "fd00:199:1::1", "fd00:199:1::2")
        self._ipam(OTHER, "10.199.2.1")
        ok = self.client.ok
        ok("NetworkDriver.CreateNetwork", {
            "NetworkID": self.net,
            "Options": {"com.docker.network.enable_ipv6": True,
                        "com.docker.network.generic": {"com.docker.network.bridge.name": self.bridge}},
            "IPv4Data": [{"Pool": SUBNET, "Gateway": "10.199.1.1/24"}],
            "IPv6Data": [{"Pool": SUBNET6, "Gateway": "fd00:199:1::1/64"}]})
        ok("NetworkDriver.CreateNetwork", {"NetworkID": self.other, "Options": {},
                                           "IPv4Data": [{"Pool": OTHER, "Gateway": "10.199.2.1/24"}]})
        ids = {"NetworkID": self.net, "EndpointID": self.ep}
        ok("NetworkDriver.CreateEndpoint", {**ids, "Interface": {
            "Address": "10.199.1.2/24", "AddressIPv6": "fd00:199:1::2/64", "MacAddress": ""}})
        ok("NetworkDriver.Join", {**ids, "SandboxKey": "/var/run/docker/netns/hostile"})
        ok("NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {"com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}]}})


# What a stalled or hostile client leaves on a connection and then never
# finishes: nothing, half a request line, a head without its end, a body
# shorter than announced, a chunked body without its last chunk.
HALF_REQUESTS = [
    b"",
    b"POST /Plugin.Act",
    b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: x\r\nContent-Le",
    b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"AddressSpace\":",
    b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"Add\r\n",
]
