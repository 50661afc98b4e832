from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
import pytest

from bot.crypto import KeyRing, binding
from bot.storage import SchemaError, SQLiteStorage, SQLiteURL, StorageError, UserRecord
from bot.storage.sql import Migration, SQLStorage
from bot.storage.sqlite import split_sql

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

TABLES = {"users", "guild_settings", "guild_settings_audit", "jobs", "guild_sponsor_keys", "member_settings"}
TABLES |= {f"submit_{name}" for name in ("tickets", "served", "grants", "owners", "lock")}
# Valid SQL on both backends; the second statement fails.
BROKEN_SQL = "CREATE TABLE extra (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"


def broken(backend: Backend) -> tuple[Migration, ...]:
    return (*backend.migrations, Migration(backend.migrations[-1].number + 1, "broken", BROKEN_SQL))


def record(ring: KeyRing, discord_id: int = 1) -> UserRecord:
    return UserRecord(
        discord_id=discord_id,
        encrypted_api_key=ring.encrypt("key", bound_to=binding("user", discord_id)),
        horde_user_id=3,
        horde_username="u",
    )


# -- every backend --------------------------------------------------------------------------------


async def test_a_fresh_database_is_migrated(persistent_backend: Backend) -> None:
    assert await persistent_backend.schema_version() == 0
    async with persistent_backend.open():
        pass
    assert await persistent_backend.schema_version() == persistent_backend.migrations[-1].number
    assert await persistent_backend.tables() == TABLES


async def test_failing_migration_from_zero_leaves_nothing_behind(persistent_backend: Backend) -> None:
    migrations = broken(persistent_backend)
    storage = persistent_backend.open(migrations=migrations)
    with pytest.raises(
        SchemaError, match=rf"migration {migrations[-1].number:04d}_broken failed.*stays at version 0"
    ):
        await storage.connect()
    # All pending migrations ran in one transaction, so even migration 1 was rolled back.
    assert await persistent_backend.schema_version() == 0
    assert await persistent_backend.tables() == set()
    with pytest.raises(StorageError, match="not connected"):
        await storage.users.get(1)


async def test_failing_migration_keeps_the_previous_version_and_data(
    persistent_backend: Backend, ring: KeyRing
) -> None:
    latest = persistent_backend.migrations[-1].number
    async with persistent_backend.open() as storage:
        await storage.users.upsert(record(ring))
    with pytest.raises(SchemaError, match=f"stays at version {latest}"):
        await persistent_backend.open(migrations=broken(persistent_backend)).connect()
    assert await persistent_backend.schema_version() == latest
    assert "extra" not in await persistent_backend.tables()
    async with persistent_backend.open() as storage:
        assert await storage.users.get(1) is not None


async def test_a_new_migration_is_applied_on_reopen(persistent_backend: Backend) -> None:
    async with persistent_backend.open():
        pass
    latest = persistent_backend.migrations[-1].number
    extra = Migration(latest + 1, "extra", "CREATE TABLE extra (x INTEGER);")
    async with persistent_backend.open(migrations=(*persistent_backend.migrations, extra)):
        pass
    assert await persistent_backend.schema_version() == latest + 1
    assert "extra" in await persistent_backend.tables()


async def test_reopen_keeps_data_and_does_not_rerun_migrations(
    persistent_backend: Backend, ring: KeyRing
) -> None:
    async with persistent_backend.open() as storage:
        await storage.users.upsert(record(ring, discord_id=7))
    # A second open would fail with "table users already exists" if migration 1 ran again.
    async with persistent_backend.open() as storage:
        stored = await storage.users.get(7)
    assert stored is not None
    assert ring.decrypt(stored.encrypted_api_key, bound_to=binding("user", 7)) == "key"
    assert await persistent_backend.schema_version() == persistent_backend.migrations[-1].number


async def test_newer_schema_is_refused(persistent_backend: Backend) -> None:
    async with persistent_backend.open():
        pass
    latest = persistent_backend.migrations[-1].number
    await persistent_backend.force_schema_version(latest + 5)
    storage = persistent_backend.open()
    with pytest.raises(
        SchemaError, match=rf"version {latest + 5}, newer than this bot supports \({latest}\)"
    ):
        await storage.connect()
    assert await persistent_backend.schema_version() == latest + 5


async def test_processes_starting_together_migrate_once(persistent_backend: Backend, ring: KeyRing) -> None:
    storages = [persistent_backend.open() for _ in range(4)]
    await asyncio.gather(*(storage.connect() for storage in storages))
    try:
        for index, storage in enumerate(storages, start=1):
            await storage.users.upsert(record(ring, discord_id=index))
        users = [await storages[0].users.get(index) for index in range(1, len(storages) + 1)]
        assert None not in users
    finally:
        await asyncio.gather(*(storage.close() for storage in storages))
    assert await persistent_backend.schema_version() == persistent_backend.migrations[-1].number


async def test_migrations_must_be_numbered_in_increasing_order(backend: Backend) -> None:
    latest = backend.migrations[-1].number
    # A repeated number, one below the last, and a gap (a database past the gap would never run
    # the migration merged into it later).
    for number in (latest, latest - 1, latest + 2):
        misplaced = Migration(number, "misplaced", "SELECT 1;")
        with pytest.raises(ValueError, match="increasing order"):
            await backend.open(migrations=(*backend.migrations, misplaced)).connect()


async def test_using_storage_before_connect_or_after_close_fails_clearly(backend: Backend) -> None:
    storage = backend.open()
    with pytest.raises(StorageError, match="not connected"):
        await storage.jobs.get("0" * 32)
    with pytest.raises(StorageError, match="not connected"):
        await storage.users.delete(1)
    await storage.connect()
    await storage.connect()  # idempotent
    await storage.close()
    await storage.close()  # idempotent
    with pytest.raises(StorageError, match="not connected"):
        await storage.jobs.get("0" * 32)


async def test_close_waits_for_the_running_transaction(storage: SQLStorage[Any]) -> None:
    inside = asyncio.Event()

    async def transaction() -> None:
        async with storage.transaction():
            inside.set()
            await asyncio.sleep(0.02)
            await storage.guild_settings.set(1, "late", 1, actor_id=2)

    task = asyncio.create_task(transaction())
    await inside.wait()
    await storage.close()
    await task  # it finished its work before the storage closed under it


# -- SQLite only ----------------------------------------------------------------------------------


async def test_a_sqlite_file_and_its_folders_are_created(db_path: Path) -> None:
    assert not await asyncio.to_thread(db_path.parent.exists)
    async with SQLiteStorage(SQLiteURL(db_path)):
        pass
    assert await asyncio.to_thread(db_path.is_file)


async def test_file_database_uses_wal_foreign_keys_and_busy_timeout(db_path: Path) -> None:
    async with SQLiteStorage(SQLiteURL(db_path), busy_timeout_s=2.5) as storage:
        foreign_keys = await storage._db.fetchone("PRAGMA foreign_keys")
        busy_timeout = await storage._db.fetchone("PRAGMA busy_timeout")
        assert foreign_keys is not None
        assert foreign_keys["foreign_keys"] == 1
        assert busy_timeout is not None
        assert busy_timeout["timeout"] == 2500
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_opening_a_new_file_waits_for_another_connections_write_lock(db_path: Path) -> None:
    # SQLite answers the switch to WAL with "database is locked" at once, without the busy timeout.
    db_path.parent.mkdir(parents=True)
    storage = SQLiteStorage(SQLiteURL(db_path))
    try:
        with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            connecting = asyncio.create_task(storage.connect())
            await asyncio.sleep(0.05)
            assert not connecting.done()
            other.execute("ROLLBACK")
            await asyncio.wait_for(connecting, timeout=5)
    finally:
        # Left open, its aiosqlite connection is closed by the garbage collector in some later
        # test, whose worker thread then answers a closed event loop (an unhandled thread error).
        await storage.close()
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_split_sql_keeps_trigger_bodies_whole() -> None:
    script = """
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = x + 1;
    END;
    """
    statements = split_sql(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("END;")


def test_split_sql_rejects_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        split_sql("CREATE TABLE t (x INTEGER);\nCREATE TABLE u (y INTEGER)\n")


async def test_memory_databases_are_private_to_each_storage() -> None:
    async with SQLiteStorage(SQLiteURL(None)) as first, SQLiteStorage(SQLiteURL(None)) as second:
        await first.guild_settings.set(1, "model", "a", actor_id=9)
        assert await second.guild_settings.get_all(1) == {}


async def test_concurrent_connects_open_one_connection(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[aiosqlite.Connection] = []
    real_connect = aiosqlite.connect

    def counting_connect(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(aiosqlite, "connect", counting_connect)
    storage = SQLiteStorage(SQLiteURL(db_path))
    await asyncio.gather(*(storage.connect() for _ in range(5)))
    await storage.close()
    assert len(opened) == 1
