"""datapath.vxlanguard in a namespace of its own, read back with the nft tool."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from datapath.vxlanguard import NotOurs, VxlanGuard, table_name

from testbed.netns import run_in_netns

from .conftest import suffix

OWNER = "ptguardtest"


@pytest.fixture
def ns(kernel):
    if shutil.which("nft") is None:
        pytest.skip("needs the nft tool (apt-get install nftables)")
    return kernel.netns("ptg" + suffix())


def nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True, text=True,
                          check=True).stdout


def members(ns: str) -> str:
    return nft(ns, "list", "set", "inet", table_name(OWNER), "members4")


def test_sets_are_added_to_until_pruned_and_the_table_goes_with_remove(ns):
    guard = lambda method, *args: run_in_netns(ns, lambda: getattr(VxlanGuard(OWNER), method)(*args))  # noqa: E731
    guard("apply", {5000: {"192.0.2.11"}}, True)
    guard("apply", {5001: {"192.0.2.12"}}, False)  # start-up: what the kernel holds stays
    assert "192.0.2.11" in members(ns) and "192.0.2.12" in members(ns)
    guard("apply", {5001: {"192.0.2.12", "2001:db8::12"}}, True)
    assert "192.0.2.11" not in members(ns) and "192.0.2.12" in members(ns)
    assert "2001:db8::12" in nft(ns, "list", "set", "inet", table_name(OWNER), "members6")
    assert guard("dropped") == 0
    guard("remove")
    assert table_name(OWNER) not in nft(ns, "list", "tables")
    assert guard("dropped") is None
    guard("remove")  # idempotent


def test_a_table_of_our_name_without_our_tag_is_left_alone(ns):
    nft(ns, "add", "table", "inet", table_name(OWNER))
    nft(ns, "add", "chain", "inet", table_name(OWNER), "theirs")
    for method, args in (("apply", ({5000: {"192.0.2.11"}}, True)), ("remove", ())):
        with pytest.raises(NotOurs) as refused:
            run_in_netns(ns, lambda: getattr(VxlanGuard(OWNER), method)(*args))
        assert "without our tag" in str(refused.value)
    assert nft(ns, "list", "table", "inet", table_name(OWNER)).count("chain") == 1  # theirs only
