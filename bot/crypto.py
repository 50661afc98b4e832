"""Authenticated encryption of API keys at rest, bound to their row, with a versioned, rotatable key set.

``HORDE_BOT_SECRET_KEYS`` holds ``"<version>:<fernet key>"`` entries separated by commas, e.g.
``"2:<new key>,1:<old key>"``. The highest version encrypts; every listed version decrypts.

A stored token is ``"a<version>:<base64 of nonce, ciphertext and tag>"``: AES-256-GCM under a key
derived (HKDF-SHA256) from that version's entry, with the row's owner as associated data
(:func:`binding`: ``user:<discord id>`` for a member's key, ``guild:<guild id>`` for a sponsor key).
A token copied onto another row therefore fails authentication instead of lending one member's key
to another. Tokens written before keys were bound are Fernet tokens, ``"v<version>:<fernet token>"``:
they still decrypt, and ``rotate_all`` (``bot.storage.keys_at_rest``, ``python -m bot rotate-key``)
rewrites them bound to the row they are on. Since migration 5 the database refuses to store a new
unbound token.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENV_VAR: Final = "HORDE_BOT_SECRET_KEYS"

_TOKEN_RE: Final = re.compile(r"([av])([1-9][0-9]{0,8}):(\S+)")
BOUND: Final = "a"
"""The prefix of a token bound to its row (AES-GCM); ``v`` is an unbound (Fernet) token."""
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_HKDF_INFO: Final = b"horde-bot: API keys at rest, AES-256-GCM, bound to their row"
_AAD_PREFIX: Final = "horde-bot/"

BindingKind = Literal["user", "guild"]


def binding(kind: BindingKind, row: int | str) -> str:
    """Whose token it is: the associated data that ties a ciphertext to its row."""
    return f"{kind}:{row}"


class CryptoError(Exception):
    """Base class of the errors of this module; messages never contain key material or tokens."""


class KeyRingError(CryptoError, ValueError):
    """``HORDE_BOT_SECRET_KEYS`` is malformed. ``detail`` says how, without quoting the value."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{ENV_VAR}: {detail}")
        self.detail = detail


class DecryptionError(CryptoError):
    """A stored token cannot be decrypted with the configured keys."""


class KeyBindingError(DecryptionError):
    """A bound token fails authentication for the row it is on: moved from another row, altered, or
    encrypted with another secret of the same version."""


def is_encrypted_token(value: str) -> bool:
    """Whether ``value`` has the shape of a token produced by :meth:`KeyRing.encrypt` (or an older one)."""
    return _TOKEN_RE.fullmatch(value) is not None


def is_bound_token(value: str) -> bool:
    """Whether ``value`` is bound to its row (AES-GCM), not an older unbound Fernet token."""
    return value.startswith(BOUND) and is_encrypted_token(value)


def generate_key_value(version: int = 1) -> str:
    """A fresh ``"<version>:<fernet key>"`` entry for ``HORDE_BOT_SECRET_KEYS``."""
    if version < 1:
        raise ValueError("key version must be a positive integer")
    return f"{version}:{Fernet.generate_key().decode('ascii')}"


class KeyRing:
    """The configured encryption keys. Its repr shows the versions only, never the keys."""

    __slots__ = ("_aeads", "_current", "_fernets", "_raw_keys")

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
        self._aeads: Final = {version: _aead(key) for version, key in keys.items()}
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

    def encrypt(self, plaintext: str, *, bound_to: str) -> str:
        """``plaintext`` encrypted with the current key, bound to ``bound_to`` (see :func:`binding`)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._current].encrypt(nonce, plaintext.encode("utf-8"), _aad(bound_to))
        return f"{BOUND}{self._current}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def version_of(self, token: str) -> int:
        """The key version a stored token was encrypted with."""
        return self._split(token)[1]

    def decrypt(self, token: str, *, bound_to: str) -> str:
        """The plaintext of ``token``, which must be bound to ``bound_to`` (unbound tokens still read)."""
        scheme, version, body = self._split(token)
        if version not in self._fernets:
            raise DecryptionError(
                f"stored API key was encrypted with key version {version}, "
                f"which {ENV_VAR} does not contain (known versions: {list(self.versions)})"
            )
        try:
            if scheme != BOUND:
                return self._fernets[version].decrypt(body.encode("ascii")).decode("utf-8")
            sealed = base64.urlsafe_b64decode(body.encode("ascii"))
            if len(sealed) < _NONCE_BYTES + _TAG_BYTES:
                raise ValueError("too short")
            nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            return self._aeads[version].decrypt(nonce, ciphertext, _aad(bound_to)).decode("utf-8")
        except InvalidTag:
            raise KeyBindingError(
                f"stored API key of {bound_to} fails authentication (key version {version}): it was moved "
                f"from another row or altered, or {ENV_VAR} holds another secret for that version"
            ) from None
        except (InvalidToken, UnicodeError, ValueError, binascii.Error):
            raise DecryptionError(
                f"stored API key cannot be decrypted with the configured {ENV_VAR} (key version {version})"
            ) from None

    def needs_rotation(self, token: str) -> bool:
        """Whether ``token`` is unbound or uses an older key version."""
        scheme, version, _body = self._split(token)
        return scheme != BOUND or version != self._current

    def rotate(self, token: str, *, bound_to: str) -> str:
        """``token`` re-encrypted with the current key and bound (unchanged if it already is)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token, bound_to=bound_to), bound_to=bound_to)

    @staticmethod
    def _split(token: str) -> tuple[str, int, str]:
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise DecryptionError("stored API key is not an encrypted token ('a<version>:<token>')")
        return match.group(1), int(match.group(2)), match.group(3)


def _aead(fernet_key: str | bytes) -> AESGCM:
    # The Fernet key entry stays the one secret operators manage; AES-GCM gets its own derived key.
    raw = base64.urlsafe_b64decode(fernet_key)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(raw)
    return AESGCM(derived)


def _aad(bound_to: str) -> bytes:
    return (_AAD_PREFIX + bound_to).encode("utf-8")
