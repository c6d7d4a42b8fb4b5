"""Run the whole benchmark inside a network namespace of its own.

Other engineers run Pontoon instances, firewall tests and dockerds on this
machine at the same time. Pontoon's firewall chains (PONTOON-*) are shared
by every instance in a namespace, and one instance's start-up reconcile
deletes chains it does not own, so a benchmark in the host namespace fails
at random (seen: iptables-restore "RULE_APPEND failed" in PONTOON-FORWARD).
In a private namespace, our bridges, veths, routes and iptables tables are
ours alone, dockerd included; Unix sockets are files and work across it.

``nsenter --net`` rather than ``ip netns exec``: the latter also remounts
/sys in a new mount namespace, which hides the cgroup mounts and dockerd
then refuses to start ("Devices cgroup isn't mounted").
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

ENV = "PONTOON_BENCH_NETNS"


def in_private_netns() -> bool:
    return bool(os.environ.get(ENV))


def reexec_in_netns(argv: list[str], module: str = "bench") -> int:
    """Run ``python -m module argv`` in a fresh namespace, delete it after."""
    ns = "ptbench" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        env = {**os.environ, ENV: ns}
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", module,
                               *argv], env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30)
