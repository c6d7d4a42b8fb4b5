"""Real parts to run Pontoon against, shared by tests/ and bench/: network
namespaces and an underlay of namespace hosts, a private etcd, private
dockerds of the matrix's builds, Pontoon as a process or a managed plugin,
and a fake dockerd that speaks the plugin protocol from code.

Not part of the product: pyproject.toml's package list leaves it out, so
neither the wheel nor the managed plugin's rootfs carries it. What only tests
use (fixtures, fakes of the kernel, invariants) stays beside those tests.
"""
