"""What the SQL backends share: the repositories, written once against :class:`Database`, the
transaction bookkeeping, the numbering of migrations and the checks every backend applies.

Statements use PostgreSQL's ``$1, $2, …`` placeholders; the SQLite backend runs them as ``?1, ?2, …``.
A backend says how to open, begin, commit and roll back, and how to run one statement.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any, Final, Generic, NamedTuple, Self, TypeAlias, TypeVar

from bot.storage.base import (
    EncryptedColumn,
    GuildSettingsWatcher,
    RowKey,
    SchemaError,
    StorageError,
    UserRecord,
    utcnow,
)
from bot.storage.encrypted_column import SQLEncryptedColumn
from bot.storage.guild_settings import SQLGuildSettings, SQLSponsorKeys
from bot.storage.jobs import SQLJobs
from bot.storage.member_settings import SQLMemberSettings
from bot.storage.submit_queue import SQLSubmitQueue

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = TypeVar("_Conn")
_Db = TypeVar("_Db", bound="Database[Any]")

Clock: TypeAlias = Callable[[], datetime]
Row: TypeAlias = dict[str, Any]


# -- migrations ---------------------------------------------------------------------------------


class Migration(NamedTuple):
    number: int
    name: str
    sql: str


def latest_version(migrations: Sequence[Migration]) -> int:
    """The schema version ``migrations`` lead to: the last one's number.

    Numbers run 1, 2, 3, … with no gap: a database records only its latest number, so a migration
    numbered below one it already ran would never be applied.
    """
    numbers = [m.number for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, … in increasing order, with no gap")
    return numbers[-1]


def pending_migrations(migrations: Sequence[Migration], current: int) -> list[Migration]:
    """The migrations a schema at version ``current`` still needs, in order."""
    return [migration for migration in migrations if migration.number > current]


def schema_too_new(current: int, latest: int) -> SchemaError:
    return SchemaError(
        f"the database schema is version {current}, newer than this bot supports ({latest}); "
        "upgrade the bot or restore a backup"
    )


def migration_failed(migration: Migration, current: int, exc: Exception) -> SchemaError:
    return SchemaError(
        f"migration {migration.number:04d}_{migration.name} failed: {exc}; "
        f"the schema stays at version {current}"
    )


# -- transactions -------------------------------------------------------------------------------


async def uncancellable(aw: Awaitable[_T]) -> _T:
    """Finish ``aw`` even if the caller is cancelled meanwhile, then re-raise the cancellation.

    Ending a transaction must complete before its connection is handed on, or the next user would
    start inside this transaction.
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


@asynccontextmanager
async def atomic(
    begin: Callable[[], Awaitable[object]],
    commit: Callable[[], Awaitable[object]],
    rollback: Callable[[], Awaitable[object]],
) -> AsyncIterator[None]:
    """The block between ``begin`` and ``commit``, or ``rollback`` on any exception, cancellation included.

    ``begin`` is inside the ``try``: when it is cancelled, the driver may still have started the
    transaction, so ``rollback`` must tolerate a transaction that never began.
    """
    try:
        await begin()
        yield
    except BaseException:
        await uncancellable(rollback())
        raise
    await uncancellable(commit())


class Database(ABC, Generic[_Conn]):
    """The connection(s) of one storage, and its transactions.

    One task at a time holds a transaction (an ``asyncio.Lock``); that task's statements join it and
    its nested ``transaction()`` blocks become savepoints. Other tasks wait for the lock before their
    own transaction, so transactions of different coroutines never interleave.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._owner_conn: _Conn | None = None
        self._savepoints = 0
        self._settings_watchers: list[GuildSettingsWatcher] = []

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    async def _open(self) -> None:
        """Connect and apply the pending migrations."""

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    def _transaction_connection(self) -> AbstractAsyncContextManager[_Conn]:
        """The connection a new transaction runs on; entered while holding the lock."""

    @abstractmethod
    async def _begin(self, conn: _Conn) -> None: ...

    @abstractmethod
    async def _commit(self, conn: _Conn) -> None: ...

    @abstractmethod
    async def _rollback(self, conn: _Conn) -> None:
        """Roll back; tolerates that no transaction is active."""

    @abstractmethod
    async def _run_plain(self, conn: _Conn, sql: str) -> None:
        """Run one statement without parameters (SAVEPOINT, RELEASE, ROLLBACK TO)."""

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement; returns the number of rows it changed."""

    @abstractmethod
    async def execute_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one writing statement with a RETURNING clause."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one query that writes nothing."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def connect(self) -> None:
        async with self._lock:
            if not self.is_connected:
                await self._open()

    async def close(self) -> None:
        """Wait for the running transaction, if any, then close."""
        async with self._lock:
            if self.is_connected:
                await self._close()

    async def guild_settings_changed(self, guild_id: int) -> None:
        """Tell other processes, if the backend can, that ``guild_id``'s settings changed.

        Called inside the transaction of the write, so the news goes out only if it commits.
        """

    def watch_guild_settings(self, watcher: GuildSettingsWatcher) -> Callable[[], None]:
        self._settings_watchers.append(watcher)
        self._watchers_changed()
        return partial(self._unwatch, watcher)

    def _unwatch(self, watcher: GuildSettingsWatcher) -> None:
        if watcher in self._settings_watchers:
            self._settings_watchers.remove(watcher)
            self._watchers_changed()

    def _watchers_changed(self) -> None:
        """A backend that listens for changes starts or stops listening here."""

    def _tell_watchers(self, guild_id: int | None) -> None:
        for watcher in list(self._settings_watchers):
            try:
                watcher(guild_id)
            except Exception:
                log.exception("A guild settings watcher failed")

    @staticmethod
    def not_connected() -> StorageError:
        return StorageError("storage is not connected (call connect() first)")

    def _joined(self) -> _Conn | None:
        """The connection of the transaction the current task holds, if it holds one."""
        if self._owner is not None and self._owner is asyncio.current_task():
            return self._owner_conn
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._transaction():
            yield

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Conn]:
        conn = self._joined()
        if conn is not None:
            async with self._savepoint(conn):
                yield conn
            return
        async with self._lock, self._transaction_connection() as conn:
            self._owner, self._owner_conn = asyncio.current_task(), conn
            try:
                async with atomic(
                    partial(self._begin, conn), partial(self._commit, conn), partial(self._rollback, conn)
                ):
                    yield conn
            finally:
                self._owner, self._owner_conn = None, None

    @asynccontextmanager
    async def _savepoint(self, conn: _Conn) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        try:
            async with atomic(
                partial(self._run_plain, conn, f"SAVEPOINT {name}"),
                partial(self._run_plain, conn, f"RELEASE {name}"),
                partial(self._rollback_to, conn, name),
            ):
                yield
        finally:
            self._savepoints -= 1

    async def _rollback_to(self, conn: _Conn, savepoint: str) -> None:
        await self._run_plain(conn, f"ROLLBACK TO {savepoint}")
        await self._run_plain(conn, f"RELEASE {savepoint}")


# -- the repositories ---------------------------------------------------------------------------


class SQLUsers:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.api_key_column: Final = SQLEncryptedColumn(
            db, "users", "encrypted_api_key", "discord_id", "user"
        )

    async def get(self, discord_id: int) -> UserRecord | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE discord_id = $1", (discord_id,))
        return None if row is None else UserRecord.model_validate(row)

    async def upsert(self, record: UserRecord) -> UserRecord:
        rows = await self._db.execute_returning(
            """
            INSERT INTO users
                (discord_id, encrypted_api_key, horde_user_id, horde_username, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (discord_id) DO UPDATE SET
                encrypted_api_key = excluded.encrypted_api_key,
                horde_user_id = excluded.horde_user_id,
                horde_username = excluded.horde_username,
                updated_at = excluded.updated_at
            RETURNING *
            """,
            (
                record.discord_id,
                record.encrypted_api_key,
                record.horde_user_id,
                record.horde_username,
                record.created_at,
                self._clock(),
            ),
        )
        return UserRecord.model_validate(rows[0])

    async def set_profile_shared(self, discord_id: int, shared: bool) -> bool:
        changed = await self._db.execute(
            "UPDATE users SET profile_shared = $1, updated_at = $2 WHERE discord_id = $3",
            (shared, self._clock(), discord_id),
        )
        return changed > 0

    async def delete(self, discord_id: int) -> bool:
        return await self._db.execute("DELETE FROM users WHERE discord_id = $1", (discord_id,)) > 0

    async def update_encrypted_keys(self, keys: Mapping[int, str]) -> None:
        tokens: dict[RowKey, str] = dict(keys.items())
        await self.api_key_column.write_tokens(tokens)


class SQLStorage(Generic[_Db]):
    """The :class:`~bot.storage.base.Storage` implementation on any :class:`Database`."""

    def __init__(self, db: _Db, clock: Clock = utcnow) -> None:
        self._db: Final = db
        self._users = SQLUsers(db, clock)
        self._guild_settings = SQLGuildSettings(db, clock)
        self._jobs = SQLJobs(db, clock)
        self._sponsor_keys = SQLSponsorKeys(db, clock)
        self._member_settings = SQLMemberSettings(db, clock)
        self._submit_queue = SQLSubmitQueue(db)

    @property
    def users(self) -> SQLUsers:
        return self._users

    @property
    def guild_settings(self) -> SQLGuildSettings:
        return self._guild_settings

    @property
    def jobs(self) -> SQLJobs:
        return self._jobs

    @property
    def sponsor_keys(self) -> SQLSponsorKeys:
        return self._sponsor_keys

    @property
    def member_settings(self) -> SQLMemberSettings:
        return self._member_settings

    @property
    def submit_queue(self) -> SQLSubmitQueue:
        return self._submit_queue

    @property
    def encrypted_columns(self) -> tuple[EncryptedColumn, ...]:
        return (self._users.api_key_column, self._sponsor_keys.api_key_column)

    async def connect(self) -> None:
        """Connect and apply the pending migrations; does nothing when already connected."""
        await self._db.connect()

    async def close(self) -> None:
        """Wait for the running transaction, if any, then close."""
        await self._db.close()

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self._db.transaction()

    def watch_guild_settings(self, watcher: GuildSettingsWatcher) -> Callable[[], None]:
        return self._db.watch_guild_settings(watcher)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
