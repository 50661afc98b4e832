"""The SQLite backend: one aiosqlite connection shared by every coroutine of the process.

Concurrency: aiosqlite runs statements in order on its own thread, but a transaction spans several
awaits, so statements of other coroutines could land inside it (and be rolled back with it). An
``asyncio.Lock`` therefore gives one coroutine at a time the connection; the task that holds an open
transaction uses it without re-locking, so repository calls inside ``transaction()`` join it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, TypeVar, Unpack

import aiosqlite
from pydantic import BaseModel

from bot.crypto import is_encrypted_token
from bot.storage.base import (
    UNFINISHED_STATES,
    EncryptedColumn,
    GuildSettingAuditRecord,
    GuildSettingsRecord,
    JobChanges,
    JobRecord,
    NotFoundError,
    RowKey,
    SchemaError,
    StorageError,
    UserRecord,
    check_transition,
    utcnow,
)
from bot.storage.sqlite_migrations import MIGRATIONS, Migration
from bot.storage.url import SQLiteURL

_T = TypeVar("_T")
Clock = Callable[[], datetime]

DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
_JOB_CHANGEABLE: Final = frozenset(JobChanges.__annotations__)
_UNFINISHED_SQL: Final = ", ".join(f"'{state.value}'" for state in UNFINISHED_STATES)


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        # Fixed-width UTC text, so ORDER BY on the column is chronological.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, Enum):
        return value.value
    return value


def _row_params(record: BaseModel) -> dict[str, Any]:
    return {name: _to_db(value) for name, value in record.model_dump().items()}


def _encode_json(key: str, value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"guild setting {key!r}: the value is not JSON-serialisable") from None


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


async def _uncancellable(aw: Awaitable[_T]) -> _T:
    """Finish ``aw`` even if the caller is cancelled meanwhile, then re-raise the cancellation.

    Ending a transaction must complete before the lock is released, or the next transaction would
    start on a connection that is still inside this one.
    """
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError from (None if task.cancelled() else task.exception())
    return task.result()


async def _run(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
    """Run one statement and close its cursor; returns the number of rows it changed."""
    cursor = await conn.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        await cursor.close()


async def _rollback(conn: aiosqlite.Connection, savepoint: str | None = None) -> None:
    if savepoint is not None:
        await _run(conn, f"ROLLBACK TO {savepoint}")
        await _run(conn, f"RELEASE {savepoint}")
        return
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


async def apply_migrations(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema to the newest version in ONE transaction; returns that version."""
    latest = len(migrations)
    if [m.number for m in migrations] != list(range(1, latest + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, … without gaps")
    await _run(conn, "BEGIN IMMEDIATE")
    try:
        rows = list(await conn.execute_fetchall("PRAGMA user_version"))
        current = int(rows[0][0])
        if current > latest:
            raise SchemaError(
                f"the database schema is version {current}, newer than this bot supports ({latest}); "
                "upgrade the bot or restore a backup"
            )
        for migration in migrations[current:]:
            try:
                for statement in split_sql(migration.sql):
                    await _run(conn, statement)
            except sqlite3.Error as exc:
                raise SchemaError(
                    f"migration {migration.number:04d}_{migration.name} failed: {exc}; "
                    f"the schema stays at version {current}"
                ) from exc
        if current != latest:
            await _run(conn, f"PRAGMA user_version = {latest}")
    except BaseException:
        await _uncancellable(_rollback(conn))
        raise
    await _uncancellable(_commit(conn))
    return latest


class _Database:
    """The connection, its lock and the transaction bookkeeping, shared by the repositories."""

    def __init__(self, location: SQLiteURL, migrations: Sequence[Migration], busy_timeout_s: float) -> None:
        self._location = location
        self._migrations = migrations
        self._busy_timeout_s = busy_timeout_s
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._savepoints = 0

    async def connect(self) -> None:
        async with self._lock:
            if self._conn is None:
                self._conn = await self._open()

    async def _open(self) -> aiosqlite.Connection:
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
                await _run(conn, "PRAGMA journal_mode = WAL")
            await apply_migrations(conn, self._migrations)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError("storage is not connected (call connect() first)")
        return self._conn

    def _owns_transaction(self) -> bool:
        return self._owner is not None and self._owner is asyncio.current_task()

    @asynccontextmanager
    async def _access(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._owns_transaction():
            yield self._require()
            return
        async with self._lock:
            yield self._require()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._owns_transaction():
            async with self._savepoint():
                yield
            return
        async with self._lock:
            conn = self._require()
            self._owner = asyncio.current_task()
            try:
                try:
                    await _run(conn, "BEGIN IMMEDIATE")
                    yield
                except BaseException:
                    await _uncancellable(_rollback(conn))
                    raise
                await _uncancellable(_commit(conn))
            finally:
                self._owner = None

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        conn = self._require()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        try:
            await _run(conn, f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                await _uncancellable(_rollback(conn, name))
                raise
            await _uncancellable(_run(conn, f"RELEASE {name}"))
        finally:
            self._savepoints -= 1

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        async with self._access() as conn:
            return await _run(conn, sql, params)

    async def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        async with self._access() as conn:
            await (await conn.executemany(sql, params)).close()

    async def fetchall(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        async with self._access() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class SQLiteEncryptedColumn:
    """One column of KeyRing tokens, addressed by the table's key column."""

    def __init__(self, db: _Database, table: str, column: str, key_column: str) -> None:
        self._db = db
        self._select = f"SELECT {key_column}, {column} FROM {table}"
        self._update = f"UPDATE {table} SET {column} = ? WHERE {key_column} = ?"
        self.name: Final = f"{table}.{column}"

    async def read_tokens(self) -> dict[RowKey, str]:
        return {row[0]: row[1] for row in await self._db.fetchall(self._select)}

    async def write_tokens(self, tokens: Mapping[RowKey, str]) -> None:
        for token in tokens.values():
            if not is_encrypted_token(token):
                raise ValueError(f"{self.name}: refusing to store a value that is not a KeyRing token")
        async with self._db.transaction():
            await self._db.executemany(self._update, [(token, key) for key, token in tokens.items()])


class SQLiteUsers:
    def __init__(self, db: _Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.api_key_column: Final = SQLiteEncryptedColumn(db, "users", "encrypted_api_key", "discord_id")

    async def get(self, discord_id: int) -> UserRecord | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE discord_id = ?", (discord_id,))
        return None if row is None else UserRecord.model_validate(dict(row))

    async def upsert(self, record: UserRecord) -> UserRecord:
        params = _row_params(record) | {"updated_at": _to_db(self._clock())}
        rows = await self._db.fetchall(
            """
            INSERT INTO users
                (discord_id, encrypted_api_key, horde_user_id, horde_username, created_at, updated_at)
            VALUES
                (:discord_id, :encrypted_api_key, :horde_user_id, :horde_username, :created_at, :updated_at)
            ON CONFLICT (discord_id) DO UPDATE SET
                encrypted_api_key = excluded.encrypted_api_key,
                horde_user_id = excluded.horde_user_id,
                horde_username = excluded.horde_username,
                updated_at = excluded.updated_at
            RETURNING *
            """,
            params,
        )
        return UserRecord.model_validate(dict(rows[0]))

    async def delete(self, discord_id: int) -> bool:
        return await self._db.execute("DELETE FROM users WHERE discord_id = ?", (discord_id,)) > 0

    async def iter_all(self) -> AsyncIterator[UserRecord]:
        # Fetched up front: holding the connection across yields would block every other coroutine.
        for row in await self._db.fetchall("SELECT * FROM users ORDER BY discord_id"):
            yield UserRecord.model_validate(dict(row))

    async def update_encrypted_keys(self, keys: Mapping[int, str]) -> None:
        tokens: dict[RowKey, str] = dict(keys.items())
        await self.api_key_column.write_tokens(tokens)


class SQLiteGuildSettings:
    def __init__(self, db: _Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int) -> GuildSettingsRecord:
        rows = await self._db.fetchall(
            "SELECT key, value_json, updated_at FROM guild_settings WHERE guild_id = ? ORDER BY key",
            (guild_id,),
        )
        return GuildSettingsRecord(
            guild_id=guild_id,
            values={row["key"]: json.loads(row["value_json"]) for row in rows},
            updated_at=max((row["updated_at"] for row in rows), default=None),
        )

    async def get_all(self, guild_id: int) -> dict[str, Any]:
        return dict((await self.get(guild_id)).values)

    async def set(self, guild_id: int, key: str, value: Any, actor_id: int) -> bool:
        return bool(await self.set_many(guild_id, {key: value}, actor_id))

    async def set_many(self, guild_id: int, values: Mapping[str, Any], actor_id: int) -> list[str]:
        encoded = {self._check_key(key): _encode_json(key, value) for key, value in values.items()}
        async with self._db.transaction():
            return [
                key
                for key, value_json in encoded.items()
                if await self._write(guild_id, key, value_json, actor_id)
            ]

    async def reset(self, guild_id: int, key: str, actor_id: int) -> bool:
        async with self._db.transaction():
            return await self._write(guild_id, self._check_key(key), None, actor_id)

    async def audit(self, guild_id: int, limit: int = 50) -> list[GuildSettingAuditRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM guild_settings_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, limit),
        )
        return [GuildSettingAuditRecord.model_validate(dict(row)) for row in rows]

    @staticmethod
    def _check_key(key: str) -> str:
        if not key.strip():
            raise ValueError("a guild setting needs a non-empty name")
        return key

    async def _write(self, guild_id: int, key: str, value_json: str | None, actor_id: int) -> bool:
        """Set (or, with ``None``, remove) one value and audit it; must run inside a transaction."""
        row = await self._db.fetchone(
            "SELECT value_json FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
        )
        old_json = None if row is None else row[0]
        if old_json == value_json:
            return False
        now = _to_db(self._clock())
        if value_json is None:
            await self._db.execute(
                "DELETE FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
            )
        else:
            await self._db.execute(
                """
                INSERT INTO guild_settings (guild_id, key, value_json, updated_at, updated_by)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (guild_id, key) DO UPDATE SET
                    value_json = excluded.value_json,
                    updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by
                """,
                (guild_id, key, value_json, now, actor_id),
            )
        await self._db.execute(
            "INSERT INTO guild_settings_audit (guild_id, key, old_value_json, new_value_json, actor_id, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (guild_id, key, old_json, value_json, actor_id, now),
        )
        return True


class SQLiteJobs:
    def __init__(self, db: _Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, record: JobRecord) -> JobRecord:
        params = _row_params(record)
        columns = ", ".join(params)
        placeholders = ", ".join(f":{name}" for name in params)
        try:
            await self._db.execute(f"INSERT INTO jobs ({columns}) VALUES ({placeholders})", params)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"cannot create job {record.id}: {exc}") from exc
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE id = ?", job_id)

    async def get_by_horde_id(self, horde_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE horde_id = ?", horde_id)

    async def update(self, job_id: str, **changes: Unpack[JobChanges]) -> JobRecord:
        unknown = sorted(set(changes) - _JOB_CHANGEABLE)
        if unknown:
            raise ValueError(f"job fields cannot be updated: {', '.join(unknown)}")
        async with self._db.transaction():
            old = await self.get(job_id)
            if old is None:
                raise NotFoundError(f"job {job_id} does not exist")
            new = JobRecord.model_validate(old.model_dump() | dict(changes) | {"updated_at": self._clock()})
            check_transition(old.state, new.state)
            params = {name: value for name, value in _row_params(new).items() if name in _JOB_CHANGEABLE}
            assignments = ", ".join(f"{name} = :{name}" for name in [*params, "updated_at"])
            await self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = :id",
                params | {"updated_at": _to_db(new.updated_at), "id": job_id},
            )
        return new

    async def list_unfinished(self, shard_id: int | None = None) -> list[JobRecord]:
        sql = f"SELECT * FROM jobs WHERE state IN ({_UNFINISHED_SQL})"
        params: tuple[int, ...] = ()
        if shard_id is not None:
            sql += " AND shard_id = ?"
            params = (shard_id,)
        return await self._many(sql + " ORDER BY created_at, id", *params)

    async def list_recent(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        return await self._many(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?", user_id, limit
        )

    async def _one(self, sql: str, *params: Any) -> JobRecord | None:
        row = await self._db.fetchone(sql, params)
        return None if row is None else JobRecord.model_validate(dict(row))

    async def _many(self, sql: str, *params: Any) -> list[JobRecord]:
        return [JobRecord.model_validate(dict(row)) for row in await self._db.fetchall(sql, params)]


class SQLiteStorage:
    """The :class:`~bot.storage.base.Storage` implementation on one SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        location: SQLiteURL,
        *,
        clock: Clock = utcnow,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.location: Final = location
        self._db = _Database(location, migrations, busy_timeout_s)
        self._users = SQLiteUsers(self._db, clock)
        self._guild_settings = SQLiteGuildSettings(self._db, clock)
        self._jobs = SQLiteJobs(self._db, clock)

    def __repr__(self) -> str:
        where = ":memory:" if self.location.path is None else str(self.location.path)
        return f"SQLiteStorage({where!r})"

    @property
    def users(self) -> SQLiteUsers:
        return self._users

    @property
    def guild_settings(self) -> SQLiteGuildSettings:
        return self._guild_settings

    @property
    def jobs(self) -> SQLiteJobs:
        return self._jobs

    @property
    def encrypted_columns(self) -> tuple[EncryptedColumn, ...]:
        return (self._users.api_key_column,)

    async def connect(self) -> None:
        """Open the database, creating its folder, and apply pending migrations."""
        await self._db.connect()

    async def close(self) -> None:
        """Wait for the running transaction, if any, then close the connection."""
        await self._db.close()

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self._db.transaction()

    async def __aenter__(self) -> SQLiteStorage:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "SQLiteEncryptedColumn",
    "SQLiteGuildSettings",
    "SQLiteJobs",
    "SQLiteStorage",
    "SQLiteUsers",
    "apply_migrations",
    "split_sql",
]
