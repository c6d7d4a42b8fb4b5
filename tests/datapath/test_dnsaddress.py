"""datapath.dnsaddress in a namespace of its own, read back with ip."""
from __future__ import annotations

import pytest

from datapath import dnsaddress

from testbed.netns import run_in_netns

from .conftest import ip, suffix

OWNER = "ptdnstest"
ADDRESS, OTHER = "169.254.53.53", "169.254.53.54"


@pytest.fixture
def ns(kernel):
    made = kernel.netns("ptd" + suffix())
    ip("-n", made, "link", "set", "lo", "up")
    return made


def settle(ns: str, address: str) -> bool:
    return run_in_netns(ns, dnsaddress.settle, address, OWNER)


def test_the_address_is_made_ours_once_and_a_new_setting_replaces_it(ns):
    assert settle(ns, ADDRESS) and settle(ns, ADDRESS)  # made, then found ours
    shown = ip("-n", ns, "-4", "-o", "addr", "show", "dev", "lo").stdout
    assert f"{ADDRESS}/32 scope host lo:{OWNER}" in shown, shown
    assert settle(ns, OTHER)
    shown = ip("-n", ns, "-4", "-o", "addr", "show", "dev", "lo").stdout
    assert ADDRESS not in shown and f"{OTHER}/32 scope host lo:{OWNER}" in shown, shown
    assert not settle(ns, "")  # turned off: ours goes
    assert "169.254" not in ip("-n", ns, "-4", "-o", "addr", "show", "dev", "lo").stdout


def test_an_address_the_host_had_is_served_and_never_removed(ns):
    ip("-n", ns, "addr", "add", f"{ADDRESS}/32", "dev", "lo")
    assert not settle(ns, ADDRESS)  # not ours
    assert not settle(ns, "")
    assert f"{ADDRESS}/32" in ip("-n", ns, "-4", "-o", "addr", "show", "dev", "lo").stdout
