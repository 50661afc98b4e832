from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.crypto import (
    DecryptionError,
    KeyBindingError,
    KeyRing,
    KeyRingError,
    binding,
    count_unbound,
    generate_key_value,
    is_bound_token,
    is_encrypted_token,
    rotate_all,
)
from bot.storage import SQLiteStorage, SQLiteURL, UserRecord
from bot.storage.sql import ConstraintError
from bot.storage.sqlite import SQLiteEncryptedColumn
from bot.storage.sqlite_migrations import MIGRATIONS, Migration

BINDING_MIGRATION = 5

KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()
RING_1 = KeyRing.from_env_value(f"1:{KEY_1}")
RING_2 = KeyRing.from_env_value(f"2:{KEY_2},1:{KEY_1}")


ALICE = binding("user", 1)
BOB = binding("user", 2)


def fernet_token(key: str, version: int, plaintext: str) -> str:
    """A token as the bot stored it before keys were bound to their row."""
    return f"v{version}:{Fernet(key).encrypt(plaintext.encode()).decode()}"


@settings(max_examples=100)
@given(st.text(), st.integers(min_value=1, max_value=2**63 - 1))
def test_round_trip(plaintext: str, discord_id: int) -> None:
    owner = binding("user", discord_id)
    token = RING_2.encrypt(plaintext, bound_to=owner)
    assert token.startswith("a2:")
    assert is_encrypted_token(token)
    assert is_bound_token(token)
    assert RING_2.decrypt(token, bound_to=owner) == plaintext


def test_ciphertext_hides_the_plaintext_and_differs_each_time() -> None:
    plaintext = "my-horde-api-key-1234567"
    first, second = RING_1.encrypt(plaintext, bound_to=ALICE), RING_1.encrypt(plaintext, bound_to=ALICE)
    assert plaintext not in first
    assert first != second
    assert RING_1.decrypt(first, bound_to=ALICE) == RING_1.decrypt(second, bound_to=ALICE) == plaintext


def test_a_token_moved_to_another_row_is_refused() -> None:
    alices = RING_1.encrypt("alices-key", bound_to=ALICE)
    with pytest.raises(KeyBindingError) as info:
        RING_1.decrypt(alices, bound_to=BOB)  # what bob's row would hold if the token were copied there
    assert str(info.value).startswith("stored API key of user:2 fails authentication (key version 1)")
    assert "alices-key" not in str(info.value)
    # A user's token is not a guild's either, even for the same number.
    with pytest.raises(KeyBindingError):
        RING_1.decrypt(alices, bound_to=binding("guild", 1))


def test_a_tampered_token_is_rejected() -> None:
    token = RING_1.encrypt("secret", bound_to=ALICE)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    with pytest.raises(KeyBindingError, match=r"fails authentication \(key version 1\)"):
        RING_1.decrypt(tampered, bound_to=ALICE)
    with pytest.raises(DecryptionError, match=r"cannot be decrypted .* \(key version 1\)"):
        RING_1.decrypt("a1:AAAA", bound_to=ALICE)  # too short to hold a nonce and a tag


def test_a_wrong_secret_fails_clearly_without_leaking() -> None:
    other_key = Fernet.generate_key().decode()
    wrong = KeyRing.from_env_value(f"1:{other_key}")
    for token in (RING_1.encrypt("the-plaintext", bound_to=ALICE), fernet_token(KEY_1, 1, "the-plaintext")):
        with pytest.raises(DecryptionError) as info:
            wrong.decrypt(token, bound_to=ALICE)
        message = str(info.value)
        assert "key version 1" in message
        assert "HORDE_BOT_SECRET_KEYS" in message
        for secret in (token, token[3:], other_key, KEY_1, "the-plaintext"):
            assert secret not in message
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__


def test_a_token_of_an_unknown_version_or_shape_is_rejected() -> None:
    with pytest.raises(DecryptionError, match="key version 2, which HORDE_BOT_SECRET_KEYS does not contain"):
        RING_1.decrypt(RING_2.encrypt("x", bound_to=ALICE), bound_to=ALICE)
    for not_a_token in ("plaintext-key", "v0:abc", "vx:abc", "v1:", "2:abc", "b1:abc", "a0:abc"):
        assert not is_encrypted_token(not_a_token)
        with pytest.raises(DecryptionError, match="not an encrypted token"):
            RING_1.decrypt(not_a_token, bound_to=ALICE)


def test_a_token_stored_before_binding_still_decrypts_and_rotation_binds_it() -> None:
    legacy = fernet_token(KEY_1, 1, "old-key")
    assert is_encrypted_token(legacy)
    assert not is_bound_token(legacy)
    assert RING_1.decrypt(legacy, bound_to=ALICE) == "old-key"  # unbound: any row reads it
    assert RING_1.needs_rotation(legacy)  # even with the current key version

    bound = RING_1.rotate(legacy, bound_to=ALICE)
    assert bound.startswith("a1:")
    assert not RING_1.needs_rotation(bound)
    assert RING_1.decrypt(bound, bound_to=ALICE) == "old-key"
    with pytest.raises(KeyBindingError):
        RING_1.decrypt(bound, bound_to=BOB)


def test_a_new_key_version_still_decrypts_old_tokens_until_rotated() -> None:
    old = RING_1.encrypt("key", bound_to=ALICE)
    assert RING_2.decrypt(old, bound_to=ALICE) == "key"
    assert RING_2.current_version == 2
    assert RING_2.needs_rotation(old)
    rotated = RING_2.rotate(old, bound_to=ALICE)
    assert rotated.startswith("a2:")
    assert not RING_2.needs_rotation(rotated)
    assert RING_2.decrypt(rotated, bound_to=ALICE) == "key"
    assert RING_2.rotate(rotated, bound_to=ALICE) is rotated
    with pytest.raises(DecryptionError):
        RING_1.decrypt(rotated, bound_to=ALICE)


def test_the_highest_version_encrypts_whatever_the_order() -> None:
    ring = KeyRing.from_env_value(f" 1:{KEY_1} , 3:{KEY_2} ")
    assert ring.current_version == 3
    assert ring.versions == (3, 1)
    assert ring.encrypt("x", bound_to=ALICE).startswith("a3:")


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
    assert ring.decrypt(ring.encrypt("x", bound_to=ALICE), bound_to=ALICE) == "x"
    assert generate_key_value(4).startswith("4:")
    assert generate_key_value() != value
    with pytest.raises(ValueError, match="positive"):
        generate_key_value(0)


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
