"""Run more seeds of the payment federation simulation: `python -m tests.sim --seeds 50`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.sim.world import simulate


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--seed", type=int, help="run only this seed")
    parser.add_argument("--steps", type=int, default=400, help="random steps before quiescence")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    failed = []
    for seed in seeds:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            try:
                world = asyncio.run(simulate(seed, Path(directory), args.steps, args.nodes))
            except AssertionError as exc:
                print(f"FAIL {exc}", flush=True)
                failed.append(seed)
                continue
        stats = ", ".join(f"{key} {value}" for key, value in sorted(world.stats.items()))
        print(f"seed {seed}: ok in {time.perf_counter() - started:.1f} s ({stats})", flush=True)
    if failed:
        print(f"failed seeds: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
