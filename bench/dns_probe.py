"""The asking side of bench/names.py, run in a container's network namespace
(``nsenter --net``): one JSON line in, one JSON line out.

- {"wait": NAME, "server": S, "limit": SECONDS}: ask S for NAME every
  ``POLL_S`` until it has an A record; answers {"at": time.monotonic() then}
  (CLOCK_MONOTONIC, the same clock as the driver's), or {"at": null}.
- {"pairs": [A, B], "server": S, "count": N}: N alternating pairs of
  queries, A then B then B then A; answers each one's seconds.
- {"qps": NAME, "server": S, "seconds": T}: ask back to back for T seconds;
  answers how many were answered.
"""
from __future__ import annotations

import json
import sys
import time

import dns.exception
import dns.message
import dns.query

from .stats import alternating

POLL_S = 0.005
TIMEOUT_S = 1.0


def _ask(server: str, name: str) -> dns.message.Message | None:
    try:
        return dns.query.udp(dns.message.make_query(name, "A"), server, timeout=TIMEOUT_S)
    except (OSError, dns.exception.DNSException):
        return None


def _timed(server: str, name: str) -> float:
    began = time.perf_counter()
    reply = _ask(server, name)
    if reply is None or not reply.answer:
        raise RuntimeError(f"{server} did not answer {name}")
    return time.perf_counter() - began


def handle(job: dict) -> dict:
    server = job["server"]
    if "wait" in job:
        end = time.monotonic() + job["limit"]
        while time.monotonic() < end:
            reply = _ask(server, job["wait"])
            if reply is not None and reply.answer:
                return {"at": time.monotonic()}
            time.sleep(POLL_S)
        return {"at": None}
    if "pairs" in job:
        a, b = job["pairs"]
        return {"seconds": [[_timed(server, x), _timed(server, y)][:: 1 if x == a else -1]
                            for x, y in alternating(job["count"], a, b)]}
    end, answered = time.monotonic() + job["seconds"], 0
    while time.monotonic() < end:
        reply = _ask(server, job["qps"])
        answered += reply is not None and bool(reply.answer)
    return {"answered": answered}


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
