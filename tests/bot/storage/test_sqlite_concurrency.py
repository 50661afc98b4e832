from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.storage import SQLiteStorage, SQLiteURL
from bot.storage.sqlite import _uncancellable

pytest_plugins = ("storage_fixtures",)

GUILD = 1
ACTOR = 2


async def increment(storage: SQLiteStorage) -> None:
    async with storage.transaction():
        current = (await storage.guild_settings.get_all(GUILD)).get("counter", 0)
        await asyncio.sleep(0)  # let every other coroutine run between the read and the write
        await storage.guild_settings.set(GUILD, "counter", current + 1, actor_id=ACTOR)


async def test_transactions_of_many_coroutines_do_not_interleave(storage: SQLiteStorage) -> None:
    await asyncio.gather(*(increment(storage) for _ in range(50)))
    assert await storage.guild_settings.get_all(GUILD) == {"counter": 50}
    assert len(await storage.guild_settings.audit(GUILD, limit=100)) == 50


async def test_a_rolled_back_transaction_does_not_take_other_writes_with_it(storage: SQLiteStorage) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def failing_transaction() -> None:
        async with storage.transaction():
            await storage.guild_settings.set(GUILD, "doomed", 1, actor_id=ACTOR)
            inside.set()
            await release.wait()
            raise RuntimeError("abort")

    failing = asyncio.create_task(failing_transaction())
    await inside.wait()
    other_write = asyncio.create_task(storage.guild_settings.set(GUILD, "kept", 2, actor_id=ACTOR))
    await asyncio.sleep(0.01)
    assert not other_write.done()  # it waits for the open transaction instead of joining it
    release.set()
    with pytest.raises(RuntimeError, match="abort"):
        await failing
    assert await other_write is True
    assert await storage.guild_settings.get_all(GUILD) == {"kept": 2}


async def test_cancelling_a_transaction_rolls_it_back_and_frees_the_storage(storage: SQLiteStorage) -> None:
    inside = asyncio.Event()

    async def cancelled_transaction() -> None:
        async with storage.transaction():
            await storage.guild_settings.set(GUILD, "doomed", 1, actor_id=ACTOR)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(cancelled_transaction())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(storage.guild_settings.set(GUILD, "after", 1, actor_id=ACTOR), timeout=5)
    assert await storage.guild_settings.get_all(GUILD) == {"after": 1}


async def test_nested_transactions_are_savepoints(storage: SQLiteStorage) -> None:
    async def failing_inner() -> None:
        async with storage.transaction():
            await storage.guild_settings.set(GUILD, "inner", 1, actor_id=ACTOR)
            raise RuntimeError

    async with storage.transaction():
        await storage.guild_settings.set(GUILD, "outer", 1, actor_id=ACTOR)
        with pytest.raises(RuntimeError):
            await failing_inner()
        async with storage.transaction():
            await storage.guild_settings.set(GUILD, "inner_kept", 1, actor_id=ACTOR)
    assert await storage.guild_settings.get_all(GUILD) == {"outer": 1, "inner_kept": 1}


async def test_two_connections_to_one_file_wait_for_each_other(db_path: Path) -> None:
    async with SQLiteStorage(SQLiteURL(db_path)) as first, SQLiteStorage(SQLiteURL(db_path)) as second:

        async def writer(storage: SQLiteStorage, prefix: str) -> None:
            for index in range(20):
                async with storage.transaction():
                    await storage.guild_settings.set(GUILD, f"{prefix}{index}", index, actor_id=ACTOR)
                    await asyncio.sleep(0)

        await asyncio.gather(writer(first, "a"), writer(second, "b"), increment(first), increment(second))
        values = await first.guild_settings.get_all(GUILD)
    assert len(values) == 41
    assert values["counter"] == 2


async def test_ending_a_transaction_completes_even_when_cancelled_meanwhile() -> None:
    finished = asyncio.Event()

    async def slow_commit() -> None:
        await asyncio.sleep(0.02)
        finished.set()

    task = asyncio.create_task(_uncancellable(slow_commit()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # the cancellation surfaced only after the work was done
