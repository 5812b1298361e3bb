"""What every `kith` command shares: loading the config, opening the database, speaking."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from server.config import Config, find_config_file, load_config
from server.node import open_database
from server.storage.engine import Database


class CommandError(Exception):
    """A failure to report to the operator in one line."""


def load(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Config:
    cwd = Path.cwd()
    path = find_config_file(getattr(args, "config", None), os.environ, cwd)
    return load_config(path, os.environ, overrides, cwd)


async def with_database(config: Config, work: Callable[[Database], Awaitable[int]]) -> int:
    db = await open_database(config, initialize_empty=True, progress=say)
    try:
        return await work(db)
    finally:
        await db.dispose()


def say(message: str) -> None:
    print(message, flush=True)
