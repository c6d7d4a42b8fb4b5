""""The internet" for the names tests: a resolver that knows one name.

    ip netns exec NS python -m tests.multihost.internet ADDRESS

answers example.test A 203.0.113.7 with TTL 1234 and NXDOMAIN for anything
else, over UDP on ADDRESS port 53, until killed."""
from __future__ import annotations

import socket
import sys

import dns.message
import dns.rcode
import dns.rrset

NAME, ADDRESS, TTL = "example.test.", "203.0.113.7", 1234


def main(listen: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - not ours to judge
            continue
        reply = dns.message.make_response(query)
        if query.question and query.question[0].name.to_text().lower() == NAME:
            reply.answer.append(dns.rrset.from_text(NAME, TTL, "IN", "A", ADDRESS))
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(reply.to_wire(), peer)


if __name__ == "__main__":
    main(sys.argv[1])
