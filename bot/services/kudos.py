"""Gifting kudos between two logged-in members, paid at most once per gift.

Every transfer carries an ``Idempotency-Key`` derived from (giver, receiver, context id): the
context is the Discord interaction, so however often the same gift is retried (by the client
after a lost answer, or by the bot), the Horde applies it once and answers the retries with the
same result.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bot.errors import BotError, HordeUnavailableError, NotLoggedInError, UserInputError
from bot.horde import RC, AIHordeAPIAsyncSimpleClient, AIHordeRequestError
from bot.services.accounts import AccountService
from bot.storage import Storage

log = logging.getLogger(__name__)

MAX_GIFT: Final = 10_000_000
HORDE_USER_CACHE_S: Final = 30.0
"""How long the Horde answers ``find_user`` and ``users/{id}`` from its cache: a balance read
within this time of a transfer may not show it yet."""
GIVER_NOT_LOGGED_IN: Final = "You aren't logged in. Use /login with your AI Horde API key to give kudos."
RECEIVER_NOT_LOGGED_IN: Final = (
    "{name} hasn't logged in with an AI Horde account, so I don't know where to send the kudos."
)
TO_SELF: Final = "You can't give kudos to yourself."

_ERRORS: Final[dict[str, str]] = {
    RC.KudosTransferNotEnough: "You don't have enough kudos for that.",
    RC.KudosTransferToSelf: "That member's AI Horde account is your own.",
    RC.KudosTransferFromAnon: "The anonymous account can't give kudos. Use /login with your own key.",
    RC.KudosTransferToAnon: "Kudos can't be sent to the anonymous account.",
    RC.InvalidTargetUsername: (
        "The AI Horde doesn't know the receiver's account any more; ask them to /login again."
    ),
    RC.TooFastKudosTransfers: (
        "That member sent you kudos less than a minute ago. Please wait a minute before sending some back."
    ),
    RC.TargetAccountFlagged: "The receiver's AI Horde account is flagged and can't receive kudos.",
    RC.SourceAccountFlagged: "Your AI Horde account is flagged and can't give kudos.",
    RC.EducationCannotSendKudos: "Education accounts can't give kudos.",
    RC.DeletedUser: "One of the two AI Horde accounts has been deleted.",
    RC.SharedKeyExpired: "Your shared key has expired.",
    RC.InvalidAPIKey: "The AI Horde did not accept your API key. Use /login again with your current key.",
    RC.IdempotencyKeyConflict: "This gift was already sent with a different amount.",
}


@dataclass(frozen=True, slots=True)
class KudosGift:
    receiver_username: str
    transferred: float


@dataclass(frozen=True, slots=True)
class RecentTransfer:
    """A transfer made through the bot, as one of its two members sees it."""

    sent: bool
    """Whether this member gave the kudos (else received them)."""
    other_username: str | None
    """The other side's AI Horde username, when known."""
    amount: float
    age_s: float


@dataclass(frozen=True, slots=True)
class _Transfer:
    gift_key: str
    giver_id: int
    giver_username: str | None
    receiver_id: int
    receiver_username: str
    amount: float
    at: float


class RecentTransfers:
    """The transfers of the last :data:`HORDE_USER_CACHE_S` seconds, which a member's balance on
    the Horde may not count yet, so /me can say so. In memory: a restart forgets them, and with
    several bot processes each knows its own (a note, never a balance, depends on it)."""

    def __init__(
        self,
        *,
        window_s: float = HORDE_USER_CACHE_S,
        max_kept: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._window_s = window_s
        # Looked up at each call, not bound at import, so a patched clock (SimCord's virtual one) applies.
        self._clock = clock or (lambda: time.monotonic())
        self._transfers: deque[_Transfer] = deque(maxlen=max_kept)

    def record(
        self,
        gift_key: str,
        *,
        giver_id: int,
        giver_username: str | None,
        receiver_id: int,
        receiver_username: str,
        amount: float,
    ) -> None:
        """Note a transfer; the same ``gift_key`` (a retried gift, paid once) is noted once."""
        self._forget_old()
        if any(transfer.gift_key == gift_key for transfer in self._transfers):
            return
        self._transfers.append(
            _Transfer(
                gift_key, giver_id, giver_username, receiver_id, receiver_username, amount, self._clock()
            )
        )

    def involving(self, discord_id: int) -> list[RecentTransfer]:
        """The member's transfers still within the window, oldest first."""
        self._forget_old()
        now = self._clock()
        return [
            RecentTransfer(
                sent=transfer.giver_id == discord_id,
                other_username=(
                    transfer.receiver_username if transfer.giver_id == discord_id else transfer.giver_username
                ),
                amount=transfer.amount,
                age_s=now - transfer.at,
            )
            for transfer in self._transfers
            if discord_id in (transfer.giver_id, transfer.receiver_id)
        ]

    def _forget_old(self) -> None:
        oldest = self._clock() - self._window_s
        while self._transfers and self._transfers[0].at < oldest:
            self._transfers.popleft()


def idempotency_key(giver_id: int, receiver_id: int, context_id: int | str) -> str:
    """The same (giver, receiver, context) always gives the same key; different ones never collide
    in practice (a SHA-256 prefix as a UUID)."""
    digest = hashlib.sha256(f"kudos:{giver_id}:{receiver_id}:{context_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


class KudosService:
    def __init__(
        self,
        storage: Storage,
        accounts: AccountService,
        horde: AIHordeAPIAsyncSimpleClient,
        *,
        recent: RecentTransfers | None = None,
    ) -> None:
        self._storage = storage
        self._accounts = accounts
        self._horde = horde
        self.recent: Final = recent or RecentTransfers()
        """What was sent lately, which balances on the Horde may not show yet (see /me)."""

    def __repr__(self) -> str:
        return "KudosService()"

    async def give(
        self, *, giver_id: int, receiver_id: int, receiver_name: str, amount: int, context_id: int | str
    ) -> KudosGift:
        """Send ``amount`` kudos from the giver's Horde account to the receiver's.

        Both must be logged in. ``context_id`` identifies this one gift (the interaction): a retry
        with the same one is applied once. Raises :class:`BotError` subclasses with a clear message.
        """
        if giver_id == receiver_id:
            raise UserInputError(TO_SELF)
        if not 1 <= amount <= MAX_GIFT:
            raise UserInputError(f"Give between 1 and {MAX_GIFT:,} kudos.")
        key = await self._accounts.resolve_key(giver_id)
        if key.is_anonymous:
            raise NotLoggedInError(GIVER_NOT_LOGGED_IN)
        receiver = await self._storage.users.get(receiver_id)
        if receiver is None:
            raise UserInputError(RECEIVER_NOT_LOGGED_IN.format(name=receiver_name))
        gift_key = idempotency_key(giver_id, receiver_id, context_id)
        try:
            response = await self._horde.transfer_kudos(
                key.apikey, receiver.horde_username, amount, idempotency_key=gift_key
            )
        except AIHordeRequestError as exc:
            raise _user_error(exc) from None
        log.info("Discord user %s gave %s kudos to Discord user %s", giver_id, amount, receiver_id)
        self.recent.record(
            gift_key,
            giver_id=giver_id,
            giver_username=key.horde_username,
            receiver_id=receiver_id,
            receiver_username=receiver.horde_username,
            amount=response.transferred,
        )
        return KudosGift(receiver_username=receiver.horde_username, transferred=response.transferred)


def _user_error(error: AIHordeRequestError) -> BotError:
    known = _ERRORS.get(str(error.rc))
    if known is not None:
        return UserInputError(known, detail=f"kudos transfer: rc={error.rc}")
    if error.http_status == 0 or error.http_status >= 500:
        return HordeUnavailableError(detail=f"kudos transfer: HTTP {error.http_status}")
    if error.http_status == 429:
        return UserInputError("Too many kudos transfers right now. Please try again in a minute.")
    if error.unexpected_answer or error.http_status < 400:
        # Not a refusal (the transfer may even have gone through): never the Horde's words here.
        return BotError(
            "The AI Horde answered something the bot did not expect, so it can't tell whether the "
            "kudos were sent. Check your balance before trying again.",
            detail=f"kudos transfer: unexpected answer, HTTP {error.http_status}: {error.message}",
        )
    return UserInputError(f"The AI Horde refused the transfer: {error.message}")
