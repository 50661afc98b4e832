"""The PostgreSQL backend: an asyncpg pool, for several bot processes sharing one database.

Same semantics as the SQLite backend:

- Transactions are serialised, within the process by the ``Database`` lock and across processes by
  a transaction-scoped advisory lock taken at ``BEGIN`` (SQLite's single writer, ``BEGIN
  IMMEDIATE``). A read-then-write inside ``transaction()`` therefore never loses an update, without
  row locks or retries. A write outside a transaction runs in its own, so it waits for the lock too
  (a key rotation reading then rewriting keys cannot overwrite a login made meanwhile).
- Reads outside a transaction take any pool connection and never wait.
- The advisory locks are keyed by the schema (``current_schema()``), so bots in other schemas of the
  same database do not wait for each other.

One difference cannot be hidden: after a statement fails inside a transaction, PostgreSQL refuses
every later statement of it, and its COMMIT rolls back. Committing such a transaction raises
:class:`~bot.storage.base.StorageError` here rather than pretending it was committed. A nested
``transaction()`` (a savepoint) around the failing statement recovers, as with SQLite.

No lock timeout is set: the database's own settings apply, and can be given in the URL
(``?lock_timeout=5000`` or ``?idle_in_transaction_session_timeout=60000``).

Guild settings changes are pushed to every process: each write NOTIFYs inside its transaction
(delivered only if it commits), and :meth:`PostgresStorage.watch_guild_settings` LISTENs on a
dedicated connection (not a pool one: a pooled connection is reset, its LISTENs dropped, when it
goes back). When that connection is lost, the watchers forget everything and it reconnects with
backoff; once subscribed again they forget everything once more, since notifications sent while
nobody listened are lost. The payload carries the schema, so bots in other schemas ignore it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from enum import Enum
from functools import partial
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bot.horde import Wakeup
from bot.storage.base import ConstraintError, StorageError, utcnow
from bot.storage.postgres_migrations import MIGRATIONS
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
    uncancellable,
)
from bot.storage.url import PostgresURL

log = logging.getLogger(__name__)

# The driver has no runtime generics: the alias is a string, resolved by type checkers only.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

DEFAULT_MIN_CONNECTIONS: Final = 1
DEFAULT_MAX_CONNECTIONS: Final = 10
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0

# First keys of the two-key advisory locks (arbitrary, "Hord" and "Horf"); the second is the schema.
_WRITE_LOCK: Final = 0x486F7264
_MIGRATION_LOCK: Final = 0x486F7266
_SCHEMA_KEY: Final = "hashtext(coalesce(current_schema(), ''))"

SETTINGS_CHANNEL: Final = "horde_bot_guild_settings"
LISTENER_APPLICATION_NAME: Final = "horde-bot settings listener"
# The listening connection is checked this often: a peer that vanished without closing the socket
# is noticed by the failed check, not by the driver.
DEFAULT_LISTENER_CHECK_S: Final = 30.0
_LISTENER_CHECK_TIMEOUT_S: Final = 10.0
# Reconnection backoff: first retry, doubling up to the last.
_LISTENER_RETRY_S: Final = (0.1, 15.0)

_SCHEMA_VERSION_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""


def _locked_begin(lock: int) -> str:
    # One round trip: without parameters, asyncpg sends both statements as one simple query.
    return f"BEGIN; SELECT pg_advisory_xact_lock({lock}, {_SCHEMA_KEY})"


def _to_db(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _params(params: Sequence[Any]) -> list[Any]:
    return [_to_db(value) for value in params]


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


async def _commit(conn: Connection) -> None:
    if await conn.execute("COMMIT") == "ROLLBACK":
        raise StorageError(
            "PostgreSQL rolled the transaction back because a statement in it failed; nothing was saved"
        )


async def _rollback(conn: Connection) -> None:
    # Outside a transaction PostgreSQL only warns, so a BEGIN that never ran is fine.
    await conn.execute("ROLLBACK")


async def apply_migrations(conn: Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema to the newest version in ONE transaction; returns that version.

    The advisory lock makes a second process starting at the same time wait, then find the schema
    up to date.
    """
    latest = latest_version(migrations)
    begin = partial(conn.execute, _locked_begin(_MIGRATION_LOCK))
    async with atomic(begin, partial(_commit, conn), partial(_rollback, conn)):
        await conn.execute(_SCHEMA_VERSION_TABLE)
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        if current > latest:
            raise schema_too_new(current, latest)
        for migration in pending_migrations(migrations, current):
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise migration_failed(migration, current, exc) from exc
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)", migration.number, migration.name
            )
    return latest


class PostgresDatabase(Database[Connection]):
    def __init__(
        self,
        location: PostgresURL,
        migrations: Sequence[Migration],
        *,
        min_connections: int,
        max_connections: int,
        connect_timeout_s: float,
        listener_check_s: float = DEFAULT_LISTENER_CHECK_S,
    ) -> None:
        super().__init__()
        self._location = location
        self._migrations = migrations
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._listener_check_s = listener_check_s
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = False

    @property
    def listening(self) -> bool:
        """Whether the settings notifications are being received right now."""
        return self._listening

    @property
    def is_connected(self) -> bool:
        return self._pool is not None

    async def _open(self) -> None:
        latest_version(self._migrations)
        try:
            pool = await asyncpg.create_pool(
                self._location.dsn,
                min_size=self._min_connections,
                max_size=self._max_connections,
                timeout=self._connect_timeout_s,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The driver's message names the host and user at most; the URL is shown redacted.
            raise StorageError(f"cannot connect to {self._location.redacted}: {exc}") from None
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn, self._migrations)
        except BaseException:
            await uncancellable(pool.close())
            raise
        self._pool = pool
        self._watchers_changed()

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        await self._stop_listening()
        if pool is not None:
            await pool.close()

    # -- guild settings notifications --------------------------------------------------------------

    async def guild_settings_changed(self, guild_id: int) -> None:
        await self.execute(
            "SELECT pg_notify($1, coalesce(current_schema(), '') || ':' || $2)",
            (SETTINGS_CHANNEL, str(guild_id)),
        )

    def _watchers_changed(self) -> None:
        if self._settings_watchers and self._pool is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="PostgresStorage.listen")
        elif not self._settings_watchers and self._listener is not None:
            self._listener.cancel()  # _listen's own cleanup closes its connection
            self._listener = None

    async def _stop_listening(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        """Keep one connection LISTENing, reconnecting with backoff; runs until cancelled."""
        first, last = _LISTENER_RETRY_S
        delay = first
        while True:
            try:
                conn = await asyncpg.connect(
                    self._location.dsn,
                    timeout=self._connect_timeout_s,
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "Settings notifications: cannot connect to %s (%s); retrying in %gs",
                    self._location.redacted,
                    exc,
                    delay,
                )
            else:
                try:
                    await self._listen_on(conn)
                    delay = first  # it worked for a while: the next loss retries quickly again
                finally:
                    self._listening = False
                    await uncancellable(_close_quietly(conn))
                log.warning("Settings notifications: connection lost; reconnecting in %gs", delay)
                # Changes may be missed until the next subscription: stop trusting the caches now.
                self._tell_watchers(None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, last)

    async def _listen_on(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """Subscribe on ``conn`` and return once it is lost."""
        lost = Wakeup()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            schema = str(await conn.fetchval("SELECT coalesce(current_schema(), '')"))

            def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
                where, _, guild = str(payload).rpartition(":")
                if where == schema and guild.isdigit():
                    self._tell_watchers(int(guild))

            await conn.add_listener(SETTINGS_CHANNEL, notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("Settings notifications: cannot subscribe (%s)", exc)
            return
        self._listening = True
        # Writes committed before the LISTEN took effect were never sent to us.
        self._tell_watchers(None)
        while not await lost.sleep(self._listener_check_s):
            try:
                await conn.execute("SELECT 1", timeout=_LISTENER_CHECK_TIMEOUT_S)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("Settings notifications: the connection stopped answering (%s)", exc)
                return

    def _require(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise self.not_connected()
        return self._pool

    def _transaction_connection(self) -> AbstractAsyncContextManager[Connection]:
        return self._require().acquire()

    async def _begin(self, conn: Connection) -> None:
        await conn.execute(_locked_begin(_WRITE_LOCK))

    async def _commit(self, conn: Connection) -> None:
        await _commit(conn)

    async def _rollback(self, conn: Connection) -> None:
        await _rollback(conn)

    async def _run_plain(self, conn: Connection, sql: str) -> None:
        await conn.execute(sql)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Connection]:
        conn = self._joined()
        if conn is not None:
            yield conn
            return
        async with self._require().acquire() as conn:
            yield conn

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[Connection]:
        conn = self._joined()
        if conn is not None:
            yield conn
            return
        async with self._transaction() as conn:
            yield conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._writing() as conn:
            try:
                return _rowcount(await conn.execute(sql, *_params(params)))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise ConstraintError(str(exc)) from exc

    async def execute_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._writing() as conn:
            try:
                rows = await conn.fetch(sql, *_params(params))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise ConstraintError(str(exc)) from exc
        return [dict(row.items()) for row in rows]

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._writing() as conn:
            try:
                await conn.executemany(sql, [_params(row) for row in rows])
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise ConstraintError(str(exc)) from exc

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._reading() as conn:
            rows = await conn.fetch(sql, *_params(params))
        return [dict(row.items()) for row in rows]


async def _close_quietly(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=_LISTENER_CHECK_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


class PostgresStorage(SQLStorage[PostgresDatabase]):
    """The :class:`~bot.storage.base.Storage` implementation on a PostgreSQL database (or schema)."""

    def __init__(
        self,
        location: PostgresURL,
        *,
        clock: Clock = utcnow,
        migrations: Sequence[Migration] = MIGRATIONS,
        min_connections: int = DEFAULT_MIN_CONNECTIONS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        listener_check_s: float = DEFAULT_LISTENER_CHECK_S,
    ) -> None:
        db = PostgresDatabase(
            location,
            migrations,
            min_connections=min_connections,
            max_connections=max_connections,
            connect_timeout_s=connect_timeout_s,
            listener_check_s=listener_check_s,
        )
        super().__init__(db, clock)
        self.location: Final = location

    @property
    def listening(self) -> bool:
        """Whether guild settings changes are being received right now (see the module's docs)."""
        return self._db.listening

    def __repr__(self) -> str:
        return f"PostgresStorage({self.location.redacted!r})"


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_LISTENER_CHECK_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MIN_CONNECTIONS",
    "LISTENER_APPLICATION_NAME",
    "SETTINGS_CHANNEL",
    "PostgresDatabase",
    "PostgresStorage",
    "apply_migrations",
]
