"""Keys at rest in a real SQLite storage: rotating every encrypted column, counting unbound tokens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.crypto import DecryptionError, KeyBindingError, KeyRing, binding, is_bound_token
from bot.storage import SQLiteStorage, SQLiteURL, UserRecord
from bot.storage.base import ConstraintError
from bot.storage.keys_at_rest import count_unbound, rotate_all
from bot.storage.sqlite import SQLiteEncryptedColumn
from bot.storage.sqlite_migrations import MIGRATIONS, Migration

BINDING_MIGRATION = 5

KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()
RING_1 = KeyRing.from_env_value(f"1:{KEY_1}")
RING_2 = KeyRing.from_env_value(f"2:{KEY_2},1:{KEY_1}")


def fernet_token(key: str, version: int, plaintext: str) -> str:
    """A token as the bot stored it before keys were bound to their row."""
    return f"v{version}:{Fernet(key).encrypt(plaintext.encode()).decode()}"


def user(discord_id: int, token: str) -> UserRecord:
    return UserRecord(discord_id=discord_id, encrypted_api_key=token, horde_user_id=1, horde_username="u")


def bound(ring: KeyRing, discord_id: int, plaintext: str) -> str:
    return ring.encrypt(plaintext, bound_to=binding("user", discord_id))


async def user_tokens(storage: SQLiteStorage) -> dict[int, str]:
    return {int(key): token for key, token in (await storage.users.api_key_column.read_tokens()).items()}


async def test_rotate_all_re_encrypts_every_user_key() -> None:
    async with SQLiteStorage(SQLiteURL(None)) as storage:
        for discord_id in range(1, 6):
            await storage.users.upsert(user(discord_id, bound(RING_1, discord_id, f"key-{discord_id}")))
        await storage.users.upsert(user(6, bound(RING_2, 6, "key-6")))

        assert await rotate_all(storage, RING_2) == 5
        tokens = await user_tokens(storage)
        assert all(token.startswith("a2:") for token in tokens.values())
        decrypted = {d: RING_2.decrypt(t, bound_to=binding("user", d)) for d, t in tokens.items()}
        assert decrypted == {d: f"key-{d}" for d in range(1, 7)}
        assert await rotate_all(storage, RING_2) == 0


async def test_rotate_all_is_all_or_nothing() -> None:
    stranger = KeyRing.from_env_value(f"1:{Fernet.generate_key().decode()}")
    async with SQLiteStorage(SQLiteURL(None)) as storage:
        await storage.users.upsert(user(1, bound(RING_1, 1, "a")))
        await storage.users.upsert(user(2, bound(stranger, 2, "b")))  # written with a lost key
        before = await user_tokens(storage)
        with pytest.raises(DecryptionError, match="key version 1"):
            await rotate_all(storage, RING_2)
        assert await user_tokens(storage) == before


async def test_rows_stored_before_binding_stay_readable_and_rotation_binds_them(tmp_path: Path) -> None:
    url = SQLiteURL(tmp_path / "bot.sqlite3")
    before_binding = tuple(m for m in MIGRATIONS if m.number < BINDING_MIGRATION)
    async with SQLiteStorage(url, migrations=before_binding) as old_bot:
        for discord_id in (1, 2):
            await old_bot.users.upsert(user(discord_id, fernet_token(KEY_1, 1, f"key-{discord_id}")))

    async with SQLiteStorage(url) as storage:  # migration 5 runs: the rows are left as they are
        tokens = await user_tokens(storage)
        assert await count_unbound(storage) == 2
        assert {d: RING_1.decrypt(t, bound_to=binding("user", d)) for d, t in tokens.items()} == {
            1: "key-1",
            2: "key-2",
        }
        # From now on the database takes no unbound token, not even one moved from another row.
        with pytest.raises(ConstraintError, match="bound to their row"):
            await storage.users.update_encrypted_keys({1: tokens[2]})
        with pytest.raises(ConstraintError, match="bound to their row"):
            await storage.users.upsert(user(3, fernet_token(KEY_1, 1, "key-3")))

        assert await rotate_all(storage, RING_1) == 2  # python -m bot rotate-key
        tokens = await user_tokens(storage)
        assert await count_unbound(storage) == 0
        assert all(is_bound_token(token) for token in tokens.values())
        assert RING_1.decrypt(tokens[2], bound_to=binding("user", 2)) == "key-2"
        await storage.users.update_encrypted_keys({1: tokens[2]})  # bound: stored, and refused on read
        with pytest.raises(KeyBindingError):
            RING_1.decrypt((await user_tokens(storage))[1], bound_to=binding("user", 1))


class StorageWithSponsorKeys(SQLiteStorage):
    """How a future encrypted column (a guild's sponsor key) joins the rotation."""

    def __init__(self, path: Path) -> None:
        sponsor = Migration(
            MIGRATIONS[-1].number + 1,
            "sponsor_keys",
            "CREATE TABLE sponsor_keys (guild_id INTEGER PRIMARY KEY, encrypted_key TEXT NOT NULL) STRICT;",
        )
        super().__init__(SQLiteURL(path), migrations=(*MIGRATIONS, sponsor))
        self.sponsor_column = SQLiteEncryptedColumn(
            self._db, "sponsor_keys", "encrypted_key", "guild_id", "guild"
        )

    async def add_sponsor(self, guild_id: int, token: str) -> None:
        await self._db.execute("INSERT INTO sponsor_keys VALUES (?, ?)", (guild_id, token))

    @property
    def encrypted_columns(self) -> tuple[SQLiteEncryptedColumn, ...]:
        return (*super().encrypted_columns, self.sponsor_column)  # type: ignore[return-value]


def guild_token(ring: KeyRing, guild_id: int, plaintext: str) -> str:
    return ring.encrypt(plaintext, bound_to=binding("guild", guild_id))


async def test_rotate_all_covers_every_encrypted_column_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with StorageWithSponsorKeys(path) as storage:
        await storage.users.upsert(user(1, bound(RING_1, 1, "user-key")))
        await storage.add_sponsor(10, guild_token(RING_1, 10, "sponsor-key"))
        await storage.add_sponsor(11, "a1:garbage")
        with pytest.raises(DecryptionError):
            await rotate_all(storage, RING_2)
        # The user row was rotated before the bad sponsor row failed: it must be rolled back too.
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT encrypted_api_key FROM users").fetchone()[0].startswith("a1:")

        await storage.sponsor_column.write_tokens({11: guild_token(RING_1, 11, "other-sponsor")})
        assert await rotate_all(storage, RING_2) == 3
        sponsors = await storage.sponsor_column.read_tokens()
        decrypted = {k: RING_2.decrypt(v, bound_to=binding("guild", k)) for k, v in sponsors.items()}
        assert decrypted == {10: "sponsor-key", 11: "other-sponsor"}
        assert all(token.startswith("a2:") for token in sponsors.values())
