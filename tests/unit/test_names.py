"""Pontoon's DNS (names/): the name table, the wire handling, the sockets.

The sockets are real (127.0.0.1, a free port); "the host's resolver" is a
tiny dnspython server of the test's own, on another port."""
from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from names import server, wire
from names.table import NameTable

NET, OTHER = "LocalDefault/10.90.0.0/24", "LocalDefault/10.91.0.0/24"


# -- the table -------------------------------------------------------------------------------
def test_a_name_held_by_several_endpoints_has_all_their_addresses():
    table = NameTable()
    table.put(NET, "endpoints/p/h1/a", ["web"], ["10.90.0.5"])
    table.put(NET, "endpoints/p/h2/b", ["Web"], ["10.90.0.6", "fd00::6"])
    assert sorted(map(str, table.lookup([NET], "WEB"))) == ["10.90.0.5", "10.90.0.6", "fd00::6"]
    assert table.lookup([OTHER], "web") is None and table.lookup([NET], "db") is None
    table.remove(NET, "endpoints/p/h1/a")
    assert list(map(str, table.lookup([NET, OTHER], "web"))) == ["10.90.0.6", "fd00::6"]


def test_a_full_read_replaces_the_records_and_keeps_this_hosts_own():
    table = NameTable()
    table.put(NET, "local/e1", ["mine"], ["10.90.0.2"])
    table.put(NET, "endpoints/p/h2/x", ["gone"], ["10.90.0.3"])
    table.replace(NET, "endpoints/", {"endpoints/p/h2/y": (["new"], ["10.90.0.4"])})
    assert table.lookup([NET], "gone") is None
    assert table.lookup([NET], "mine") and table.lookup([NET], "new")
    table.drop(NET)
    assert table.lookup([NET], "mine") is None


def test_a_record_put_again_under_another_name_loses_the_old_one():
    table = NameTable()
    table.put(NET, "k", ["old"], ["10.90.0.2"])
    table.put(NET, "k", ["new"], ["10.90.0.2"])
    assert table.lookup([NET], "old") is None and table.lookup([NET], "new")


# -- the wire -------------------------------------------------------------------------------------
def names(held: dict[str, list[str]]):
    table = {k: [ipaddress.ip_address(a) for a in v] for k, v in held.items()}
    return lambda: (lambda name: table.get(name.lower()))


def ask(name, rdtype="A", **kw) -> bytes:
    return dns.message.make_query(name, rdtype, **kw).to_wire()


def test_a_and_aaaa_answered_authoritatively():
    lookup = names({"web": ["10.90.0.5", "fd00::5"]})
    reply = dns.message.from_wire(wire.answer(ask("web."), lookup, tcp=False))
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert [r.address for r in reply.answer[0]] == ["10.90.0.5"] and reply.answer[0].ttl == wire.TTL
    reply = dns.message.from_wire(wire.answer(ask("WEB.", "AAAA"), lookup, tcp=False))
    assert [r.address for r in reply.answer[0]] == ["fd00::5"]
    reply = dns.message.from_wire(wire.answer(ask("web.", "MX"), lookup, tcp=False))
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer  # no data of that type


def test_other_names_are_forwarded():
    job = wire.answer(ask("example.org."), names({}), tcp=False)
    assert isinstance(job, wire.Forward) and job.limit == 512


def test_any_is_refused():
    reply = dns.message.from_wire(wire.answer(ask("web.", "ANY"), names({"web": ["10.90.0.5"]}), tcp=False))
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


@pytest.mark.parametrize("junk", [b"", b"\x00", b"\x12\x34" + b"\x00" * 9, b"\xff" * 12 + b"\x01\x02",
                                  bytes(range(256)), b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"])
def test_malformed_queries_get_formerr_or_nothing(junk):
    reply = wire.answer(junk, names({}), tcp=False)
    if reply is not None:
        assert not isinstance(reply, wire.Forward)
        assert struct.unpack("!H", reply[2:4])[0] & 0xF == dns.rcode.FORMERR


def test_responses_are_never_answered():
    response = dns.message.make_response(dns.message.make_query("web.", "A")).to_wire()
    assert wire.answer(response, names({"web": ["10.90.0.5"]}), tcp=False) is None


def test_two_questions_formerr_and_other_opcodes_notimp():
    query = dns.message.make_query("web.", "A")
    query.question.append(dns.rrset.RRset(dns.name.from_text("db."), dns.rdataclass.IN, dns.rdatatype.A))
    reply = dns.message.from_wire(wire.answer(query.to_wire(), names({}), tcp=False))
    assert reply.rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("web.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = dns.message.from_wire(wire.answer(notify.to_wire(), names({}), tcp=False))
    assert reply.rcode() == dns.rcode.NOTIMP


def test_udp_replies_are_truncated_at_512_without_edns():
    many = {"web": [f"10.90.{i // 250}.{i % 250 + 1}" for i in range(60)]}
    plain = wire.answer(ask("web."), names(many), tcp=False)
    assert len(plain) <= 512 and dns.message.from_wire(plain).flags & dns.flags.TC
    edns = wire.answer(ask("web.", use_edns=0, payload=4096), names(many), tcp=False)
    assert 512 < len(edns) <= wire.EDNS_MAX and not dns.message.from_wire(edns).flags & dns.flags.TC
    whole = wire.answer(ask("web."), names(many), tcp=True)
    assert len(dns.message.from_wire(whole).answer[0]) == 60


# -- the sockets ------------------------------------------------------------------------------------
def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class Upstream:
    """"The internet": example.org A 203.0.113.7 TTL 1234, NXDOMAIN else;
    ``silent`` answers nothing (a resolver away)."""

    def __init__(self, silent: bool = False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self.silent:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            if query.question[0].name.to_text() == "example.org.":
                reply.answer.append(dns.rrset.from_text("example.org.", 1234, "IN", "A", "203.0.113.7"))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self):
        self.sock.close()


@pytest.fixture
def running(tmp_path):
    made = []

    def start(held: dict, silent: bool = False, workers: int = 2, in_flight: int = 4):
        upstream = Upstream(silent)
        conf = tmp_path / "resolv.conf"
        conf.write_text("# the test's\nnameserver 127.0.0.1\nnameserver fe80::1%eth0\n")
        port = free_port()
        pool = server.Pool(workers, in_flight)
        listener = server.Listener("test", ["127.0.0.1"], port, lambda source: names(held)(),
                                   wire.Upstreams(str(conf), set, upstream.port), pool)
        made.append((listener, pool, upstream))
        return port, pool

    yield start
    for listener, pool, upstream in made:
        listener.close()
        pool.stop()
        upstream.close()


def udp(port, name, rdtype="A", timeout=2.0):
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=timeout)


def asked(port, name):
    """As a stub resolver asks: again after a second without a reply (a
    datagram may be lost to a full socket buffer under a flood)."""
    for attempt in range(3):
        try:
            return udp(port, name, timeout=1.0)
        except dns.exception.Timeout:
            if attempt == 2:
                raise


def test_served_over_udp_and_tcp_and_forwarded_with_rcode_and_ttl(running):
    port, _ = running({"web": ["10.90.0.5"]})
    assert udp(port, "web.").answer[0][0].address == "10.90.0.5"
    reply = dns.query.tcp(dns.message.make_query("web.", "A"), "127.0.0.1", port=port, timeout=2)
    assert reply.answer[0][0].address == "10.90.0.5"
    out = udp(port, "example.org.")
    assert out.answer[0][0].address == "203.0.113.7" and out.answer[0].ttl == 1234
    assert udp(port, "nowhere.example.").rcode() == dns.rcode.NXDOMAIN


def test_a_resolver_away_is_servfail(running):
    port, _ = running({}, silent=True)
    started = time.monotonic()
    assert udp(port, "example.org.", timeout=10).rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - started < wire.UPSTREAM_TIMEOUT_S * 2 + 1


def closed(conn) -> bool:
    try:
        return conn.recv(10) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


def test_an_oversize_tcp_length_closes_only_that_connection(running):
    port, _ = running({"web": ["10.90.0.5"]})
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(struct.pack("!H", 65535) + b"\x00" * 100)
        assert closed(conn)  # without waiting for 64 KiB
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(struct.pack("!H", 5) + b"\x00" * 5)  # shorter than a header
        assert closed(conn)
    assert udp(port, "web.").answer[0][0].address == "10.90.0.5"


def test_a_flood_is_bounded_and_local_names_stay_answered(running):
    """Junk, well-formed queries to forward to a resolver that never
    answers (each would hold a worker for the upstream timeout), and idle
    TCP connections, all at once: the pool takes what it can and drops the
    rest; the names answered locally are answered throughout."""
    port, pool = running({"web": ["10.90.0.5"]}, silent=True, workers=2, in_flight=4)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(10)]
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Up to about 2000 a second, more than any container asks; bounded by
    # count, not time, so a busy machine makes it slower, not shorter.
    for sent in range(1, 4001):
        flood.sendto(ask(f"x{sent}.example.org.") if sent % 2 else bytes(sent % 300), ("127.0.0.1", port))
        if sent % 2 == 0:
            time.sleep(0.001)
        if sent % 500 == 0:
            assert asked(port, "web.").answer[0][0].address == "10.90.0.5"
    assert pool.dropped > 0
    assert udp(port, "web.", timeout=2).answer[0][0].address == "10.90.0.5"
    for conn in idle:
        conn.close()
    flood.close()


def test_an_endpoints_names_all_answer_and_go_together():
    table = NameTable()
    table.put(NET, "k", ["web", "www", "abcdef012345"], ["10.90.0.2"])
    table.put(NET, "j", ["db", "www"], ["10.90.0.3"])
    assert [str(a) for a in table.lookup([NET], "abcdef012345")] == ["10.90.0.2"]
    assert sorted(map(str, table.lookup([NET], "www"))) == ["10.90.0.2", "10.90.0.3"]
    table.put(NET, "k", ["site"], ["10.90.0.2"])  # renamed, its alias gone
    assert table.lookup([NET], "web") is None and [str(a) for a in table.lookup([NET], "www")] == ["10.90.0.3"]
