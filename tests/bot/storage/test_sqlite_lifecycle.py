from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.crypto import KeyRing
from bot.storage import (
    DatabaseURLError,
    SchemaError,
    SQLiteStorage,
    SQLiteURL,
    StorageError,
    UserRecord,
    open_storage,
)
from bot.storage.sqlite import split_sql
from bot.storage.sqlite_migrations import MIGRATIONS, Migration

pytest_plugins = ("storage_fixtures",)

LATEST = len(MIGRATIONS)
BROKEN = Migration(
    LATEST + 1, "broken", "CREATE TABLE extra (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
)


def raw_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def raw_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows} - {"sqlite_sequence"}


async def test_fresh_file_is_created_and_migrated(db_path: Path) -> None:
    assert not db_path.parent.exists()
    async with SQLiteStorage(SQLiteURL(db_path)):
        pass
    assert raw_version(db_path) == LATEST
    assert raw_tables(db_path) == {"users", "guild_settings", "guild_settings_audit", "jobs"}


async def test_file_database_uses_wal_foreign_keys_and_busy_timeout(db_path: Path) -> None:
    async with SQLiteStorage(SQLiteURL(db_path), busy_timeout_s=2.5) as storage:
        foreign_keys = await storage._db.fetchone("PRAGMA foreign_keys")
        busy_timeout = await storage._db.fetchone("PRAGMA busy_timeout")
        assert foreign_keys is not None
        assert foreign_keys[0] == 1
        assert busy_timeout is not None
        assert busy_timeout[0] == 2500
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_failing_migration_from_zero_leaves_nothing_behind(db_path: Path) -> None:
    storage = SQLiteStorage(SQLiteURL(db_path), migrations=(*MIGRATIONS, BROKEN))
    with pytest.raises(
        SchemaError, match=rf"migration {BROKEN.number:04d}_broken failed.*stays at version 0"
    ):
        await storage.connect()
    # All pending migrations ran in one transaction, so even migration 1 was rolled back.
    assert raw_version(db_path) == 0
    assert raw_tables(db_path) == set()
    with pytest.raises(StorageError, match="not connected"):
        await storage.users.get(1)


async def test_failing_migration_keeps_the_previous_version_and_data(db_path: Path, ring: KeyRing) -> None:
    async with SQLiteStorage(SQLiteURL(db_path)) as storage:
        await storage.users.upsert(
            UserRecord(discord_id=1, encrypted_api_key=ring.encrypt("k"), horde_user_id=2, horde_username="a")
        )
    with pytest.raises(SchemaError, match=f"stays at version {LATEST}"):
        await SQLiteStorage(SQLiteURL(db_path), migrations=(*MIGRATIONS, BROKEN)).connect()
    assert raw_version(db_path) == LATEST
    assert "extra" not in raw_tables(db_path)
    async with SQLiteStorage(SQLiteURL(db_path)) as storage:
        assert await storage.users.get(1) is not None


async def test_a_new_migration_is_applied_on_reopen(db_path: Path) -> None:
    async with SQLiteStorage(SQLiteURL(db_path)):
        pass
    extra = Migration(LATEST + 1, "extra", "CREATE TABLE extra (x INTEGER);")
    async with SQLiteStorage(SQLiteURL(db_path), migrations=(*MIGRATIONS, extra)):
        pass
    assert raw_version(db_path) == LATEST + 1
    assert "extra" in raw_tables(db_path)


async def test_reopen_keeps_data_and_does_not_rerun_migrations(db_path: Path, ring: KeyRing) -> None:
    record = UserRecord(
        discord_id=7, encrypted_api_key=ring.encrypt("key"), horde_user_id=3, horde_username="u"
    )
    async with SQLiteStorage(SQLiteURL(db_path)) as storage:
        await storage.users.upsert(record)
    # A second open would fail with "table users already exists" if migration 1 ran again.
    async with SQLiteStorage(SQLiteURL(db_path)) as storage:
        stored = await storage.users.get(7)
    assert stored is not None
    assert ring.decrypt(stored.encrypted_api_key) == "key"
    assert raw_version(db_path) == LATEST


async def test_newer_schema_is_refused(db_path: Path) -> None:
    async with SQLiteStorage(SQLiteURL(db_path)):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    storage = SQLiteStorage(SQLiteURL(db_path))
    with pytest.raises(
        SchemaError, match=rf"version {LATEST + 5}, newer than this bot supports \({LATEST}\)"
    ):
        await storage.connect()
    assert raw_version(db_path) == LATEST + 5


async def test_migrations_must_be_numbered_without_gaps() -> None:
    gap = Migration(LATEST + 2, "gap", "SELECT 1;")
    with pytest.raises(ValueError, match="without gaps"):
        await SQLiteStorage(SQLiteURL(None), migrations=(*MIGRATIONS, gap)).connect()


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


async def test_using_storage_before_connect_or_after_close_fails_clearly(db_path: Path) -> None:
    storage = SQLiteStorage(SQLiteURL(db_path))
    with pytest.raises(StorageError, match="not connected"):
        await storage.jobs.get("0" * 32)
    await storage.connect()
    await storage.connect()  # idempotent
    await storage.close()
    await storage.close()  # idempotent
    with pytest.raises(StorageError, match="not connected"):
        await storage.jobs.get("0" * 32)


async def test_open_storage_chooses_the_backend_from_the_url(tmp_path: Path) -> None:
    path = tmp_path / "x" / "bot.sqlite3"
    async with open_storage(f"sqlite:///{path}") as storage:
        assert isinstance(storage, SQLiteStorage)
        assert storage.location.path == path
    assert path.exists()
    async with open_storage("sqlite://:memory:") as storage:
        assert isinstance(storage, SQLiteStorage)
        assert storage.location.is_memory
    with pytest.raises(DatabaseURLError, match="unsupported database scheme 'postgresql'"):
        open_storage("postgresql://user:pw@localhost/bot")


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
