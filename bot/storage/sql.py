"""What the SQL backends share: the repositories, written once against :class:`Database`, the
transaction bookkeeping, the numbering of migrations and the checks every backend applies.

Statements use PostgreSQL's ``$1, $2, …`` placeholders; the SQLite backend runs them as ``?1, ?2, …``.
A backend says how to open, begin, commit and roll back, and how to run one statement.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any, Final, Generic, NamedTuple, Self, TypeAlias, TypeVar, Unpack

from bot.crypto import BindingKind, binding, is_encrypted_token
from bot.storage.base import (
    UNFINISHED_STATES,
    DeliveryState,
    EncryptedColumn,
    GuildSettingAuditRecord,
    GuildSettingsRecord,
    GuildSettingsWatcher,
    GuildSponsorKeyRecord,
    JobChanges,
    JobRecord,
    KeyOwner,
    NotFoundError,
    RowKey,
    SchemaError,
    StorageError,
    UserRecord,
    check_transition,
    utcnow,
)
from bot.storage.member_settings import SQLMemberSettings
from bot.storage.submit_queue import SQLSubmitQueue

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = TypeVar("_Conn")
_Db = TypeVar("_Db", bound="Database[Any]")

Clock: TypeAlias = Callable[[], datetime]
Row: TypeAlias = dict[str, Any]

JOB_CHANGEABLE: Final = frozenset(JobChanges.__annotations__)
SPONSOR_AUDIT_KEY: Final = "sponsor_key"
_UNFINISHED_SQL: Final = ", ".join(f"'{state.value}'" for state in UNFINISHED_STATES)


class ConstraintError(StorageError):
    """A write broke a constraint of the schema (a duplicate key, a failed CHECK)."""


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


def _encode_setting(key: str, value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"guild setting {key!r}: the value is not JSON-serialisable") from None


def _check_setting_key(key: str) -> str:
    if not key.strip():
        raise ValueError("a guild setting needs a non-empty name")
    if not key.isprintable():
        # PostgreSQL text cannot hold NUL; no setting name needs control or separator characters.
        raise ValueError("a guild setting name must be printable (no control or separator characters)")
    return key


async def _audit(
    db: Database[Any],
    guild_id: int,
    key: str,
    old_json: str | None,
    new_json: str | None,
    actor_id: int,
    at: datetime,
) -> None:
    await db.execute(
        "INSERT INTO guild_settings_audit (guild_id, key, old_value_json, new_value_json, actor_id, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        (guild_id, key, old_json, new_json, actor_id, at),
    )


def _username_json(record: GuildSponsorKeyRecord | None) -> str | None:
    return None if record is None else _encode_setting(SPONSOR_AUDIT_KEY, record.horde_username)


class SQLEncryptedColumn:
    """One column of KeyRing tokens, addressed by the table's key column; each row's token is bound
    to ``binding(owner, key)``."""

    def __init__(
        self, db: Database[Any], table: str, column: str, key_column: str, owner: BindingKind
    ) -> None:
        self._db = db
        self._owner: Final = owner
        self._select = f"SELECT {key_column} AS key, {column} AS token FROM {table}"
        self._update = f"UPDATE {table} SET {column} = $1 WHERE {key_column} = $2"
        self._update_if = f"{self._update} AND {column} = $3"
        self.name: Final = f"{table}.{column}"

    def bound_to(self, row: RowKey) -> str:
        return binding(self._owner, row)

    async def read_tokens(self) -> dict[RowKey, str]:
        return {row["key"]: row["token"] for row in await self._db.fetch(self._select)}

    async def write_tokens(
        self, tokens: Mapping[RowKey, str], *, expected: Mapping[RowKey, str] | None = None
    ) -> int:
        for token in tokens.values():
            if not is_encrypted_token(token):
                raise ValueError(f"{self.name}: refusing to store a value that is not a KeyRing token")
        written = 0
        async with self._db.transaction():
            for key, token in tokens.items():
                if expected is None:
                    written += await self._db.execute(self._update, (token, key))
                else:
                    written += await self._db.execute(self._update_if, (token, key, expected[key]))
        return written


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


class SQLGuildSettings:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int) -> GuildSettingsRecord:
        rows = await self._db.fetch(
            "SELECT key, value_json, updated_at FROM guild_settings WHERE guild_id = $1 ORDER BY key",
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
        encoded = {_check_setting_key(key): _encode_setting(key, value) for key, value in values.items()}
        async with self._db.transaction():
            return [
                key
                for key, value_json in encoded.items()
                if await self._write(guild_id, key, value_json, actor_id)
            ]

    async def reset(self, guild_id: int, key: str, actor_id: int) -> bool:
        async with self._db.transaction():
            return await self._write(guild_id, _check_setting_key(key), None, actor_id)

    async def audit(self, guild_id: int, limit: int = 50) -> list[GuildSettingAuditRecord]:
        rows = await self._db.fetch(
            "SELECT * FROM guild_settings_audit WHERE guild_id = $1 ORDER BY id DESC LIMIT $2",
            (guild_id, limit),
        )
        return [GuildSettingAuditRecord.model_validate(row) for row in rows]

    async def _write(self, guild_id: int, key: str, value_json: str | None, actor_id: int) -> bool:
        """Set (or, with ``None``, remove) one value and audit it; must run inside a transaction."""
        row = await self._db.fetchone(
            "SELECT value_json FROM guild_settings WHERE guild_id = $1 AND key = $2", (guild_id, key)
        )
        old_json = None if row is None else row["value_json"]
        if old_json == value_json:
            return False
        now = self._clock()
        if value_json is None:
            await self._db.execute(
                "DELETE FROM guild_settings WHERE guild_id = $1 AND key = $2", (guild_id, key)
            )
        else:
            await self._db.execute(
                """
                INSERT INTO guild_settings (guild_id, key, value_json, updated_at, updated_by)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (guild_id, key) DO UPDATE SET
                    value_json = excluded.value_json,
                    updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by
                """,
                (guild_id, key, value_json, now, actor_id),
            )
        await _audit(self._db, guild_id, key, old_json, value_json, actor_id, now)
        await self._db.guild_settings_changed(guild_id)
        return True


class SQLSponsorKeys:
    """Sponsor keys; each change is audited in ``guild_settings_audit`` under :data:`SPONSOR_AUDIT_KEY`
    with the Horde username as the value, never the key."""

    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.api_key_column: Final = SQLEncryptedColumn(
            db, "guild_sponsor_keys", "encrypted_api_key", "guild_id", "guild"
        )

    async def get(self, guild_id: int) -> GuildSponsorKeyRecord | None:
        row = await self._db.fetchone("SELECT * FROM guild_sponsor_keys WHERE guild_id = $1", (guild_id,))
        return None if row is None else GuildSponsorKeyRecord.model_validate(row)

    async def set(self, record: GuildSponsorKeyRecord) -> None:
        async with self._db.transaction():
            old = await self.get(record.guild_id)
            now = self._clock()
            await self._db.execute(
                """
                INSERT INTO guild_sponsor_keys
                    (guild_id, encrypted_api_key, horde_username, updated_at, updated_by)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (guild_id) DO UPDATE SET
                    encrypted_api_key = excluded.encrypted_api_key,
                    horde_username = excluded.horde_username,
                    updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by
                """,
                (record.guild_id, record.encrypted_api_key, record.horde_username, now, record.updated_by),
            )
            await _audit(
                self._db,
                record.guild_id,
                SPONSOR_AUDIT_KEY,
                _username_json(old),
                _encode_setting(SPONSOR_AUDIT_KEY, record.horde_username),
                record.updated_by,
                now,
            )
            await self._db.guild_settings_changed(record.guild_id)

    async def delete(self, guild_id: int, actor_id: int) -> bool:
        async with self._db.transaction():
            old = await self.get(guild_id)
            if old is None:
                return False
            await self._db.execute("DELETE FROM guild_sponsor_keys WHERE guild_id = $1", (guild_id,))
            await _audit(
                self._db, guild_id, SPONSOR_AUDIT_KEY, _username_json(old), None, actor_id, self._clock()
            )
            await self._db.guild_settings_changed(guild_id)
        return True


class SQLJobs:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, record: JobRecord) -> JobRecord:
        values = record.model_dump()
        columns = ", ".join(values)
        placeholders = ", ".join(f"${index}" for index in range(1, len(values) + 1))
        try:
            await self._db.execute(
                f"INSERT INTO jobs ({columns}) VALUES ({placeholders})", list(values.values())
            )
        except ConstraintError as exc:
            raise StorageError(f"cannot create job {record.id}: {exc}") from exc
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE id = $1", job_id)

    async def get_by_horde_id(self, horde_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE horde_id = $1", horde_id)

    async def get_by_message(self, channel_id: int, message_id: int) -> JobRecord | None:
        return await self._one(
            "SELECT * FROM jobs WHERE channel_id = $1 AND message_id = $2 "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            channel_id,
            message_id,
        )

    async def update(self, job_id: str, **changes: Unpack[JobChanges]) -> JobRecord:
        unknown = sorted(set(changes) - JOB_CHANGEABLE)
        if unknown:
            raise ValueError(f"job fields cannot be updated: {', '.join(unknown)}")
        async with self._db.transaction():
            old = await self.get(job_id)
            if old is None:
                raise NotFoundError(f"job {job_id} does not exist")
            new = JobRecord.model_validate(old.model_dump() | dict(changes) | {"updated_at": self._clock()})
            check_transition(old.state, new.state)
            values = {name: value for name, value in new.model_dump().items() if name in JOB_CHANGEABLE}
            values["updated_at"] = new.updated_at
            assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(values, start=2))
            await self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = $1", [job_id, *values.values()])
        return new

    async def kudos_spent(
        self,
        *,
        since: datetime,
        guild_id: int | None = None,
        user_id: int | None = None,
        key_owners: Sequence[KeyOwner] | None = None,
    ) -> float:
        if key_owners is not None and not key_owners:
            return 0.0
        conditions = ["created_at >= $1"]
        params: list[Any] = [since]
        for column, value in (("guild_id", guild_id), ("user_id", user_id)):
            if value is not None:
                params.append(value)
                conditions.append(f"{column} = ${len(params)}")
        if key_owners is not None:
            first = len(params) + 1
            params.extend(key_owners)
            placeholders = ", ".join(f"${index}" for index in range(first, len(params) + 1))
            conditions.append(f"key_owner IN ({placeholders})")
        row = await self._db.fetchone(
            f"SELECT coalesce(sum(kudos), 0) AS spent FROM jobs WHERE {' AND '.join(conditions)}", params
        )
        return 0.0 if row is None else float(row["spent"])

    async def list_unfinished(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        return await self._list(f"state IN ({_UNFINISHED_SQL})", shard_ids)

    async def list_undelivered(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        return await self._list(f"delivery = '{DeliveryState.PENDING.value}'", shard_ids)

    async def count_unfinished(self, guild_id: int | None, user_id: int) -> tuple[int, int]:
        where = "guild_id IS NULL" if guild_id is None else "guild_id = $2"
        params: list[int] = [user_id] if guild_id is None else [user_id, guild_id]
        row = await self._db.fetchone(
            "SELECT coalesce(sum(CASE WHEN user_id = $1 THEN 1 ELSE 0 END), 0) AS mine, count(*) AS everyone "
            f"FROM jobs WHERE state IN ({_UNFINISHED_SQL}) AND {where}",
            params,
        )
        return (0, 0) if row is None else (int(row["mine"]), int(row["everyone"]))

    async def _list(self, condition: str, shard_ids: Collection[int] | None) -> list[JobRecord]:
        sql = f"SELECT * FROM jobs WHERE {condition}"
        params: list[int] = []
        if shard_ids is not None:
            params = sorted({int(shard) for shard in shard_ids})
            if not params:
                return []
            placeholders = ", ".join(f"${index}" for index in range(1, len(params) + 1))
            # Rows journalled before sharding have no shard: they are shard 0's (see the protocol).
            sql += f" AND coalesce(shard_id, 0) IN ({placeholders})"
        return await self._many(sql + " ORDER BY created_at, id", *params)

    async def list_recent(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        return await self._many(
            "SELECT * FROM jobs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", user_id, limit
        )

    async def _one(self, sql: str, *params: Any) -> JobRecord | None:
        row = await self._db.fetchone(sql, params)
        return None if row is None else JobRecord.model_validate(row)

    async def _many(self, sql: str, *params: Any) -> list[JobRecord]:
        return [JobRecord.model_validate(row) for row in await self._db.fetch(sql, params)]


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
