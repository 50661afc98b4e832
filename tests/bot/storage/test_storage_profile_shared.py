"""A member's /user opt-in (``users.profile_shared``, migration ``user_profile_shared``): off by
default, for members who logged in before it existed too, changed only by ``set_profile_shared``.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from test_storage_users import user

from bot.crypto import KeyRing
from bot.storage.sql import SQLStorage

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)


async def test_sharing_is_off_until_the_member_turns_it_on(storage: SQLStorage[Any], ring: KeyRing) -> None:
    created = await storage.users.upsert(user(ring))
    assert created.profile_shared is False

    assert await storage.users.set_profile_shared(1, True) is True
    stored = await storage.users.get(1)
    assert stored is not None
    assert stored.profile_shared is True

    assert await storage.users.set_profile_shared(1, False) is True
    stored = await storage.users.get(1)
    assert stored is not None
    assert stored.profile_shared is False


async def test_a_member_without_a_row_has_nothing_to_share(storage: SQLStorage[Any]) -> None:
    assert await storage.users.set_profile_shared(42, True) is False
    assert await storage.users.get(42) is None


async def test_a_new_login_keeps_the_members_choice(storage: SQLStorage[Any], ring: KeyRing) -> None:
    await storage.users.upsert(user(ring))
    await storage.users.set_profile_shared(1, True)
    # A record read before the change (or a fresh /login) is written back without touching it.
    await storage.users.upsert(user(ring, key="a-new-key", name="alice#9"))

    stored = await storage.users.get(1)
    assert stored is not None
    assert (stored.profile_shared, stored.horde_username) == (True, "alice#9")


async def test_sharing_is_per_member(storage: SQLStorage[Any], ring: KeyRing) -> None:
    await storage.users.upsert(user(ring, discord_id=1))
    await storage.users.upsert(user(ring, discord_id=2))
    await storage.users.set_profile_shared(2, True)

    records = [await storage.users.get(discord_id) for discord_id in (1, 2)]
    assert [record.profile_shared if record else None for record in records] == [False, True]


async def test_members_who_logged_in_before_the_migration_start_private(
    persistent_backend: Backend, ring: KeyRing
) -> None:
    names = [migration.name for migration in persistent_backend.migrations]
    older = persistent_backend.migrations[: names.index("user_profile_shared")]
    async with persistent_backend.open(migrations=older):
        pass
    token = user(ring).encrypted_api_key
    await persistent_backend.query(
        "INSERT INTO users (discord_id, encrypted_api_key, horde_user_id, horde_username, created_at, "
        f"updated_at) VALUES (1, '{token}', 10, 'alice#1', '2024-01-01T00:00:00+00:00', "
        "'2024-01-01T00:00:00+00:00')"
    )

    async with persistent_backend.open() as storage:
        before = await storage.users.get(1)
        await storage.users.set_profile_shared(1, True)
        after = await storage.users.get(1)

    assert before is not None
    assert before.profile_shared is False
    assert after is not None
    assert after.profile_shared is True
