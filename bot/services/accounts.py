"""Linking a Discord user to their own AI Horde account, and choosing the key a generation uses.

A user's API key is checked with the Horde before it is stored, and stored only as a
:class:`~bot.crypto.KeyRing` token bound to the user: :class:`~bot.services.keys.KeyService` does both,
as it does for servers' sponsor keys.
"""

from __future__ import annotations

import logging
from typing import Final

from bot.crypto import KeyRing
from bot.errors import BotError, NotLoggedInError, UserInputError
from bot.horde import AIHordeAPIAsyncSimpleClient, UserDetailsResponse
from bot.services.keys import ANONYMOUS, KeyService, KeyUse, ResolvedKey, SecretRegistry
from bot.storage import Storage, UserRecord

log = logging.getLogger(__name__)

REGISTER_URL: Final = "https://aihorde.net/register"

ANONYMOUS_KEY_MESSAGE: Final = (
    f"That's the anonymous key — log in with your own. You can get a free API key at {REGISTER_URL}"
)
MALFORMED_KEY_MESSAGE: Final = (
    "That doesn't look like an AI Horde API key (they are 22 characters of letters, digits, "
    f"`-` and `_`, or a shared-key UUID). You can get one at {REGISTER_URL}"
)
INVALID_KEY_MESSAGE: Final = (
    "The AI Horde did not accept that API key. Check that you copied it whole, "
    f"or get a new one at {REGISTER_URL}"
)
STORED_KEY_REJECTED_MESSAGE: Final = (
    "The AI Horde no longer accepts your saved API key (it may have been reset). "
    "Use /login again with your current key."
)
STORED_KEY_UNREADABLE_MESSAGE: Final = (
    "Your saved API key can't be read any more (the bot's encryption keys were changed). "
    "Use /login again with your AI Horde API key."
)
STORED_KEY_NOT_YOURS_MESSAGE: Final = (
    "Your saved API key can't be used: in the bot's records it isn't bound to your account, so it was "
    "not used for anything. Use /login again with your AI Horde API key."
)
NOT_LOGGED_IN_MESSAGE: Final = (
    "You aren't logged in, so you generate anonymously with the shared key (lowest priority). "
    f"Use /login with your own AI Horde API key; you can get one at {REGISTER_URL}"
)


class InvalidAPIKeyError(UserInputError):
    """The key is malformed or the AI Horde does not know it."""

    default_message = INVALID_KEY_MESSAGE


class StoredKeyRejectedError(InvalidAPIKeyError):
    """A key that was accepted at /login is no longer accepted by the AI Horde."""

    default_message = STORED_KEY_REJECTED_MESSAGE


class StoredKeyUnreadableError(BotError):
    """The stored token cannot be decrypted with the configured keys (one was rotated away)."""

    default_message = STORED_KEY_UNREADABLE_MESSAGE


class StoredKeyNotYoursError(StoredKeyUnreadableError):
    """The stored token is bound to another row: copied from another member's row, or altered."""

    default_message = STORED_KEY_NOT_YOURS_MESSAGE


MEMBER_KEYS: Final = KeyUse(
    kind="user",
    owner="Discord user {}",
    stored="the stored API key of Discord user {}",
    refused=InvalidAPIKeyError,
    anonymous=ANONYMOUS_KEY_MESSAGE,
    malformed=MALFORMED_KEY_MESSAGE,
    rejected=INVALID_KEY_MESSAGE,
    unreadable=StoredKeyUnreadableError,
    not_bound=StoredKeyNotYoursError,
)


class AccountService:
    """Login, logout, profile and key resolution for Discord users."""

    def __init__(
        self,
        storage: Storage,
        keyring: KeyRing,
        horde: AIHordeAPIAsyncSimpleClient,
        *,
        redactor: SecretRegistry | None = None,
    ) -> None:
        self._storage = storage
        self._keyring = keyring
        self._keys = KeyService(keyring, horde, redactor=redactor)

    def __repr__(self) -> str:
        return f"AccountService({self._storage!r}, {self._keyring!r})"

    async def login(self, discord_id: int, apikey: str) -> UserRecord:
        """Check ``apikey`` with the Horde and store it encrypted for ``discord_id``.

        Raises :class:`InvalidAPIKeyError` (anonymous, malformed or unknown key; nothing is stored)
        or :class:`HordeUnavailableError`.
        """
        accepted = await self._keys.accept(MEMBER_KEYS, discord_id, apikey)
        record = await self._storage.users.upsert(
            UserRecord(
                discord_id=discord_id,
                encrypted_api_key=accepted.token,
                horde_user_id=accepted.horde_user_id,
                horde_username=accepted.horde_username,
            )
        )
        log.info("Discord user %s logged in as AI Horde user %s", discord_id, accepted.horde_user_id)
        return record

    async def logout(self, discord_id: int) -> bool:
        """Delete the stored key; returns whether there was one."""
        deleted = await self._storage.users.delete(discord_id)
        if deleted:
            log.info("Discord user %s logged out", discord_id)
        return deleted

    async def profile(self, discord_id: int) -> UserDetailsResponse:
        """The user's Horde account as the Horde sees it now (kudos, concurrency, workers).

        Raises :class:`NotLoggedInError`, :class:`StoredKeyRejectedError`,
        :class:`StoredKeyUnreadableError` or :class:`HordeUnavailableError`.
        """
        record = await self._storage.users.get(discord_id)
        if record is None:
            raise NotLoggedInError(NOT_LOGGED_IN_MESSAGE)
        apikey = self._keys.read(MEMBER_KEYS, discord_id, record.encrypted_api_key)
        details = await self._keys.find_user(
            MEMBER_KEYS, discord_id, apikey, rejected=lambda detail: StoredKeyRejectedError(detail=detail)
        )
        if details.username and details.username != record.horde_username:
            # Renamed on the Horde since /login; keep what resolve_key reports current. A key stored
            # before keys were bound is bound now: the database takes no unbound token any more.
            token = self._keys.rebind(MEMBER_KEYS, discord_id, record.encrypted_api_key)
            renamed = {"horde_username": details.username, "encrypted_api_key": token}
            await self._storage.users.upsert(record.model_copy(update=renamed))
        return details

    async def resolve_key(self, discord_id: int, guild_id: int | None = None) -> ResolvedKey:
        """The key to generate with: the user's own, else the anonymous key.

        ``guild_id`` is where the generation happens; a server's sponsor key will be chosen here.
        Raises :class:`StoredKeyUnreadableError` rather than silently falling back to anonymous.
        """
        record = await self._storage.users.get(discord_id)
        if record is None:
            return ANONYMOUS
        apikey = self._keys.read(MEMBER_KEYS, discord_id, record.encrypted_api_key)
        return ResolvedKey(apikey=apikey, owner="user", horde_username=record.horde_username)
