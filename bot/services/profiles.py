"""Members' AI Horde accounts as other members see them with /user, and the opt-in that allows it.

Which Horde account a member logged in with is theirs to tell: /user shows it only to members of a
server both are in, and only once the member turned sharing on (/privacy), which is off by
default. What it shows is the account's public details (``v2/users/{id}``, asked without any key),
the same anyone could read on the Horde knowing the account's id.

A member who has not shared and one who never logged in get the same answer, so /user does not
tell who logged in either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from bot.errors import HordeUnavailableError, NotLoggedInError, UserInputError
from bot.horde import RC, AIHordeAPIAsyncSimpleClient, AIHordeRequestError, UserDetailsResponse
from bot.storage import Storage

log = logging.getLogger(__name__)

NOT_SHARED: Final = "{name} hasn't shared their AI Horde account here. Members choose to with /privacy."
SHARING_NEEDS_LOGIN: Final = (
    "You aren't logged in, so there is no AI Horde account to share. Use /login first; "
    "sharing stays off until you turn it on."
)
OWN_PROFILE_NEEDS_LOGIN: Final = "You aren't logged in. Use /login with your AI Horde API key first."
ACCOUNT_GONE: Final = "The AI Horde no longer knows {name}'s account."


@dataclass(frozen=True, slots=True)
class MemberProfile:
    details: UserDetailsResponse
    shared: bool
    """Whether the member shares it (an own, unshared profile is shown to its member only)."""
    own: bool


class ProfileService:
    def __init__(self, storage: Storage, horde: AIHordeAPIAsyncSimpleClient) -> None:
        self._storage = storage
        self._horde = horde

    def __repr__(self) -> str:
        return "ProfileService()"

    async def is_shared(self, discord_id: int) -> bool | None:
        """Whether the member shares their account; ``None`` when they are not logged in."""
        record = await self._storage.users.get(discord_id)
        return None if record is None else record.profile_shared

    async def set_shared(self, discord_id: int, shared: bool) -> None:
        """Turn sharing on or off. Raises :class:`NotLoggedInError` when there is no account."""
        if not await self._storage.users.set_profile_shared(discord_id, shared):
            raise NotLoggedInError(SHARING_NEEDS_LOGIN)
        log.info("Discord user %s turned sharing of their AI Horde account %s", discord_id, _on(shared))

    async def profile(self, *, member_id: int, member_name: str, asker_id: int) -> MemberProfile:
        """The member's public account details, if they share it (or it is the asker's own).

        Raises :class:`UserInputError` (not shared, not logged in, or gone from the Horde),
        :class:`NotLoggedInError` (the asker's own, not logged in) or :class:`HordeUnavailableError`.
        """
        own = member_id == asker_id
        record = await self._storage.users.get(member_id)
        if record is None and own:
            raise NotLoggedInError(OWN_PROFILE_NEEDS_LOGIN)
        if record is None or not (record.profile_shared or own):
            raise UserInputError(NOT_SHARED.format(name=member_name))
        try:
            details = await self._horde.get_user(record.horde_user_id)
        except AIHordeRequestError as exc:
            if exc.rc == RC.UserNotFound or exc.http_status == 404:
                raise UserInputError(
                    ACCOUNT_GONE.format(name=member_name), detail=f"users/{record.horde_user_id}: 404"
                ) from None
            raise HordeUnavailableError(detail=f"users/{{id}}: HTTP {exc.http_status}") from None
        return MemberProfile(details=details, shared=record.profile_shared, own=own)


def _on(shared: bool) -> str:
    return "on" if shared else "off"
