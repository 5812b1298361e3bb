"""Shared pieces of the system benchmarks: a real node on loopback, CPU pinning, bounds, stats.

A benchmark node is built the way `kith serve` builds one (config, database, app, workers)
with the real clock, SQLite in a temporary directory and private addresses allowed, so that
it can federate with helper servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from server.app import create_app
from server.appkeys import FEDERATION, URLS
from server.clock import utcnow
from server.config import Config, load_config
from server.federating import Federation
from server.node import freeze_startup_objects, open_database
from server.storage.engine import Database
from server.urls import Urls


def split_cpus() -> tuple[int | None, int | None]:
    """(server CPU, load CPU): the last two CPUs we may run on, or (None, None) with one."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[-1], allowed[-2]


def pin(cpu: int | None) -> None:
    """Run this process (and the threads it starts from now on) on one CPU only."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def free_listener() -> socket.socket:
    """A bound TCP socket on a free loopback port (listening is left to aiohttp)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    return listener


@dataclass
class BenchNode:
    """One running node: its config, database and HTTP runner."""

    config: Config
    db: Database
    runner: web.AppRunner

    @property
    def federation(self) -> Federation:
        return self.runner.app[FEDERATION]

    @property
    def urls(self) -> Urls:
        return self.runner.app[URLS]

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.db.dispose()


async def start_node(data_dir: Path, **settings: object) -> BenchNode:
    """A node on a free loopback port with SQLite in `data_dir`, serving until `stop()`."""
    listener = free_listener()
    port = listener.getsockname()[1]
    overrides: dict[str, object] = {
        "instance.domain": f"127.0.0.1:{port}",
        "instance.base_url": f"http://127.0.0.1:{port}",
        "server.port": port,
        "storage.data_dir": str(data_dir),
        "federation.allow_private_addresses": True,
    }
    overrides.update({key.replace("__", "."): value for key, value in settings.items()})
    config = load_config(None, environ={}, overrides=overrides, cwd=data_dir)
    db = await open_database(config, initialize_empty=True, clock=utcnow)
    runner = web.AppRunner(create_app(config, db, utcnow), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    freeze_startup_objects()  # as `kith serve` does
    return BenchNode(config=config, db=db, runner=runner)


def rate(operation: Callable[[], object], seconds: float, runs: int) -> float:
    """Median operations per second over `runs` timed runs of about `seconds` each."""
    batch = 1
    while True:  # size a batch that takes about the requested time
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        if time.perf_counter() - start >= seconds / 4:
            break
        batch *= 2
    batch = max(1, int(batch * seconds / max(time.perf_counter() - start, 1e-9)))
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def rsa_verify_rate(seconds: float = 0.3, runs: int = 5) -> float:
    """RSA-2048 PKCS#1 v1.5 SHA-256 verifications per second on this core (key pre-parsed)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public, data = key.public_key(), b"x" * 200
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    signature = key.sign(data, pkcs1, sha256)
    return rate(lambda: public.verify(signature, data, pkcs1, sha256), seconds, runs)


def rsa_sign_rate(seconds: float = 0.3, runs: int = 5) -> float:
    """RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on this core."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data, pkcs1, sha256 = b"x" * 200, padding.PKCS1v15(), hashes.SHA256()
    return rate(lambda: key.sign(data, pkcs1, sha256), seconds, runs)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    """ "met" or "MISSED" against a target."""
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"
