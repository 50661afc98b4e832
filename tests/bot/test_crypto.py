from __future__ import annotations

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
    generate_key_value,
    is_bound_token,
    is_encrypted_token,
)

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
