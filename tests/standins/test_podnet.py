"""Pods get loopback addresses that are reused once free, and report pod-network addresses."""

from __future__ import annotations

import pytest

from tests.lab.standins._podnet import PodNetwork, SlotPool


def test_slots_start_at_two_and_are_reused_lowest_first() -> None:
    pool = SlotPool()
    assert [pool.allocate() for _ in range(3)] == [2, 3, 4]
    pool.release(3)
    assert pool.allocate() == 3
    assert pool.allocate() == 5


def test_a_slot_can_be_reserved_once_and_only_in_range() -> None:
    pool = SlotPool()
    assert pool.reserve(9) is True
    assert pool.reserve(9) is False, "a taken slot is not handed out twice"
    assert pool.reserve(400) is False, "a slot outside the range is refused"
    assert pool.allocate() == 2


def test_an_exhausted_pool_says_so() -> None:
    pool = SlotPool(first=2, last=3)
    assert (pool.allocate(), pool.allocate(), pool.allocate()) == (2, 3, None)


def test_reported_and_local_addresses_map_one_to_one() -> None:
    network = PodNetwork()
    assert (network.pod_ip(7), network.local_ip(7)) == ("10.244.0.7", "127.0.1.7")
    assert network.local_for("10.244.0.7") == "127.0.1.7"


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("192.0.2.7", id="an address off the pod network"),
        pytest.param("10.244.0.1", id="the node's own slot"),
        pytest.param("10.244.0.255", id="the broadcast address"),
        pytest.param("10.244.0.7x", id="garbage after the prefix"),
        pytest.param("10.244.07.1", id="a different network sharing a textual prefix"),
    ],
)
def test_only_pod_network_addresses_map_to_loopback(address: str) -> None:
    assert PodNetwork().local_for(address) is None


def test_the_local_side_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="not in 127"):
        PodNetwork(loopback_prefix="10.1.1.")
