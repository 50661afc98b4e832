"""Keys at rest across every encrypted column of a storage: rotating them, and checking the key ring.

The column-by-column work of ``python -m bot rotate-key`` and of the start-up check. The cipher is
``bot.crypto``; which rows hold tokens, and whose they are, is each backend's
:class:`~bot.storage.base.EncryptedColumn`.
"""

from __future__ import annotations

from typing import Final

from bot.crypto import ENV_VAR, DecryptionError, KeyRing, is_bound_token
from bot.storage.base import Storage


async def rotate_all(storage: Storage, keyring: KeyRing) -> int:
    """Re-encrypt every stored secret with the current key version, bound to its row, in one transaction.

    Returns how many values were re-encrypted. Any undecryptable value (or a bound one on the wrong
    row) aborts the whole rotation, leaving the database untouched. An unbound token is bound to
    the row it is on: rotate once the database is as it should be.
    """
    rotated = 0
    async with storage.transaction():
        for column in storage.encrypted_columns:
            tokens = await column.read_tokens()
            updates = {
                row: keyring.rotate(token, bound_to=column.bound_to(row))
                for row, token in tokens.items()
                if keyring.needs_rotation(token)
            }
            if updates:
                # Only where the token is still the one read: a login meanwhile keeps its new key.
                await column.write_tokens(updates, expected=tokens)
                rotated += len(updates)
    return rotated


async def count_unbound(storage: Storage) -> int:
    """How many stored tokens are not bound to their row yet (``rotate_all`` binds them)."""
    total = 0
    for column in storage.encrypted_columns:
        total += sum(not is_bound_token(token) for token in (await column.read_tokens()).values())
    return total


CHECK_SAMPLE: Final = 50
"""Tokens checked per encrypted column at start-up: enough to tell a wrong secret from a stale row."""


class WrongSecretError(DecryptionError):
    """None of the stored secrets can be decrypted: ``HORDE_BOT_SECRET_KEYS`` is not the secret
    they were encrypted with."""


async def check_keyring(storage: Storage, keyring: KeyRing) -> int:
    """Fail fast, before serving anyone, when ``keyring`` cannot read what is stored.

    Decrypts up to :data:`CHECK_SAMPLE` tokens of each encrypted column. Raises
    :class:`WrongSecretError` when some were checked and none could be read (every member would
    otherwise get "log in again" one by one); returns how many of them could not be read, for the
    caller to warn about (rows left by a key version that was dropped).
    """
    checked = unreadable = 0
    for column in storage.encrypted_columns:
        tokens = list((await column.read_tokens()).items())[:CHECK_SAMPLE]
        for row, token in tokens:
            checked += 1
            try:
                keyring.decrypt(token, bound_to=column.bound_to(row))
            except DecryptionError:
                unreadable += 1
    if checked and unreadable == checked:
        raise WrongSecretError(
            f"none of the {checked} stored API key(s) checked can be decrypted with {ENV_VAR} "
            f"(key versions {list(keyring.versions)}); set the secret they were encrypted with"
        )
    return unreadable
