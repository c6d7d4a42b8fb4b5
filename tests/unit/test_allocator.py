"""The pure allocator: ranges, gaps and lazily generated default pools."""
import ipaddress
import itertools
import tracemalloc

import pytest

from ipam_driver import allocator
from ipam_driver.allocator import PoolBase

net = ipaddress.ip_network


def test_usable_range_skips_network_and_broadcast():
    assert allocator.usable_range(net("10.0.0.0/24")) == (0x0A000001, 0x0A0000FE)
    assert allocator.usable_range(net("10.0.0.0/31")) == (0x0A000000, 0x0A000001)
    lo, hi = allocator.usable_range(net("fd00::/64"))
    assert lo == int(ipaddress.ip_address("fd00::1")) and hi == int(ipaddress.ip_address("fd00::ffff:ffff:ffff:ffff"))


def test_sub_range_is_clipped_to_usable():
    assert allocator.sub_range(net("10.0.0.0/24"), net("10.0.0.128/25")) == (0x0A000080, 0x0A0000FE)


@pytest.mark.parametrize("start, taken, expect", [
    (1, [], 1), (1, [1, 2, 3], 4), (1, [2, 3], 1), (1, [1, 3], 2), (5, [5, 6, 7, 8, 9, 10], None),
])
def test_first_free(start, taken, expect):
    assert allocator.first_free(start, 10, iter(taken)) == expect


def test_first_free_reads_only_up_to_the_gap():
    consumed = []

    def taken():
        for a in itertools.count(1):
            consumed.append(a)
            yield a if a != 4 else 5

    assert allocator.first_free(1, 100, taken()) == 4
    assert len(consumed) == 4


def test_candidates_are_lazy_even_for_huge_bases():
    tracemalloc.start()
    gen = allocator.candidates([PoolBase.parse("fd00::/16:64")])
    first = [next(gen) for _ in range(3)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [str(n) for n in first] == ["fd00::/64", "fd00:0:0:1::/64", "fd00:0:0:2::/64"]
    assert peak < 100_000  # 2**48 candidates exist; none is materialised


@pytest.mark.parametrize("text", ["10.0.0.0/8", "10.0.0.0/8:7", "10.0.0.1/8:24", "x:24", "10.0.0.0/8:33"])
def test_pool_base_rejects(text):
    with pytest.raises(ValueError):
        PoolBase.parse(text)


def test_overlaps_ignores_other_family():
    assert allocator.overlaps(net("10.0.0.0/24"), [net("fd00::/8"), net("10.0.0.0/8")]) == net("10.0.0.0/8")
    assert allocator.overlaps(net("10.1.0.0/24"), [net("10.0.0.0/24")]) is None
