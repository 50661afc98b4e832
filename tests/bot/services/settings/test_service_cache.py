"""GuildSettingsService's cache when several processes share one SQLite file: nothing is pushed, so
a guild's cached settings expire after ``cache_ttl_s`` (an injected clock moves time here).
PostgreSQL's pushed invalidation is tested with the storage (test_storage_settings_notifications.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing, binding
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.settings.service import GuildSettingsService
from bot.storage import GuildSponsorKeyRecord, SQLiteStorage, SQLiteURL

GUILD = 111
ADMIN = 7
TTL_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStorage, SQLiteStorage]]:
    """Two storages on one SQLite file, as two bot processes would open it."""
    url = SQLiteURL(tmp_path / "bot.sqlite3")
    async with SQLiteStorage(url) as first, SQLiteStorage(url) as second:
        yield first, second


def make_service(
    storage: SQLiteStorage, keyring: KeyRing, clock: Clock, ttl_s: float = TTL_S
) -> GuildSettingsService:
    return GuildSettingsService(
        storage,
        GenerationDefaults(),
        keyring=keyring,
        horde=AIHordeAPIAsyncSimpleClient(),
        cache_ttl_s=ttl_s,
        clock=clock,
    )


async def test_another_processs_write_is_seen_once_the_cache_expires(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing, clock: Clock
) -> None:
    first, second = two_processes
    reader, writer = make_service(first, keyring, clock), make_service(second, keyring, clock)
    assert (await reader.get(GUILD)).cooldown_seconds == 0

    await writer.set(GUILD, "cooldown_seconds", "9", ADMIN)

    assert (await writer.get(GUILD)).cooldown_seconds == 9  # the writer's own cache: at once
    clock.now += TTL_S - 0.5
    assert (await reader.get(GUILD)).cooldown_seconds == 0  # still within the time limit
    clock.now += 0.5
    assert (await reader.get(GUILD)).cooldown_seconds == 9
    # Read again at 530: cached anew for another 30 s.
    await writer.set(GUILD, "cooldown_seconds", "4", ADMIN)
    clock.now += TTL_S - 0.5
    assert (await reader.get(GUILD)).cooldown_seconds == 9
    clock.now += 0.5
    assert (await reader.get(GUILD)).cooldown_seconds == 4


async def test_each_guild_expires_on_its_own_reading_time(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing, clock: Clock
) -> None:
    first, second = two_processes
    reader, writer = make_service(first, keyring, clock), make_service(second, keyring, clock)
    await reader.get(GUILD)
    clock.now += 20
    await reader.get(GUILD + 1)
    await writer.set(GUILD, "cooldown_seconds", "9", ADMIN)
    await writer.set(GUILD + 1, "cooldown_seconds", "9", ADMIN)

    clock.now += 10
    assert [(await reader.get(g)).cooldown_seconds for g in (GUILD, GUILD + 1)] == [9, 0]


async def test_a_zero_time_limit_reads_every_time(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing, clock: Clock
) -> None:
    first, second = two_processes
    reader, writer = make_service(first, keyring, clock, ttl_s=0), make_service(second, keyring, clock)
    assert (await reader.get(GUILD)).cooldown_seconds == 0

    await writer.set(GUILD, "cooldown_seconds", "9", ADMIN)

    assert (await reader.get(GUILD)).cooldown_seconds == 9  # the clock did not move


async def test_a_negative_time_limit_is_refused(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing
) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        make_service(two_processes[0], keyring, Clock(), ttl_s=-1)


async def test_a_sponsor_key_removed_elsewhere_expires_too(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing, clock: Clock
) -> None:
    first, second = two_processes
    reader = make_service(first, keyring, clock)

    await second.sponsor_keys.set(
        GuildSponsorKeyRecord(
            guild_id=GUILD,
            encrypted_api_key=keyring.encrypt("sponsor-key-0123456789", bound_to=binding("guild", GUILD)),
            horde_username="p",
            updated_by=ADMIN,
        )
    )
    assert (await reader.get(GUILD)).has_sponsor_key
    await second.sponsor_keys.delete(GUILD, actor_id=ADMIN)

    assert (await reader.get(GUILD)).has_sponsor_key
    clock.now += TTL_S
    assert not (await reader.get(GUILD)).has_sponsor_key


async def test_the_cache_keeps_the_most_recently_read_servers_only(
    tmp_path: Path, keyring: KeyRing, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as storage:
        service = GuildSettingsService(
            storage, GenerationDefaults(), keyring=keyring, horde=AIHordeAPIAsyncSimpleClient(),
            cache_size=2, clock=clock,
        )  # fmt: skip
        loads: Counter[int] = Counter()
        read = storage.guild_settings.get_all

        async def counted(guild_id: int) -> dict[str, str]:
            loads[guild_id] += 1
            return await read(guild_id)

        monkeypatch.setattr(storage.guild_settings, "get_all", counted)
        for guild in (1, 2, 1, 3):  # reading 1 again makes 2 the least recently read
            await service.get(guild)
        assert loads == {1: 1, 2: 1, 3: 1}
        await service.get(1)
        await service.get(3)
        await service.get(2)  # dropped for 3: read again
        assert loads == {1: 1, 2: 2, 3: 1}

        # A thousand servers read and written: what is kept stays bounded.
        for guild in range(1000, 2000):
            await service.set(guild, "cooldown_seconds", "5", ADMIN)
            await service.get(guild)
        assert len(service._cache) == 2
        assert not service._versions
        assert not service._readers
        assert (await service.get(1999)).cooldown_seconds == 5


async def test_a_write_during_a_read_is_not_cached_over(
    two_processes: tuple[SQLiteStorage, SQLiteStorage], keyring: KeyRing, clock: Clock
) -> None:
    storage, _ = two_processes
    service = make_service(storage, keyring, clock)
    read = storage.guild_settings.get_all

    async def read_then_written(guild_id: int) -> dict[str, str]:
        stored = await read(guild_id)
        await storage.guild_settings.set(guild_id, "cooldown_seconds", "7", ADMIN)
        service.invalidate(guild_id)  # what the write's notification does
        return stored

    storage.guild_settings.get_all = read_then_written  # type: ignore[method-assign]
    assert (await service.get(GUILD)).cooldown_seconds == 0  # read before the write
    storage.guild_settings.get_all = read  # type: ignore[method-assign]
    assert (await service.get(GUILD)).cooldown_seconds == 7  # not served from the cache
