"""AI Horde API keys that members and server admins give the bot: checked, stored bound to their owner,
read back for one request.

One service for both uses, a member's own key (``/login``, :mod:`bot.services.accounts`) and a
server's sponsor key (``/config set sponsor_key``, :mod:`bot.services.settings.sponsor`). A key typed
in is stripped, refused if it is the anonymous key or not shaped like a key, registered with the log
redactor, checked with the Horde (``find_user``) and encrypted bound to its owner's row
(:func:`bot.crypto.binding`). A stored one is decrypted only for the row it is bound to.

Plain keys live in local variables for the length of one call and in the :class:`ResolvedKey` handed
to whoever makes the Horde request; they never reach a log message, an exception or a reply. Each
use says, in its :class:`KeyUse`, what its members are told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from pydantic import ValidationError

from bot.crypto import BindingKind, DecryptionError, KeyBindingError, KeyRing, binding
from bot.errors import BotError, HordeUnavailableError, UserInputError
from bot.horde import (
    ANON_API_KEY,
    RC,
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    FindUserRequest,
    UserDetailsResponse,
)
from bot.storage import KeyOwner

log = logging.getLogger(__name__)

# The Horde's answers that mean "no such key"; anything else is a Horde problem, not the user's.
_REJECTED_STATUSES: Final = frozenset({401, 404})
_REJECTED_RCS: Final = frozenset({RC.InvalidAPIKey, RC.UserNotFound})


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


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One use of keys: whose rows hold them, how logs name them, and what their owners are told.

    ``owner`` and ``stored`` are templates for the owner's id (``"Discord user {}"``). A key typed in
    is refused with ``refused(message)``; a stored token that can't be decrypted raises
    ``unreadable``, one bound to another row ``not_bound`` (both with their default messages).
    """

    kind: BindingKind
    owner: str
    stored: str
    refused: type[UserInputError]
    anonymous: str
    malformed: str
    rejected: str
    unreadable: type[BotError]
    not_bound: type[BotError]


@dataclass(frozen=True, slots=True)
class AcceptedKey:
    """A key the Horde accepted, and its token, encrypted bound to its owner's row."""

    apikey: str = field(repr=False)
    token: str = field(repr=False)
    horde_user_id: int
    horde_username: str


class KeyService:
    """Checks, encrypts and decrypts keys for every :class:`KeyUse`; holds no key itself."""

    def __init__(
        self, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient, *, redactor: SecretRegistry | None = None
    ) -> None:
        self._keyring = keyring
        self._horde = horde
        self._redactor = redactor

    def __repr__(self) -> str:
        return f"KeyService({self._keyring!r})"

    async def accept(self, use: KeyUse, owner_id: int, typed: str) -> AcceptedKey:
        """Check ``typed`` with the Horde and encrypt it bound to ``owner_id``'s row.

        Raises ``use.refused`` (the anonymous key, a malformed or unknown key) or
        :class:`HordeUnavailableError`; then nothing was learnt but the key's redaction.
        """
        apikey = typed.strip()
        if apikey == ANON_API_KEY:
            raise use.refused(use.anonymous)
        try:
            # The request model is the one place that knows what the Horde accepts as a key; it never
            # echoes the input in its errors.
            FindUserRequest(apikey=apikey)
        except ValidationError:
            raise use.refused(use.malformed) from None
        self.register(apikey)
        # A refusal's text is all there is to say (str() too); the log line has the Horde's answer.
        details = await self.find_user(use, owner_id, apikey, rejected=lambda _: use.refused(use.rejected))
        if details.id_ is None or not details.username:
            raise HordeUnavailableError(detail="find_user answered without the user's id or username")
        return AcceptedKey(
            apikey=apikey,
            token=self._keyring.encrypt(apikey, bound_to=binding(use.kind, owner_id)),
            horde_user_id=details.id_,
            horde_username=details.username,
        )

    async def find_user(
        self, use: KeyUse, owner_id: int, apikey: str, *, rejected: Callable[[str], BotError]
    ) -> UserDetailsResponse:
        """The key's Horde account; ``rejected(detail)`` is raised when the Horde knows no such key."""
        owner = use.owner.format(owner_id)
        try:
            return await self._horde.find_user(apikey)
        except AIHordeRequestError as exc:
            # The Horde echoes an unknown key in its 404 message; the client layer masks it, but only
            # the status and rc travel on, unchained, so nothing here depends on that masking.
            rc = getattr(exc.rc, "value", exc.rc)
            if exc.http_status in _REJECTED_STATUSES or exc.rc in _REJECTED_RCS:
                log.info("The AI Horde rejected the API key of %s (rc=%s)", owner, rc)
                raise rejected(f"find_user: HTTP {exc.http_status}, rc={rc}") from None
            log.warning(
                "AI Horde find_user failed for %s: HTTP %s, rc=%s",
                owner,
                exc.http_status or "none (unreachable)",
                rc,
            )
            raise HordeUnavailableError(detail=f"find_user: HTTP {exc.http_status}, rc={rc}") from None

    def read(self, use: KeyUse, owner_id: int, token: str) -> str:
        """The plain key of a stored token, which must be bound to ``owner_id``'s row."""
        stored = use.stored.format(owner_id)
        try:
            apikey = self._keyring.decrypt(token, bound_to=binding(use.kind, owner_id))
        except KeyBindingError as exc:
            # Someone wrote another row's key here, or altered it: never generate with it.
            log.error("Refusing %s: %s", stored, exc)
            raise use.not_bound(detail=f"{stored} is bound to another row") from None
        except DecryptionError as exc:
            # An operator problem (a key version was removed from the key ring), not a bug: no traceback.
            log.error("Cannot decrypt %s: %s", stored, exc)
            raise use.unreadable(detail=f"{stored} can't be decrypted") from None
        # Keys stored by an earlier run were never registered in this process.
        self.register(apikey)
        return apikey

    def rebind(self, use: KeyUse, owner_id: int, token: str) -> str:
        """``token`` with the current key version, bound to ``owner_id``'s row (unchanged if it is)."""
        return self._keyring.rotate(token, bound_to=binding(use.kind, owner_id))

    def register(self, apikey: str) -> None:
        if self._redactor is not None:
            self._redactor.register_secret(apikey)
