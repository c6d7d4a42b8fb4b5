"""The kernel side of Pontoon: bridges, veths, addresses, routes, firewall.

Imports pyroute2 (on first use, see ``datapath.netlink``) and the standard
library only; knows nothing of HTTP or of the store. Callers describe what
they want with the dataclasses in ``datapath.model`` and receive
``datapath.errors`` exceptions on failure.
"""
