"""A query from inside a namespace, as a container's resolver would ask:

    ip netns exec NS python -m tests.multihost.dnsask SERVER NAME [TYPE]

prints {"rcode", "answers": [[address, ttl], ...], "aa"} as JSON, or
{"error": ...} if no reply came (three tries of a second)."""
from __future__ import annotations

import json
import sys

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode


def main(server: str, name: str, rdtype: str = "A") -> None:
    query = dns.message.make_query(name if name.endswith(".") else name + ".", rdtype)
    for _ in range(3):
        try:
            reply = dns.query.udp(query, server, timeout=1.0)
            break
        except dns.exception.Timeout:
            continue
    else:
        print(json.dumps({"error": "timeout"}))
        return
    answers = [[r.address, rrset.ttl] for rrset in reply.answer for r in rrset if hasattr(r, "address")]
    print(json.dumps({"rcode": dns.rcode.to_text(reply.rcode()), "answers": answers,
                      "aa": bool(reply.flags & dns.flags.AA)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
