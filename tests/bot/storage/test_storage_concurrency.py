from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from bot.crypto import KeyRing, binding
from bot.storage import UserRecord
from bot.storage.sql import SQLStorage, uncancellable

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

GUILD = 1
ACTOR = 2


async def increment(storage: SQLStorage[Any]) -> None:
    async with storage.transaction():
        current = (await storage.guild_settings.get_all(GUILD)).get("counter", 0)
        await asyncio.sleep(0)  # let every other coroutine run between the read and the write
        await storage.guild_settings.set(GUILD, "counter", current + 1, actor_id=ACTOR)


async def test_transactions_of_many_coroutines_do_not_interleave(storage: SQLStorage[Any]) -> None:
    await asyncio.gather(*(increment(storage) for _ in range(50)))
    assert await storage.guild_settings.get_all(GUILD) == {"counter": 50}
    assert len(await storage.guild_settings.audit(GUILD, limit=100)) == 50


async def test_a_rolled_back_transaction_does_not_take_other_writes_with_it(storage: SQLStorage[Any]) -> None:
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
    try:
        assert not other_write.done()  # it waits for the open transaction instead of joining it
    finally:
        release.set()  # also when the check fails: close() would wait for the transaction forever
    with pytest.raises(RuntimeError, match="abort"):
        await failing
    assert await other_write is True
    assert await storage.guild_settings.get_all(GUILD) == {"kept": 2}


async def test_cancelling_a_transaction_rolls_it_back_and_frees_the_storage(storage: SQLStorage[Any]) -> None:
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


async def test_nested_transactions_are_savepoints(storage: SQLStorage[Any]) -> None:
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


async def test_two_storages_on_one_database_wait_for_each_other(persistent_backend: Backend) -> None:
    # Two storages stand for two processes: only the database can keep them from interleaving.
    async with persistent_backend.open() as first, persistent_backend.open() as second:

        async def writer(storage: SQLStorage[Any], prefix: str) -> None:
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

    task = asyncio.create_task(uncancellable(slow_commit()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # the cancellation surfaced only after the work was done


async def test_a_single_write_waits_for_another_storages_transaction(
    persistent_backend: Backend, ring: KeyRing
) -> None:
    def login(key: str) -> UserRecord:
        return UserRecord(
            discord_id=1,
            encrypted_api_key=ring.encrypt(key, bound_to=binding("user", 1)),
            horde_user_id=2,
            horde_username="u",
        )

    async with persistent_backend.open() as first, persistent_backend.open() as second:
        await first.users.upsert(login("old key"))
        inside = asyncio.Event()
        release = asyncio.Event()

        async def read_then_rewrite() -> None:  # as a key rotation does
            async with first.transaction():
                tokens = await first.users.api_key_column.read_tokens()
                inside.set()
                await release.wait()
                await first.users.api_key_column.write_tokens(
                    {row: ring.rotate(token, bound_to=binding("user", row)) for row, token in tokens.items()}
                )

        rewriting = asyncio.create_task(read_then_rewrite())
        await inside.wait()
        relogin = asyncio.create_task(second.users.upsert(login("new key")))
        await asyncio.sleep(0.05)
        try:
            assert not relogin.done()  # it waits for the transaction instead of being overwritten by it
        finally:
            release.set()
        await rewriting
        await relogin
        stored = await second.users.get(1)
    assert stored is not None
    assert ring.decrypt(stored.encrypted_api_key, bound_to=binding("user", 1)) == "new key"
