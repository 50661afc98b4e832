"""The SQLite backend: one aiosqlite connection shared by every coroutine of the process.

Concurrency: aiosqlite runs statements in order on its own thread, but a transaction spans several
awaits, so statements of other coroutines could land inside it (and be rolled back with it). The
``Database`` lock therefore gives one coroutine at a time the connection, for single statements
too; the task that holds an open transaction uses it without re-locking, so repository calls inside
``transaction()`` join it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from typing import Any, Final

import aiosqlite

from bot.storage.base import ConstraintError, utcnow
from bot.storage.encrypted_column import SQLEncryptedColumn
from bot.storage.sql import (
    Clock,
    Database,
    Migration,
    Row,
    SQLStorage,
    atomic,
    latest_version,
    migration_failed,
    pending_migrations,
    schema_too_new,
)
from bot.storage.sqlite_migrations import MIGRATIONS
from bot.storage.url import SQLiteURL

DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
_NUMBERED_PARAM: Final = re.compile(r"\$(\d+)")
_WAL_RETRY_S: Final = 0.01

# Kept under its first name for the code that registers further encrypted columns.
SQLiteEncryptedColumn = SQLEncryptedColumn


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        # Fixed-width UTC text, so ORDER BY on the column is chronological.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, Enum):
        return value.value
    return value


def _params(params: Sequence[Any]) -> list[Any]:
    return [_to_db(value) for value in params]


def _sqlite_sql(sql: str) -> str:
    """``$1`` → ``?1``: SQLite's numbered placeholders bind a sequence by position, as PostgreSQL's do."""
    return _NUMBERED_PARAM.sub(r"?\1", sql)


def split_sql(script: str) -> list[str]:
    """Split a migration into statements (``execute`` runs one at a time; ``executescript`` commits)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError("a migration ends with an incomplete SQL statement")
    return statements


async def _run(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement and close its cursor; returns the number of rows it changed."""
    try:
        cursor = await conn.execute(sql, params)
    except sqlite3.IntegrityError as exc:
        raise ConstraintError(str(exc)) from exc
    try:
        return cursor.rowcount
    finally:
        await cursor.close()


async def _begin(conn: aiosqlite.Connection) -> None:
    await _run(conn, "BEGIN IMMEDIATE")


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await _run(conn, "ROLLBACK")
    except sqlite3.OperationalError as exc:
        # BEGIN failed, or a failed COMMIT already ended the transaction.
        if "no transaction is active" not in str(exc):
            raise


async def _commit(conn: aiosqlite.Connection) -> None:
    try:
        await _run(conn, "COMMIT")
    except sqlite3.Error:
        await _rollback(conn)
        raise


async def _enable_wal(conn: aiosqlite.Connection, timeout_s: float) -> None:
    """Switch to WAL, retrying while another connection holds the lock it needs.

    SQLite does not call the busy handler for this switch, so processes opening a new file at the
    same time would otherwise fail at once with "database is locked".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await _run(conn, "PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(_WAL_RETRY_S)


async def apply_migrations(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema to the newest version in ONE transaction; returns that version."""
    latest = latest_version(migrations)
    async with atomic(partial(_begin, conn), partial(_commit, conn), partial(_rollback, conn)):
        rows = list(await conn.execute_fetchall("PRAGMA user_version"))
        current = int(rows[0][0])
        if current > latest:
            raise schema_too_new(current, latest)
        for migration in pending_migrations(migrations, current):
            try:
                for statement in split_sql(migration.sql):
                    await _run(conn, statement)
            except (sqlite3.Error, ConstraintError) as exc:
                raise migration_failed(migration, current, exc) from exc
        if current != latest:
            await _run(conn, f"PRAGMA user_version = {latest}")
    return latest


class SQLiteDatabase(Database[aiosqlite.Connection]):
    def __init__(self, location: SQLiteURL, migrations: Sequence[Migration], busy_timeout_s: float) -> None:
        super().__init__()
        self._location = location
        self._migrations = migrations
        self._busy_timeout_s = busy_timeout_s
        self._conn: aiosqlite.Connection | None = None

    @property
    def is_connected(self) -> bool:
        return self._conn is not None

    async def _open(self) -> None:
        path = self._location.path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(
            ":memory:" if path is None else path, isolation_level=None, timeout=self._busy_timeout_s
        )
        try:
            conn.row_factory = sqlite3.Row
            await _run(conn, f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            await _run(conn, "PRAGMA foreign_keys = ON")
            if path is not None:
                await _enable_wal(conn, self._busy_timeout_s)
            await apply_migrations(conn, self._migrations)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise self.not_connected()
        return self._conn

    @asynccontextmanager
    async def _transaction_connection(self) -> AsyncIterator[aiosqlite.Connection]:
        yield self._require()

    async def _begin(self, conn: aiosqlite.Connection) -> None:
        await _begin(conn)

    async def _commit(self, conn: aiosqlite.Connection) -> None:
        await _commit(conn)

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        await _rollback(conn)

    async def _run_plain(self, conn: aiosqlite.Connection, sql: str) -> None:
        await _run(conn, sql)

    @asynccontextmanager
    async def _access(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._joined()
        if conn is not None:
            yield conn
            return
        async with self._lock:
            yield self._require()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._access() as conn:
            return await _run(conn, _sqlite_sql(sql), _params(params))

    async def execute_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.fetch(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._access() as conn:
            try:
                await (await conn.executemany(_sqlite_sql(sql), [_params(row) for row in rows])).close()
            except sqlite3.IntegrityError as exc:
                raise ConstraintError(str(exc)) from exc

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._access() as conn:
            try:
                rows = await conn.execute_fetchall(_sqlite_sql(sql), _params(params))
            except sqlite3.IntegrityError as exc:
                raise ConstraintError(str(exc)) from exc
        return [dict(row) for row in rows]


class SQLiteStorage(SQLStorage[SQLiteDatabase]):
    """The :class:`~bot.storage.base.Storage` implementation on one SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        location: SQLiteURL,
        *,
        clock: Clock = utcnow,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        super().__init__(SQLiteDatabase(location, migrations, busy_timeout_s), clock)
        self.location: Final = location

    def __repr__(self) -> str:
        where = ":memory:" if self.location.path is None else str(self.location.path)
        return f"SQLiteStorage({where!r})"


__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "SQLiteDatabase",
    "SQLiteEncryptedColumn",
    "SQLiteStorage",
    "apply_migrations",
    "split_sql",
]
