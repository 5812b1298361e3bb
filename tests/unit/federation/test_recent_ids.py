"""The inbox's memory of activity ids it stored lately."""

from __future__ import annotations

import tracemalloc

from federation.inbox import RecentIds


def _id(n: int) -> str:
    return f"https://peer.example/users/someone/statuses/{n}/activity"


def test_an_id_is_remembered_for_at_least_one_generation_and_forgotten_after_two() -> None:
    recent = RecentIds(generation=100)
    recent.add(_id(0))
    for n in range(1, 150):
        recent.add(_id(n))
        assert _id(0) in recent
    for n in range(150, 200):
        recent.add(_id(n))
    assert _id(0) not in recent
    assert _id(199) in recent
    assert _id(10**9) not in recent


def test_memory_stays_flat_once_the_window_has_filled() -> None:
    recent = RecentIds(generation=25_000)
    tracemalloc.start()
    try:
        held = []
        for block in range(4):  # two generations a block
            for n in range(block * 50_000, (block + 1) * 50_000):
                recent.add(_id(n))
            held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert held[0] < 4 * 1024 * 1024  # a full window: about 3 MiB
    assert max(held[1:]) <= held[0] * 1.05  # and no more however many ids go through
