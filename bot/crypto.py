"""Authenticated encryption of API keys at rest, with a versioned, rotatable key set.

``HORDE_BOT_SECRET_KEYS`` holds ``"<version>:<fernet key>"`` entries separated by commas, e.g.
``"2:<new key>,1:<old key>"``. The highest version encrypts; every listed version decrypts.
A stored token is ``"v<version>:<fernet token>"``, so decryption picks the right key directly and
``rotate_all`` knows which rows still use an older key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from bot.storage.base import Storage

ENV_VAR: Final = "HORDE_BOT_SECRET_KEYS"

_TOKEN_RE: Final = re.compile(r"v([1-9][0-9]{0,8}):(\S+)")


class CryptoError(Exception):
    """Base class of the errors of this module; messages never contain key material or tokens."""


class KeyRingError(CryptoError, ValueError):
    """``HORDE_BOT_SECRET_KEYS`` is malformed. ``detail`` says how, without quoting the value."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{ENV_VAR}: {detail}")
        self.detail = detail


class DecryptionError(CryptoError):
    """A stored token cannot be decrypted with the configured keys."""


def is_encrypted_token(value: str) -> bool:
    """Whether ``value`` has the shape of a token produced by :meth:`KeyRing.encrypt`."""
    return _TOKEN_RE.fullmatch(value) is not None


def generate_key_value(version: int = 1) -> str:
    """A fresh ``"<version>:<fernet key>"`` entry for ``HORDE_BOT_SECRET_KEYS``."""
    if version < 1:
        raise ValueError("key version must be a positive integer")
    return f"{version}:{Fernet.generate_key().decode('ascii')}"


class KeyRing:
    """The configured encryption keys. Its repr shows the versions only, never the keys."""

    __slots__ = ("_current", "_fernets", "_raw_keys")

    def __init__(self, keys: Mapping[int, str | bytes]) -> None:
        if not keys:
            raise KeyRingError("no keys given")
        fernets: dict[int, Fernet] = {}
        for version, key in keys.items():
            if version < 1:
                raise KeyRingError(f"key version {version} must be a positive integer")
            try:
                fernets[version] = Fernet(key)
            except (ValueError, TypeError):
                # Fernet's own message is generic, but chaining it would carry the key in the traceback.
                raise KeyRingError(
                    f"key version {version} is not a valid Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        self._fernets: Final = fernets
        self._current: Final = max(fernets)
        self._raw_keys: Final = tuple(
            key if isinstance(key, str) else key.decode("ascii") for key in keys.values()
        )

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """Parse ``"2:<key>,1:<key>"``; raises :class:`KeyRingError` naming the faulty entry."""
        entries = [entry.strip() for entry in value.split(",")]
        if entries == [""]:
            raise KeyRingError("is empty; expected '<version>:<fernet key>[,<version>:<fernet key>...]'")
        keys: dict[int, str] = {}
        for position, entry in enumerate(entries, start=1):
            version_text, sep, key = entry.partition(":")
            if not sep or not key.strip():
                raise KeyRingError(f"entry {position} must look like '<version>:<fernet key>'")
            version_text = version_text.strip()
            if not version_text.isascii() or not version_text.isdigit() or int(version_text) < 1:
                raise KeyRingError(f"entry {position}: the version must be a positive integer")
            version = int(version_text)
            if version in keys:
                raise KeyRingError(f"key version {version} is listed more than once")
            keys[version] = key.strip()
        return cls(keys)

    @property
    def current_version(self) -> int:
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        """The known versions, newest first."""
        return tuple(sorted(self._fernets, reverse=True))

    def secret_material(self) -> tuple[str, ...]:
        """The raw keys, only so the log redactor can mask them."""
        return self._raw_keys

    def __repr__(self) -> str:
        return f"KeyRing(versions={list(self.versions)}, current={self._current})"

    __str__ = __repr__

    def encrypt(self, plaintext: str) -> str:
        token = self._fernets[self._current].encrypt(plaintext.encode("utf-8"))
        return f"v{self._current}:{token.decode('ascii')}"

    def version_of(self, token: str) -> int:
        """The key version a stored token was encrypted with."""
        return self._split(token)[0]

    def decrypt(self, token: str) -> str:
        version, body = self._split(token)
        fernet = self._fernets.get(version)
        if fernet is None:
            raise DecryptionError(
                f"stored API key was encrypted with key version {version}, "
                f"which {ENV_VAR} does not contain (known versions: {list(self.versions)})"
            )
        try:
            return fernet.decrypt(body.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError(
                f"stored API key cannot be decrypted with the configured {ENV_VAR} (key version {version})"
            ) from None

    def needs_rotation(self, token: str) -> bool:
        return self.version_of(token) != self._current

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the current key (unchanged if it already uses it)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token))

    @staticmethod
    def _split(token: str) -> tuple[int, str]:
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise DecryptionError("stored API key is not an encrypted token ('v<version>:<token>')")
        return int(match.group(1)), match.group(2)


async def rotate_all(storage: Storage, keyring: KeyRing) -> int:
    """Re-encrypt every stored secret with the current key version, in one transaction.

    Returns how many values were re-encrypted. Any undecryptable value aborts the whole rotation,
    leaving the database untouched.
    """
    rotated = 0
    async with storage.transaction():
        for column in storage.encrypted_columns:
            tokens = await column.read_tokens()
            updates = {
                row: keyring.rotate(token) for row, token in tokens.items() if keyring.needs_rotation(token)
            }
            if updates:
                await column.write_tokens(updates)
                rotated += len(updates)
    return rotated


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
        tokens = list((await column.read_tokens()).values())[:CHECK_SAMPLE]
        for token in tokens:
            checked += 1
            try:
                keyring.decrypt(token)
            except DecryptionError:
                unreadable += 1
    if checked and unreadable == checked:
        raise WrongSecretError(
            f"none of the {checked} stored API key(s) checked can be decrypted with {ENV_VAR} "
            f"(key versions {list(keyring.versions)}); set the secret they were encrypted with"
        )
    return unreadable
