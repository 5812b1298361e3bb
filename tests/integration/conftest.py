"""Fixtures for one node's integration tests: `kith …` run in-process."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli import main
from tests.databases import DatabaseFactory


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs `kith ...` in a working directory with a test database configured."""

    cwd: Path
    database_url: str
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str, stdin: str = "", env: dict[str, str] | None = None) -> Result:
        with self.monkeypatch.context() as patch:
            patch.chdir(self.cwd)
            patch.setenv("KITH_DATABASE__URL", self.database_url)
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            patch.setattr("sys.stdin", io.StringIO(stdin))
            self.capsys.readouterr()
            code = main(list(argv))
            captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
async def cli(
    databases: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> Cli:
    monkeypatch.delenv("KITH_CONFIG", raising=False)
    return Cli(tmp_path, await databases.new("cli"), monkeypatch, capsys)
