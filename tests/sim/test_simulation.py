"""The payment federation simulation on a fixed set of seeds (more: `python -m tests.sim`)."""

from __future__ import annotations

import pytest

from tests.sim.world import simulate

SEEDS = range(1, 9)


@pytest.mark.parametrize("seed", SEEDS)
async def test_money_is_conserved_and_every_transfer_ends_once_under_faults(seed, tmp_path):
    world = await simulate(seed, tmp_path)
    # The run exercised the protocol, not only refusals.
    assert world.stats["payments"] + world.stats["direct transfers"] > 10
    assert world.stats["dropped"]
    assert world.stats["crashed before sending"]
