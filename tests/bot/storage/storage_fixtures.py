"""Fixtures of the storage tests, loaded with ``pytest_plugins`` (a nested conftest.py would shadow
the root ``conftest`` module that other tests import from)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.crypto import KeyRing
from bot.storage import SQLiteStorage, SQLiteURL


class FakeClock:
    """A clock that moves only when told to, one second per call by default."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A nested folder that does not exist yet: connect() must create it.
    return tmp_path / "data" / "nested" / "bot.sqlite3"


@pytest.fixture(params=["file", "memory"])
async def storage(
    request: pytest.FixtureRequest, db_path: Path, clock: FakeClock
) -> AsyncIterator[SQLiteStorage]:
    location = SQLiteURL(db_path if request.param == "file" else None)
    async with SQLiteStorage(location, clock=clock) as opened:
        yield opened


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({1: Fernet.generate_key()})
