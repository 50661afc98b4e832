from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from bot.crypto import KeyRing, binding
from bot.storage import SQLiteStorage, SQLiteURL, UserRecord
from bot.storage.sql import SQLStorage

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

PLAINTEXT_KEY = "s3cr3t-horde-api-key-0123456789"


def user(ring: KeyRing, discord_id: int = 1, key: str = PLAINTEXT_KEY, name: str = "alice#1") -> UserRecord:
    return UserRecord(
        discord_id=discord_id,
        encrypted_api_key=ring.encrypt(key, bound_to=binding("user", discord_id)),
        horde_user_id=10,
        horde_username=name,
    )


async def test_crud(storage: SQLStorage[Any], ring: KeyRing) -> None:
    assert await storage.users.get(1) is None
    created = await storage.users.upsert(user(ring))
    assert await storage.users.get(1) == created
    assert ring.decrypt(created.encrypted_api_key, bound_to=binding("user", 1)) == PLAINTEXT_KEY

    changed = await storage.users.upsert(user(ring, key="new-key", name="alice#2"))
    stored = await storage.users.get(1)
    assert stored == changed
    assert stored.horde_username == "alice#2"
    assert ring.decrypt(stored.encrypted_api_key, bound_to=binding("user", 1)) == "new-key"

    assert await storage.users.delete(1) is True
    assert await storage.users.get(1) is None
    assert await storage.users.delete(1) is False


async def test_upsert_keeps_created_at_and_stamps_updated_at(
    storage: SQLStorage[Any], ring: KeyRing, clock: Any
) -> None:
    first = await storage.users.upsert(user(ring))
    second = await storage.users.upsert(user(ring, name="renamed"))
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert second.updated_at == clock.now


async def test_update_encrypted_keys(storage: SQLStorage[Any], ring: KeyRing) -> None:
    for discord_id in (1, 2, 3):
        await storage.users.upsert(user(ring, discord_id=discord_id, key=f"key-{discord_id}"))
    await storage.users.update_encrypted_keys(
        {
            1: ring.encrypt("one", bound_to=binding("user", 1)),
            3: ring.encrypt("three", bound_to=binding("user", 3)),
        }
    )
    users = [await storage.users.get(discord_id) for discord_id in (1, 2, 3)]
    decrypted = {
        r.discord_id: ring.decrypt(r.encrypted_api_key, bound_to=binding("user", r.discord_id))
        for r in users
        if r is not None
    }
    assert decrypted == {1: "one", 2: "key-2", 3: "three"}


async def test_plaintext_keys_are_refused(storage: SQLStorage[Any], ring: KeyRing) -> None:
    with pytest.raises(ValidationError, match="never a plaintext key"):
        UserRecord(discord_id=1, encrypted_api_key=PLAINTEXT_KEY, horde_user_id=1, horde_username="a")
    await storage.users.upsert(user(ring, discord_id=1, key="old"))
    with pytest.raises(ValueError, match="not a KeyRing token"):
        await storage.users.update_encrypted_keys({1: PLAINTEXT_KEY})
    stored = await storage.users.get(1)
    assert stored is not None
    assert ring.decrypt(stored.encrypted_api_key, bound_to=binding("user", 1)) == "old"


def test_user_record_repr_hides_the_encrypted_key(ring: KeyRing) -> None:
    record = user(ring)
    assert record.encrypted_api_key not in repr(record)
    assert record.encrypted_api_key not in str(record)


async def test_discord_snowflakes_and_aware_timestamps_round_trip(
    storage: SQLStorage[Any], ring: KeyRing
) -> None:
    biggest = 2**63 - 1  # Discord ids are 64-bit; the columns must not truncate them
    created = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5)))
    record = UserRecord(
        discord_id=biggest,
        encrypted_api_key=ring.encrypt("k", bound_to=binding("user", biggest)),
        horde_user_id=biggest,
        horde_username="big",
        created_at=created,
    )
    await storage.users.upsert(record)
    stored = await storage.users.get(biggest)
    assert stored is not None
    assert (stored.discord_id, stored.horde_user_id) == (biggest, biggest)
    assert stored.created_at == created  # the same instant, to the microsecond
    assert stored.created_at.utcoffset() == timedelta(0)  # read back in UTC, never naive


async def test_the_stored_column_holds_only_ciphertext(persistent_backend: Backend, ring: KeyRing) -> None:
    async with persistent_backend.open() as storage:
        stored = await storage.users.upsert(user(ring))
    rows = await persistent_backend.query("SELECT encrypted_api_key FROM users WHERE discord_id = 1")
    assert rows == [(stored.encrypted_api_key,)]
    assert PLAINTEXT_KEY not in rows[0][0]


async def test_the_sqlite_files_hold_only_ciphertext(db_path: Path, ring: KeyRing) -> None:
    async with SQLiteStorage(SQLiteURL(db_path)) as storage:
        stored = await storage.users.upsert(user(ring))
        # While open, the row may still be in the WAL file: check every file of the database.
        raw = b"".join(path.read_bytes() for path in db_path.parent.iterdir())
        assert stored.encrypted_api_key.encode() in raw  # the check looks at the right bytes
        assert PLAINTEXT_KEY.encode() not in raw
