"""Host ports held by bound sockets, on the real kernel: what Docker's port
allocator does (refuse a port a host process holds, keep anyone else from
taking one while it is published), checked with sockets of "other
processes" made here. Loopback and random high ports only."""
from __future__ import annotations

import errno
import random
import socket

import pytest

from datapath.hostports import Claim, Holder, Key, PortInUse, bind, sctp_supported

KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def free_port(proto: str = "tcp") -> int:
    """A port nothing holds on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, KINDS[proto]) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def another_process_binds(proto: str, ip: str, port: int, listen: bool = True) -> socket.socket:
    """What a host daemon does: bind (SO_REUSEADDR, as most servers set) and listen."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, KINDS[proto])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((ip, port))
        if proto == "tcp" and listen:
            s.listen(1)
    except OSError:
        s.close()
        raise
    return s


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_port_a_host_process_holds_is_refused(proto):
    port = free_port(proto)
    with another_process_binds(proto, "127.0.0.1", port):
        holder = Holder()
        with pytest.raises(PortInUse, match=f"host port {port}/{proto} on 127.0.0.1 is in use on the host"):
            holder.claim([Claim.exactly(proto, "127.0.0.1", port)])
        assert holder.held() == set()


def test_a_wildcard_port_is_refused_when_a_host_process_listens_on_one_address():
    port = free_port()
    with another_process_binds("tcp", "127.0.0.1", port):
        with pytest.raises(PortInUse):
            Holder().claim([Claim.exactly("tcp", "0.0.0.0", port)])


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_held_port_cannot_be_taken_until_it_is_released(proto):
    port = free_port(proto)
    holder = Holder()
    assert holder.claim([Claim.exactly(proto, "127.0.0.1", port)]) == [port]
    for ip in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(OSError) as exc:
            another_process_binds(proto, ip, port).close()
        assert exc.value.errno == errno.EADDRINUSE
    holder.release([Key(proto, "127.0.0.1", port)])
    another_process_binds(proto, "127.0.0.1", port).close()


def test_tcp_is_held_listening_so_a_reuseaddr_bind_cannot_share_it():
    """Two SO_REUSEADDR sockets may share a port while neither listens; the
    held socket listens, as moby's does, so the second bind fails."""
    port = free_port()
    sock = bind(Key("tcp", "127.0.0.1", port))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with pytest.raises(OSError):
            another_process_binds("tcp", "127.0.0.1", port, listen=False).close()
    finally:
        sock.close()


def test_ipv6_holds_only_the_ipv6_port():
    port = free_port()
    holder = Holder()
    try:
        holder.claim([Claim.exactly("tcp", "::1", port)])
    except PortInUse:
        pytest.skip("no IPv6 loopback here")
    another_process_binds("tcp", "127.0.0.1", port).close()  # IPv4 is not ours
    with pytest.raises(OSError):
        another_process_binds("tcp", "::1", port).close()
    holder.release(holder.held())


def test_a_range_skips_busy_and_skipped_ports_and_a_claim_is_all_or_nothing():
    base = random.randrange(10000, 19990, 10)  # below the ephemeral range (from 32768)
    holder = Holder()
    with another_process_binds("tcp", "127.0.0.1", base):
        got = holder.claim([Claim("tcp", "127.0.0.1", base, base + 3, base, frozenset({base + 1}))])
        assert got == [base + 2]
        # The second claim fails: the first one's port is let go again.
        with pytest.raises(PortInUse):
            holder.claim([Claim.exactly("udp", "127.0.0.1", base + 5), Claim.exactly("tcp", "127.0.0.1", base)])
        assert holder.held() == {Key("tcp", "127.0.0.1", base + 2)}
    holder.release(holder.held())


def test_a_spread_claim_picks_a_bindable_port():
    holder = Holder()
    port = free_port()
    with another_process_binds("tcp", "127.0.0.1", port):
        # The only candidates are a busy port and one skipped: none is left.
        with pytest.raises(PortInUse):
            holder.claim([Claim.spread("tcp", "127.0.0.1", port, port + 1, skip={port + 1})])
        [got] = holder.claim([Claim.spread("tcp", "127.0.0.1", port, port + 20)])
        assert got != port and port < got <= port + 20
    holder.release(holder.held())


def test_sync_holds_exactly_what_is_stored():
    a, b = free_port(), free_port("udp")
    holder = Holder()
    holder.claim([Claim.exactly("tcp", "127.0.0.1", a)])
    with another_process_binds("udp", "127.0.0.1", b):
        failed = holder.sync([Key("udp", "127.0.0.1", b)])
    assert [key for key, _ in failed] == [Key("udp", "127.0.0.1", b)]
    assert holder.held() == set()  # a is no longer stored: let go
    another_process_binds("tcp", "127.0.0.1", a).close()


def test_sctp_is_held_where_the_kernel_has_it():
    port = free_port()
    holder = Holder()
    holder.claim([Claim.exactly("sctp", "127.0.0.1", port)])
    if not sctp_supported():
        # Nothing to hold, and no host process can hold an SCTP port either.
        assert holder.held() == {Key("sctp", "127.0.0.1", port)}
    else:
        with pytest.raises(OSError):
            s = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP)
            try:
                s.bind(("127.0.0.1", port))
            finally:
                s.close()
    holder.release(holder.held())
