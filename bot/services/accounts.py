"""Linking a Discord user to their own AI Horde account, and choosing the key a generation uses.

A user's API key is checked with the Horde (``find_user``) before it is stored, and stored only as a
:class:`~bot.crypto.KeyRing` token. Plain keys live in local variables for the length of one call and
in the :class:`ResolvedKey` handed to whoever makes the Horde request; they never reach a log
message, an exception or a reply. Every key the service learns is registered with the log redactor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final, Protocol

from pydantic import ValidationError

from bot.crypto import DecryptionError, KeyBindingError, KeyRing, binding
from bot.errors import BotError, HordeUnavailableError, NotLoggedInError, UserInputError
from bot.horde import (
    ANON_API_KEY,
    RC,
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    FindUserRequest,
    UserDetailsResponse,
)
from bot.storage import KeyOwner, Storage, UserRecord

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

# The Horde's answers that mean "no such key"; anything else is a Horde problem, not the user's.
_REJECTED_STATUSES: Final = frozenset({401, 404})
_REJECTED_RCS: Final = frozenset({RC.InvalidAPIKey, RC.UserNotFound})


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


class SecretRegistry(Protocol):
    """Where newly learnt secrets go so logs mask them (``bot.logging.SecretRedactor``)."""

    def register_secret(self, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """The key a Horde request should use, and whose it is. ``apikey`` stays out of repr and str."""

    apikey: str = field(repr=False)
    owner: KeyOwner
    horde_username: str | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.owner == "anonymous"


ANONYMOUS: Final = ResolvedKey(apikey=ANON_API_KEY, owner="anonymous", horde_username=None)


def _check_shape(apikey: str) -> None:
    if apikey == ANON_API_KEY:
        raise InvalidAPIKeyError(ANONYMOUS_KEY_MESSAGE)
    try:
        # The request model is the one place that knows what the Horde accepts as a key; it never
        # echoes the input in its errors.
        FindUserRequest(apikey=apikey)
    except ValidationError:
        raise InvalidAPIKeyError(MALFORMED_KEY_MESSAGE, detail="malformed API key") from None


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
        self._horde = horde
        self._redactor = redactor

    def __repr__(self) -> str:
        return f"AccountService({self._storage!r}, {self._keyring!r})"

    async def login(self, discord_id: int, apikey: str) -> UserRecord:
        """Check ``apikey`` with the Horde and store it encrypted for ``discord_id``.

        Raises :class:`InvalidAPIKeyError` (anonymous, malformed or unknown key; nothing is stored)
        or :class:`HordeUnavailableError`.
        """
        apikey = apikey.strip()
        _check_shape(apikey)
        self._register(apikey)
        details = await self._find_user(discord_id, apikey, rejected=InvalidAPIKeyError)
        if details.id_ is None or not details.username:
            raise HordeUnavailableError(detail="find_user answered without the user's id or username")
        record = await self._storage.users.upsert(
            UserRecord(
                discord_id=discord_id,
                encrypted_api_key=self._keyring.encrypt(apikey, bound_to=binding("user", discord_id)),
                horde_user_id=details.id_,
                horde_username=details.username,
            )
        )
        log.info("Discord user %s logged in as AI Horde user %s", discord_id, details.id_)
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
        apikey = self._decrypt(record)
        details = await self._find_user(discord_id, apikey, rejected=StoredKeyRejectedError)
        if details.username and details.username != record.horde_username:
            # Renamed on the Horde since /login; keep what resolve_key reports current. A key stored
            # before keys were bound is bound now: the database takes no unbound token any more.
            token = self._keyring.rotate(record.encrypted_api_key, bound_to=binding("user", discord_id))
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
        return ResolvedKey(apikey=self._decrypt(record), owner="user", horde_username=record.horde_username)

    def _register(self, apikey: str) -> None:
        if self._redactor is not None:
            self._redactor.register_secret(apikey)

    def _decrypt(self, record: UserRecord) -> str:
        try:
            apikey = self._keyring.decrypt(
                record.encrypted_api_key, bound_to=binding("user", record.discord_id)
            )
        except KeyBindingError as exc:
            # Someone wrote another row's key here, or altered it: never generate with it.
            log.error("Refusing the stored API key of Discord user %s: %s", record.discord_id, exc)
            raise StoredKeyNotYoursError(
                detail=f"key bound to another row on user {record.discord_id}"
            ) from None
        except DecryptionError as exc:
            # An operator problem (a key version was removed from the key ring), not a bug: no traceback.
            log.error("Cannot decrypt the stored API key of Discord user %s: %s", record.discord_id, exc)
            raise StoredKeyUnreadableError(detail=f"undecryptable key of user {record.discord_id}") from None
        # Keys stored by an earlier run were never registered in this process.
        self._register(apikey)
        return apikey

    async def _find_user(
        self, discord_id: int, apikey: str, *, rejected: type[InvalidAPIKeyError]
    ) -> UserDetailsResponse:
        try:
            return await self._horde.find_user(apikey)
        except AIHordeRequestError as exc:
            # The Horde echoes an unknown key in its 404 message; the client layer masks it, but only
            # the status and rc travel on, unchained, so nothing here depends on that masking.
            rc = getattr(exc.rc, "value", exc.rc)
            if exc.http_status in _REJECTED_STATUSES or exc.rc in _REJECTED_RCS:
                log.info("The AI Horde rejected the API key of Discord user %s (rc=%s)", discord_id, rc)
                raise rejected(detail=f"find_user: HTTP {exc.http_status}, rc={rc}") from None
            log.warning(
                "AI Horde find_user failed for Discord user %s: HTTP %s, rc=%s",
                discord_id,
                exc.http_status or "none (unreachable)",
                rc,
            )
            raise HordeUnavailableError(detail=f"find_user: HTTP {exc.http_status}, rc={rc}") from None
