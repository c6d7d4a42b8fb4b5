"""pyroute2, imported when the first netlink operation runs.

Importing pyroute2 imports its whole API (IPDB, NDB, ethtool and more): about
20 MiB and 70 ms per process. gunicorn's master never needs netlink (the
start-up reconcile runs in a child, see plugin.server) and a worker needs it
only from its first request that touches bridges, addresses or routes
(CreateNetwork, DeleteNetwork, RequestPool), so neither pays before then.
"""
from __future__ import annotations


def connect():
    """A new netlink socket (pyroute2's IPRoute), for ``with connect() as ipr``."""
    from pyroute2 import IPRoute

    return IPRoute()


def __getattr__(name: str):
    # ``except netlink.NetlinkError`` looks the name up only while an
    # exception is being matched, that is after a netlink socket was opened,
    # so this costs no import of its own.
    if name == "NetlinkError":
        from pyroute2.netlink.exceptions import NetlinkError

        return NetlinkError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
