"""One DNS query in, one reply out: parsing, local answers, forwarding, sizes.

Everything that arrives is outside data (ARCHITECTURE 21): a datagram or a
TCP message is parsed with dnspython; whatever fails to parse gets FORMERR
when it has a header to answer to and nothing otherwise, and responses
(QR set) are never answered, so two resolvers cannot loop on each other.

- A name held by an endpoint of a network the asker is on: answered here,
  authoritatively, A and AAAA from every endpoint holding the name (any
  other type: no data). TTL ``TTL``: names change as containers come and
  go, so caches keep them briefly.
- ANY: REFUSED (RFC 8482 lets a server decline it; it is the amplification
  query of choice).
- Anything else: forwarded to the host's resolvers as asked, and their reply
  relayed with its rcode and TTLs, only its ID changed back.
- A UDP reply is at most 512 bytes without EDNS, else what the client
  offers up to ``EDNS_MAX``; a longer one is truncated with TC set, and the
  client asks again over TCP.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import random
import struct
from dataclasses import dataclass
from typing import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .table import Address

log = logging.getLogger("pontoon.names")

TTL = 5
UDP_PLAIN = 512
EDNS_MAX = 1232  # the DNS flag day 2020 size: no fragmented UDP
TCP_MAX = 65535
UPSTREAM_TIMEOUT_S = 2.0
MAX_UPSTREAMS = 3  # as resolv.conf's MAXNS

# (names the asker may see) -> addresses, None if not a name of theirs
Lookup = Callable[[str], "list[Address] | None"]


@dataclass(frozen=True)
class Forward:
    """A query to forward: what the answer must look like to the client."""
    query: dns.message.Message
    limit: int


def header_error(data: bytes, rcode: int) -> bytes | None:
    """A reply of only a header (no question) to a query that did not parse."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack("!HH", data[:4])
    if flags & dns.flags.QR:
        return None
    opcode_bits = flags & 0x7800
    return struct.pack("!HHHHHH", ident, dns.flags.QR | opcode_bits | (flags & dns.flags.RD) | rcode, 0, 0, 0, 0)


def limit_for(query: dns.message.Message, tcp: bool) -> int:
    if tcp:
        return TCP_MAX
    if query.edns < 0:
        return UDP_PLAIN
    return max(UDP_PLAIN, min(query.payload, EDNS_MAX))


def _reply(response: dns.message.Message, limit: int) -> bytes:
    return response.to_wire(max_size=limit, prefer_truncation=True)


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode, limit: int) -> bytes:
    response = dns.message.make_response(query, our_payload=EDNS_MAX)
    response.set_rcode(rcode)
    response.flags |= dns.flags.RA
    return _reply(response, limit)


def answer(data: bytes, lookup: Callable[[], Lookup], tcp: bool) -> bytes | Forward | None:
    """The reply to ``data``, a Forward, or None (nothing to send).
    ``lookup()`` gives the asker's lookup, asked only for a well-formed
    query (it may read the store)."""
    try:
        query = dns.message.from_wire(data)
    except dns.message.ShortHeader:
        return None
    except Exception:  # noqa: BLE001 - any malformed message: every parser error is FORMERR
        return header_error(data, dns.rcode.FORMERR)
    if query.flags & dns.flags.QR:
        return None
    limit = limit_for(query, tcp)
    if query.opcode() != dns.opcode.QUERY:
        return _error(query, dns.rcode.NOTIMP, limit)
    if len(query.question) != 1 or query.answer or query.authority:
        return _error(query, dns.rcode.FORMERR, limit)
    question = query.question[0]
    if question.rdtype == dns.rdatatype.ANY or question.rdclass != dns.rdataclass.IN:
        return _error(query, dns.rcode.REFUSED, limit)
    found = lookup()(question.name.to_text(omit_final_dot=True))
    if found is None:
        return Forward(query, limit)
    response = dns.message.make_response(query, our_payload=EDNS_MAX)
    response.flags |= dns.flags.AA | dns.flags.RA
    version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
    addresses = [str(a) for a in found if a.version == version]
    if addresses:
        response.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN", question.rdtype, addresses))
    return _reply(response, limit)


class Upstreams:
    """The host's resolvers: the nameserver lines of ``resolv_conf`` (read
    again when the file changes), less the addresses Pontoon answers on
    itself (a host whose resolv.conf names a gateway would loop)."""

    def __init__(self, resolv_conf: str, ours: Callable[[], set[str]], port: int = 53):
        self._path = resolv_conf
        self.port = port  # tests run their resolver elsewhere
        self._ours = ours
        self._seen: tuple[float, int] | None = None
        self._servers: list[str] = []

    def servers(self) -> list[str]:
        try:
            st = os.stat(self._path)
        except OSError:
            return []
        if self._seen != (st.st_mtime, st.st_size):
            self._servers = self._read()
            self._seen = (st.st_mtime, st.st_size)
        ours = self._ours()
        return [s for s in self._servers if s not in ours]

    def _read(self) -> list[str]:
        servers = []
        try:
            with open(self._path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 2 and fields[0] == "nameserver":
                        try:
                            servers.append(str(ipaddress.ip_address(fields[1])))
                        except ValueError:
                            continue  # a zone (fe80::1%eth0) or junk: not one we can ask
        except OSError:
            return []
        return servers[:MAX_UPSTREAMS]


def forward(job: Forward, upstreams: Upstreams) -> bytes:
    """Ask the host's resolvers in turn (UDP, then TCP if the reply was
    truncated) and relay the first reply; SERVFAIL if none answers."""
    client_id = job.query.id
    outbound = dns.message.from_wire(job.query.to_wire())  # a copy to renumber
    outbound.id = random.SystemRandom().randrange(1 << 16)
    for server in upstreams.servers():
        try:
            reply = dns.query.udp(outbound, server, port=upstreams.port, timeout=UPSTREAM_TIMEOUT_S,
                                  ignore_unexpected=True)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(outbound, server, port=upstreams.port, timeout=UPSTREAM_TIMEOUT_S)
        except (OSError, dns.exception.DNSException) as exc:
            log.debug("resolver %s did not answer: %s", server, exc)
            continue
        reply.id = client_id
        try:
            return _reply(reply, job.limit)
        except dns.exception.DNSException as exc:
            log.warning("resolver %s's reply cannot be relayed: %s", server, exc)
            continue
    return _error(job.query, dns.rcode.SERVFAIL, job.limit)
