from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.crypto import (
    DecryptionError,
    KeyRing,
    KeyRingError,
    generate_key_value,
    is_encrypted_token,
    rotate_all,
)
from bot.storage import SQLiteStorage, SQLiteURL, UserRecord
from bot.storage.sqlite import SQLiteEncryptedColumn
from bot.storage.sqlite_migrations import MIGRATIONS, Migration

KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()
RING_1 = KeyRing.from_env_value(f"1:{KEY_1}")
RING_2 = KeyRing.from_env_value(f"2:{KEY_2},1:{KEY_1}")


@settings(max_examples=100)
@given(st.text())
def test_round_trip(plaintext: str) -> None:
    token = RING_2.encrypt(plaintext)
    assert token.startswith("v2:")
    assert is_encrypted_token(token)
    assert RING_2.decrypt(token) == plaintext


def test_ciphertext_hides_the_plaintext_and_differs_each_time() -> None:
    plaintext = "my-horde-api-key-1234567"
    first, second = RING_1.encrypt(plaintext), RING_1.encrypt(plaintext)
    assert plaintext not in first
    assert first != second
    assert RING_1.decrypt(first) == RING_1.decrypt(second) == plaintext


def test_a_tampered_token_is_rejected() -> None:
    token = RING_1.encrypt("secret")
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    with pytest.raises(DecryptionError, match=r"cannot be decrypted .* \(key version 1\)"):
        RING_1.decrypt(tampered)


def test_a_wrong_secret_fails_clearly_without_leaking() -> None:
    token = RING_1.encrypt("the-plaintext")
    other_key = Fernet.generate_key().decode()
    wrong = KeyRing.from_env_value(f"1:{other_key}")
    with pytest.raises(DecryptionError) as info:
        wrong.decrypt(token)
    message = str(info.value)
    assert message == (
        "stored API key cannot be decrypted with the configured HORDE_BOT_SECRET_KEYS (key version 1)"
    )
    for secret in (token, token[3:], other_key, KEY_1, "the-plaintext"):
        assert secret not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_a_token_of_an_unknown_version_or_shape_is_rejected() -> None:
    with pytest.raises(DecryptionError, match="key version 2, which HORDE_BOT_SECRET_KEYS does not contain"):
        RING_1.decrypt(RING_2.encrypt("x"))
    for not_a_token in ("plaintext-key", "v0:abc", "vx:abc", "v1:", "2:abc"):
        assert not is_encrypted_token(not_a_token)
        with pytest.raises(DecryptionError, match="not an encrypted token"):
            RING_1.decrypt(not_a_token)


def test_a_new_key_version_still_decrypts_old_tokens_until_rotated() -> None:
    old = RING_1.encrypt("key")
    assert RING_2.decrypt(old) == "key"
    assert RING_2.current_version == 2
    assert RING_2.needs_rotation(old)
    rotated = RING_2.rotate(old)
    assert rotated.startswith("v2:")
    assert not RING_2.needs_rotation(rotated)
    assert RING_2.decrypt(rotated) == "key"
    assert RING_2.rotate(rotated) is rotated
    with pytest.raises(DecryptionError):
        RING_1.decrypt(rotated)


def test_the_highest_version_encrypts_whatever_the_order() -> None:
    ring = KeyRing.from_env_value(f" 1:{KEY_1} , 3:{KEY_2} ")
    assert ring.current_version == 3
    assert ring.versions == (3, 1)
    assert ring.encrypt("x").startswith("v3:")


def test_repr_and_str_show_no_key_material() -> None:
    for text in (repr(RING_2), str(RING_2)):
        assert text == "KeyRing(versions=[2, 1], current=2)"
        assert KEY_1 not in text
        assert KEY_2 not in text
    assert set(RING_2.secret_material()) == {KEY_1, KEY_2}


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (KEY_1, "entry 1 must look like '<version>:<fernet key>'"),
        ("1:", "entry 1 must look like"),
        (f"1:{KEY_1},,", "entry 2 must look like"),
        (f":{KEY_1}", "entry 1: the version must be a positive integer"),
        (f"0:{KEY_1}", "entry 1: the version must be a positive integer"),
        (f"-1:{KEY_1}", "entry 1: the version must be a positive integer"),
        (f"v1:{KEY_1}", "entry 1: the version must be a positive integer"),
        (f"1:{KEY_1},1:{KEY_2}", "key version 1 is listed more than once"),
        (f"2:{KEY_1},1:{KEY_1[:-4]}", "key version 1 is not a valid Fernet key"),
        ("1:not-a-fernet-key-at-all", "key version 1 is not a valid Fernet key"),
    ],
)
def test_bad_secret_key_values_are_rejected_clearly(value: str, detail: str) -> None:
    with pytest.raises(KeyRingError) as info:
        KeyRing.from_env_value(value)
    assert detail in info.value.detail
    assert str(info.value).startswith("HORDE_BOT_SECRET_KEYS: ")
    assert KEY_1 not in str(info.value)
    assert KEY_1[:-4] not in str(info.value)
    assert "not-a-fernet-key-at-all" not in str(info.value)
    assert info.value.__cause__ is None


def test_generate_key_value() -> None:
    value = generate_key_value()
    assert value.startswith("1:")
    ring = KeyRing.from_env_value(value)
    assert ring.decrypt(ring.encrypt("x")) == "x"
    assert generate_key_value(4).startswith("4:")
    assert generate_key_value() != value
    with pytest.raises(ValueError, match="positive"):
        generate_key_value(0)


def user(discord_id: int, token: str) -> UserRecord:
    return UserRecord(discord_id=discord_id, encrypted_api_key=token, horde_user_id=1, horde_username="u")


async def test_rotate_all_re_encrypts_every_user_key() -> None:
    async with SQLiteStorage(SQLiteURL(None)) as storage:
        for discord_id in range(1, 6):
            await storage.users.upsert(user(discord_id, RING_1.encrypt(f"key-{discord_id}")))
        await storage.users.upsert(user(6, RING_2.encrypt("key-6")))

        assert await rotate_all(storage, RING_2) == 5
        tokens = {r.discord_id: r.encrypted_api_key async for r in storage.users.iter_all()}
        assert all(token.startswith("v2:") for token in tokens.values())
        assert {d: RING_2.decrypt(t) for d, t in tokens.items()} == {d: f"key-{d}" for d in range(1, 7)}
        assert await rotate_all(storage, RING_2) == 0


async def test_rotate_all_is_all_or_nothing() -> None:
    stranger = KeyRing.from_env_value(f"1:{Fernet.generate_key().decode()}")
    async with SQLiteStorage(SQLiteURL(None)) as storage:
        await storage.users.upsert(user(1, RING_1.encrypt("a")))
        await storage.users.upsert(user(2, stranger.encrypt("b")))  # written with a lost key
        before = [r async for r in storage.users.iter_all()]
        with pytest.raises(DecryptionError, match="key version 1"):
            await rotate_all(storage, RING_2)
        assert [r async for r in storage.users.iter_all()] == before


class StorageWithSponsorKeys(SQLiteStorage):
    """How a future encrypted column (a guild's sponsor key) joins the rotation."""

    def __init__(self, path: Path) -> None:
        sponsor = Migration(
            len(MIGRATIONS) + 1,
            "sponsor_keys",
            "CREATE TABLE sponsor_keys (guild_id INTEGER PRIMARY KEY, encrypted_key TEXT NOT NULL) STRICT;",
        )
        super().__init__(SQLiteURL(path), migrations=(*MIGRATIONS, sponsor))
        self.sponsor_column = SQLiteEncryptedColumn(self._db, "sponsor_keys", "encrypted_key", "guild_id")

    async def add_sponsor(self, guild_id: int, token: str) -> None:
        await self._db.execute("INSERT INTO sponsor_keys VALUES (?, ?)", (guild_id, token))

    @property
    def encrypted_columns(self) -> tuple[SQLiteEncryptedColumn, ...]:
        return (*super().encrypted_columns, self.sponsor_column)  # type: ignore[return-value]


async def test_rotate_all_covers_every_encrypted_column_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with StorageWithSponsorKeys(path) as storage:
        await storage.users.upsert(user(1, RING_1.encrypt("user-key")))
        await storage.add_sponsor(10, RING_1.encrypt("sponsor-key"))
        await storage.add_sponsor(11, "v1:garbage")
        with pytest.raises(DecryptionError):
            await rotate_all(storage, RING_2)
        # The user row was rotated before the bad sponsor row failed: it must be rolled back too.
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT encrypted_api_key FROM users").fetchone()[0].startswith("v1:")

        await storage.sponsor_column.write_tokens({11: RING_1.encrypt("other-sponsor")})
        assert await rotate_all(storage, RING_2) == 3
        sponsors = await storage.sponsor_column.read_tokens()
        assert {k: RING_2.decrypt(v) for k, v in sponsors.items()} == {10: "sponsor-key", 11: "other-sponsor"}
        assert all(token.startswith("v2:") for token in sponsors.values())
