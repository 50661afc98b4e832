"""What only the PostgreSQL backend does (the shared behaviour is tested on every backend)."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import asyncpg
import pytest

from bot.crypto import KeyRing, binding
from bot.storage import PostgresStorage, PostgresURL, StorageError, UserRecord
from bot.storage.postgres import _rowcount
from bot.storage.postgres_migrations import MIGRATIONS
from bot.storage.sql import Migration

if TYPE_CHECKING:
    from storage_fixtures import SchemaFactory

pytest_plugins = ("storage_fixtures",)

GUILD = 1
ACTOR = 2


def user(ring: KeyRing, discord_id: int = 1) -> UserRecord:
    return UserRecord(
        discord_id=discord_id,
        encrypted_api_key=ring.encrypt("k", bound_to=binding("user", discord_id)),
        horde_user_id=2,
        horde_username="u",
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("status", "count"),
    [("UPDATE 3", 3), ("INSERT 0 1", 1), ("DELETE 0", 0), ("CREATE TABLE", 0), ("SELECT 12", 12)],
)
def test_rowcount_reads_the_command_tag(status: str, count: int) -> None:
    assert _rowcount(status) == count


async def test_a_failed_connection_names_the_server_but_not_the_password() -> None:
    storage = PostgresStorage(
        PostgresURL(f"postgresql://bot:hunter2@127.0.0.1:{closed_port()}/bot"), connect_timeout_s=2
    )
    with pytest.raises(StorageError, match=r"cannot connect to postgresql://bot:\*\*\*@127\.0\.0\.1") as info:
        await storage.connect()
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None  # the message says it all; the driver's exception is not chained
    with pytest.raises(StorageError, match="not connected"):
        await storage.users.get(1)


async def test_migrations_are_recorded_one_row_each(postgres_url: str) -> None:
    async with PostgresStorage(PostgresURL(postgres_url)) as storage:
        rows = await storage._db.fetch(
            "SELECT version, name, applied_at FROM schema_version ORDER BY version"
        )
    assert [(row["version"], row["name"]) for row in rows] == [(m.number, m.name) for m in MIGRATIONS]
    assert all(row["applied_at"].utcoffset() is not None for row in rows)


async def test_a_failed_statement_makes_the_commit_fail_instead_of_losing_data_silently(
    postgres_url: str, ring: KeyRing
) -> None:
    async with PostgresStorage(PostgresURL(postgres_url)) as storage:

        async def carry_on_after_a_failed_statement() -> None:
            async with storage.transaction():
                await storage.users.upsert(user(ring))
                with pytest.raises(asyncpg.PostgresError):
                    await storage._db.execute("SELECT 1 / 0")

        with pytest.raises(
            StorageError, match="rolled the transaction back because a statement in it failed"
        ):
            await carry_on_after_a_failed_statement()
        assert await storage.users.get(1) is None
        # A savepoint (a nested transaction) around the failing statement keeps the rest.
        async with storage.transaction():
            await storage.users.upsert(user(ring))
            with pytest.raises(asyncpg.PostgresError):
                async with storage.transaction():
                    await storage._db.execute("SELECT 1 / 0")
        assert await storage.users.get(1) is not None


async def test_reads_do_not_wait_for_a_transaction(postgres_url: str) -> None:
    async with PostgresStorage(PostgresURL(postgres_url)) as storage:
        inside = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with storage.transaction():
                await storage.guild_settings.set(GUILD, "uncommitted", 1, actor_id=ACTOR)
                inside.set()
                await release.wait()

        holding = asyncio.create_task(holder())
        try:
            await inside.wait()
            # Another coroutine reads at once, and sees only committed data.
            assert await asyncio.wait_for(storage.guild_settings.get_all(GUILD), timeout=2) == {}
        finally:
            release.set()
            await holding
        assert await storage.guild_settings.get_all(GUILD) == {"uncommitted": 1}


async def test_bots_in_other_schemas_do_not_wait_for_each_other(
    postgres_schemas: SchemaFactory, ring: KeyRing
) -> None:
    first_url, second_url = await postgres_schemas.new_url(), await postgres_schemas.new_url()
    async with (
        PostgresStorage(PostgresURL(first_url)) as first,
        PostgresStorage(PostgresURL(second_url)) as second,
    ):
        inside = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with first.transaction():
                await first.users.upsert(user(ring))
                inside.set()
                await release.wait()

        holding = asyncio.create_task(holder())
        try:
            await inside.wait()
            await asyncio.wait_for(second.users.upsert(user(ring)), timeout=2)
        finally:
            release.set()
            await holding


async def test_the_pool_is_bounded(postgres_url: str) -> None:
    async with PostgresStorage(PostgresURL(postgres_url), min_connections=1, max_connections=2) as storage:
        pool = storage._db._require()
        assert pool.get_min_size() == 1
        assert pool.get_max_size() == 2
        # More concurrent reads than connections still all complete.
        results = await asyncio.gather(*(storage.guild_settings.get_all(n) for n in range(10)))
        assert results == [{}] * 10
        assert pool.get_size() <= 2


async def test_a_broken_migration_statement_is_reported_with_its_number(postgres_url: str) -> None:
    broken = Migration(MIGRATIONS[-1].number + 1, "typo", "CREAT TABLE oops (x int);")
    with pytest.raises(StorageError, match=rf"migration {broken.number:04d}_typo failed: syntax error"):
        await PostgresStorage(PostgresURL(postgres_url), migrations=(*MIGRATIONS, broken)).connect()
