"""Fixtures of the storage tests, loaded with ``pytest_plugins`` (a nested conftest.py would shadow
the root ``conftest`` module that other tests import from).

Every test that takes ``storage`` or ``backend`` runs on each backend: SQLite (a file, and
``:memory:``) and PostgreSQL; ``persistent_backend`` leaves out ``:memory:``, which cannot be
reopened. The PostgreSQL variants use ``TEST_DATABASE_URL`` when it is set (CI starts a server with
``.ci/postgres.sh``), else a throwaway server started once for the session (``tests/pg_server.py``)
when PostgreSQL is installed, else they are skipped. Each PostgreSQL test gets a fresh schema.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from conftest import with_search_path
from cryptography.fernet import Fernet

from bot.crypto import KeyRing
from bot.storage import (
    PostgresStorage,
    PostgresURL,
    SQLiteStorage,
    SQLiteURL,
    parse_database_url,
    postgres_migrations,
    sqlite_migrations,
)
from bot.storage.sql import Migration, SQLStorage

SQLITE_FILE = "sqlite-file"
SQLITE_MEMORY = "sqlite-memory"
POSTGRES = "postgres"
BACKENDS = (SQLITE_FILE, SQLITE_MEMORY, POSTGRES)
PERSISTENT_BACKENDS = (SQLITE_FILE, POSTGRES)
# The tables the bookkeeping of migrations may add, which Backend.tables() leaves out.
_BOOKKEEPING_TABLES = frozenset({"sqlite_sequence", "schema_version"})


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


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({1: Fernet.generate_key()})


# -- PostgreSQL -----------------------------------------------------------------------------------


@dataclass
class SchemaFactory:
    """Creates fresh schemas in the test database and drops them when the test ends."""

    server_url: str
    admin: asyncpg.Connection[asyncpg.Record]
    created: list[str]

    async def new_url(self) -> str:
        schema = f"test_{uuid.uuid4().hex}"
        await self.admin.execute(f'CREATE SCHEMA "{schema}"')
        self.created.append(schema)
        return with_search_path(self.server_url, schema)


@pytest.fixture
async def postgres_schemas(postgres_server: str) -> AsyncIterator[SchemaFactory]:
    admin = await asyncpg.connect(postgres_server)
    factory = SchemaFactory(postgres_server, admin, [])
    try:
        yield factory
    finally:
        for schema in factory.created:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
async def postgres_url(postgres_schemas: SchemaFactory) -> str:
    """A URL of a fresh, empty schema of this test's own."""
    return await postgres_schemas.new_url()


# -- backends -------------------------------------------------------------------------------------


@dataclass
class Backend:
    """One database on one backend: opens storages on it and inspects it behind their back."""

    name: str
    url: str
    clock: FakeClock

    @property
    def migrations(self) -> tuple[Migration, ...]:
        if self.name == POSTGRES:
            return postgres_migrations.MIGRATIONS
        return sqlite_migrations.MIGRATIONS

    def open(self, *, migrations: Sequence[Migration] | None = None, **options: Any) -> SQLStorage[Any]:
        """A storage on this database, not yet connected; ``options`` go to the backend's constructor."""
        options = {"clock": self.clock, "migrations": migrations or self.migrations, **options}
        location = parse_database_url(self.url)
        if isinstance(location, PostgresURL):
            return PostgresStorage(location, **options)
        return SQLiteStorage(location, **options)

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a connection of its own, outside any storage."""
        location = parse_database_url(self.url)
        if isinstance(location, PostgresURL):
            conn = await asyncpg.connect(location.dsn)
            try:
                return [tuple(row.values()) for row in await conn.fetch(sql)]
            finally:
                await conn.close()
        assert isinstance(location, SQLiteURL)
        assert location.path is not None, "a :memory: database is private"
        with closing(sqlite3.connect(location.path)) as db, db:
            return list(db.execute(sql).fetchall())

    async def exists(self) -> bool:
        """Whether the database exists yet (a SQLite file is created on first connect)."""
        location = parse_database_url(self.url)
        return not isinstance(location, SQLiteURL) or location.path is None or location.path.exists()

    async def schema_version(self) -> int:
        if not await self.exists():
            return 0
        if self.name == POSTGRES:
            if "schema_version" not in await self.tables(with_bookkeeping=True):
                return 0
            return int((await self.query("SELECT coalesce(max(version), 0) FROM schema_version"))[0][0])
        return int((await self.query("PRAGMA user_version"))[0][0])

    async def force_schema_version(self, version: int) -> None:
        if self.name == POSTGRES:
            await self.query(
                f"INSERT INTO schema_version (version, name) VALUES ({version}, 'from the future')"
            )
        else:
            await self.query(f"PRAGMA user_version = {version}")

    async def tables(self, *, with_bookkeeping: bool = False) -> set[str]:
        if not await self.exists():
            return set()
        if self.name == POSTGRES:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        names = {row[0] for row in await self.query(sql)}
        return names if with_bookkeeping else names - _BOOKKEEPING_TABLES


def _backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Backend:
    name: str = request.param
    if name == POSTGRES:
        url: str = request.getfixturevalue("postgres_url")
    elif name == SQLITE_FILE:
        url = f"sqlite:///{tmp_path / 'data' / 'nested' / 'bot.sqlite3'}"
    else:
        url = "sqlite://:memory:"
    return Backend(name, url, clock)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Backend:
    return _backend(request, tmp_path, clock)


@pytest.fixture(params=PERSISTENT_BACKENDS)
def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Backend:
    return _backend(request, tmp_path, clock)


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[SQLStorage[Any]]:
    async with backend.open() as opened:
        yield opened
