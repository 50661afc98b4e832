"""Guild settings changes reach other processes: PostgreSQL pushes them (LISTEN/NOTIFY on a
connection of its own, re-subscribing after a loss); SQLite cannot, so caches over it expire.

Two storages on one database stand for two bot processes. Waits for a notification are bounded
(``eventually``): they fail the test when it never comes, they measure nothing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing, binding
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.settings.service import GuildSettingsService
from bot.storage import GuildSponsorKeyRecord, PostgresStorage, PostgresURL
from bot.storage.postgres import LISTENER_APPLICATION_NAME
from bot.storage.sql import SQLStorage

if TYPE_CHECKING:
    from storage_fixtures import Backend, SchemaFactory

pytest_plugins = ("storage_fixtures",)

ADMIN = 7
_PATIENCE_S = 10.0


async def eventually(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait until ``condition()`` holds; fail after a generous bound (no timing is asserted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _PATIENCE_S
    while True:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Events(list[int | None]):
    """What a watcher was told, in order."""

    def __call__(self, guild_id: int | None) -> None:
        self.append(guild_id)

    def guilds(self) -> list[int]:
        return [event for event in self if event is not None]


@pytest.fixture
async def pg_pair(postgres_url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two processes' storages on one PostgreSQL schema."""
    location = PostgresURL(postgres_url)
    async with PostgresStorage(location) as first, PostgresStorage(location) as second:
        yield first, second


async def watching(storage: PostgresStorage) -> Events:
    events = Events()
    storage.watch_guild_settings(events)
    await eventually(lambda: storage.listening, "the listener to subscribe")
    # Subscribing says "forget everything": changes from before could not be heard.
    assert events == [None]
    return events


def sponsor(ring: KeyRing, guild_id: int) -> GuildSponsorKeyRecord:
    return GuildSponsorKeyRecord(
        guild_id=guild_id,
        encrypted_api_key=ring.encrypt("sponsor-key-0123456789", bound_to=binding("guild", guild_id)),
        horde_username="p",
        updated_by=1,
    )


async def terminate_listeners(admin_url: str) -> int:
    conn = await asyncpg.connect(admin_url)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            LISTENER_APPLICATION_NAME,
        )
    finally:
        await conn.close()
    return len(killed)


# -- PostgreSQL: pushed -----------------------------------------------------------------------------


async def test_every_kind_of_settings_write_is_pushed_to_the_other_process(
    pg_pair: tuple[PostgresStorage, PostgresStorage], ring: KeyRing
) -> None:
    reader, writer = pg_pair
    events = await watching(reader)

    await writer.guild_settings.set(1, "cooldown_seconds", "9", ADMIN)
    await writer.guild_settings.set_many(2, {"max_steps": "20", "visibility": "private"}, ADMIN)
    await writer.guild_settings.reset(1, "cooldown_seconds", ADMIN)
    await writer.sponsor_keys.set(sponsor(ring, 3))
    await writer.sponsor_keys.delete(3, actor_id=ADMIN)

    # set_many's two keys are one transaction: PostgreSQL folds identical notifications into one.
    await eventually(lambda: events.guilds() == [1, 2, 1, 3, 3], "five notifications")


async def test_only_committed_changes_are_pushed(pg_pair: tuple[PostgresStorage, PostgresStorage]) -> None:
    reader, writer = pg_pair
    events = await watching(reader)

    await writer.guild_settings.set(1, "cooldown_seconds", "9", ADMIN)
    assert not await writer.guild_settings.set(1, "cooldown_seconds", "9", ADMIN)  # unchanged: silent

    async def abandoned_write() -> None:
        async with writer.transaction():
            await writer.guild_settings.set(4, "cooldown_seconds", "5", ADMIN)
            raise RuntimeError("abandoned")

    with pytest.raises(RuntimeError, match="abandoned"):
        await abandoned_write()
    await writer.guild_settings.set(5, "cooldown_seconds", "5", ADMIN)

    # Notifications arrive in commit order: once 5 is in, 4 (rolled back) would have come before.
    await eventually(lambda: 5 in events, "the notification of guild 5")
    assert events.guilds() == [1, 5]


async def test_a_bot_in_another_schema_is_not_told(
    pg_pair: tuple[PostgresStorage, PostgresStorage], postgres_schemas: SchemaFactory
) -> None:
    reader, writer = pg_pair
    events = await watching(reader)

    async with PostgresStorage(PostgresURL(await postgres_schemas.new_url())) as elsewhere:
        await elsewhere.guild_settings.set(6, "cooldown_seconds", "1", ADMIN)
    await writer.guild_settings.set(7, "cooldown_seconds", "1", ADMIN)

    await eventually(lambda: 7 in events, "the notification of guild 7")
    assert events.guilds() == [7]


async def test_a_watcher_that_stops_hears_nothing_more(
    pg_pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    reader, writer = pg_pair
    stopped, sentinel = Events(), await watching(reader)
    stop = reader.watch_guild_settings(stopped)
    await writer.guild_settings.set(1, "cooldown_seconds", "1", ADMIN)
    await eventually(lambda: 1 in stopped, "the first notification")

    stop()
    await writer.guild_settings.set(2, "cooldown_seconds", "1", ADMIN)

    await eventually(lambda: 2 in sentinel, "the sentinel's notification")
    assert stopped.guilds() == [1]


async def test_a_lost_listener_forgets_everything_and_subscribes_again(
    pg_pair: tuple[PostgresStorage, PostgresStorage], postgres_server: str
) -> None:
    reader, writer = pg_pair
    events = await watching(reader)

    assert await terminate_listeners(postgres_server) == 1

    # Lost: "forget everything" at once, and again once subscribed again (writes in between were
    # never sent to it).
    await eventually(lambda: events.count(None) >= 3 and reader.listening, "the listener to come back")
    await writer.guild_settings.set(9, "cooldown_seconds", "1", ADMIN)
    await eventually(lambda: 9 in events, "a notification after reconnecting")


async def test_closing_the_storage_stops_listening(postgres_url: str, postgres_server: str) -> None:
    storage = PostgresStorage(PostgresURL(postgres_url))
    events = Events()
    storage.watch_guild_settings(events)  # before connecting: listens once connected
    async with storage:
        await eventually(lambda: storage.listening, "the listener to subscribe")
    assert not storage.listening
    assert await terminate_listeners(postgres_server) == 0


# -- SQLite: nothing to push ----------------------------------------------------------------------


@pytest.mark.parametrize("persistent_backend", ["sqlite-file"], indirect=True)
async def test_sqlite_never_calls_watchers(persistent_backend: Backend) -> None:
    async with persistent_backend.open() as reader, persistent_backend.open() as writer:
        events = Events()
        reader.watch_guild_settings(events)
        await writer.guild_settings.set(1, "cooldown_seconds", "9", ADMIN)
        await reader.guild_settings.set(2, "cooldown_seconds", "9", ADMIN)
        assert await reader.guild_settings.get_all(1) == {"cooldown_seconds": "9"}
    assert events == []


# -- two processes' settings services on one database ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(storage: SQLStorage[Any], ring: KeyRing, clock: Clock) -> GuildSettingsService:
    return GuildSettingsService(
        storage,
        GenerationDefaults(),
        keyring=ring,
        horde=AIHordeAPIAsyncSimpleClient(),
        cache_ttl_s=30.0,
        clock=clock,
    )


async def test_a_setting_written_by_one_process_is_seen_by_the_other(
    persistent_backend: Backend, ring: KeyRing
) -> None:
    clock = Clock()
    async with persistent_backend.open() as first, persistent_backend.open() as second:
        reader, writer = service(first, ring, clock), service(second, ring, clock)
        if isinstance(first, PostgresStorage):
            await eventually(lambda: first.listening, "the listener to subscribe")
        assert (await reader.get(1)).cooldown_seconds == 0  # cached now

        await writer.set(1, "cooldown_seconds", "9", ADMIN)

        if isinstance(first, PostgresStorage):
            # Pushed: seen without waiting for the cache to expire (the clock stands still).
            async def updated() -> bool:
                return (await reader.get(1)).cooldown_seconds == 9

            await eventually(updated, "the other process's write")
        else:
            # Not pushed: the cached value stands until its time limit, then the new one is read.
            clock.now += 29.9
            assert (await reader.get(1)).cooldown_seconds == 0
            clock.now += 0.1
            assert (await reader.get(1)).cooldown_seconds == 9


async def test_after_the_listener_was_down_every_cached_guild_is_read_again(
    postgres_url: str, postgres_server: str, ring: KeyRing
) -> None:
    clock = Clock()
    async with PostgresStorage(PostgresURL(postgres_url)) as storage:
        reader = service(storage, ring, clock)
        await eventually(lambda: storage.listening, "the listener to subscribe")
        assert (await reader.get(1)).cooldown_seconds == 0
        assert (await reader.get(2)).cooldown_seconds == 0
        # Changed without a notification, as if while nobody listened.
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, key, value_json, updated_at, updated_by) VALUES"
                " (1, 'cooldown_seconds', '\"9\"', now(), 7), (2, 'cooldown_seconds', '\"8\"', now(), 7)"
            )
        finally:
            await conn.close()
        assert (await reader.get(1)).cooldown_seconds == 0  # still cached: nothing said otherwise

        assert await terminate_listeners(postgres_server) == 1

        async def both_read_again() -> bool:
            return ((await reader.get(1)).cooldown_seconds, (await reader.get(2)).cooldown_seconds) == (9, 8)

        await eventually(both_read_again, "the cache to be dropped")
