"""A server's sponsor key: the AI Horde key members without their own generate with.

Not a plain setting: it is checked with the AI Horde, stored encrypted and bound to its server in its
own table (an encrypted column, so ``rotate_all`` covers it) and never shown, only whose key it is.
The checks and the encryption are :class:`~bot.services.keys.KeyService`'s, as for members' keys.
"""

from __future__ import annotations

from typing import Final

from bot.errors import BotError
from bot.services.keys import KeyService, KeyUse, ResolvedKey
from bot.services.settings.registry import SettingValueError
from bot.storage import GuildSponsorKeyRecord, Storage

SPONSOR_REJECTED_MESSAGE: Final = (
    "The AI Horde did not accept that API key, so it was not saved. Check that you copied it whole."
)
SPONSOR_ANONYMOUS_MESSAGE: Final = (
    "The anonymous key can't be a sponsor key; use a key of your own AI Horde account."
)
SPONSOR_MALFORMED_MESSAGE: Final = (
    "That doesn't look like an AI Horde API key (22 characters of letters, digits, `-` and `_`, "
    "or a shared-key UUID)."
)
SPONSOR_UNREADABLE_MESSAGE: Final = (
    "This server's sponsor key can't be read any more (the bot's encryption keys changed). "
    "A server admin needs to set it again with /config set sponsor_key."
)
SPONSOR_NOT_BOUND_MESSAGE: Final = (
    "This server's sponsor key can't be used: in the bot's records it isn't bound to this server, so it "
    "was not used. A server admin needs to set it again with /config set sponsor_key."
)


class SponsorKeyUnreadableError(BotError):
    default_message = SPONSOR_UNREADABLE_MESSAGE


class SponsorKeyNotBoundError(SponsorKeyUnreadableError):
    """The stored token is bound to another server: copied from another row, or altered."""

    default_message = SPONSOR_NOT_BOUND_MESSAGE


SPONSOR_KEYS: Final = KeyUse(
    kind="guild",
    owner="guild {}",
    stored="the sponsor key of guild {}",
    refused=SettingValueError,
    anonymous=SPONSOR_ANONYMOUS_MESSAGE,
    malformed=SPONSOR_MALFORMED_MESSAGE,
    rejected=SPONSOR_REJECTED_MESSAGE,
    unreadable=SponsorKeyUnreadableError,
    not_bound=SponsorKeyNotBoundError,
)


def describe(horde_username: str | None) -> str:
    """What ``/config show`` says of a sponsor key: whose it is, never the key."""
    return "not set" if horde_username is None else f"set (AI Horde user {horde_username})"


class SponsorKeys:
    """Sets, removes and reads servers' sponsor keys; the caller invalidates its cached configuration."""

    def __init__(self, storage: Storage, keys: KeyService) -> None:
        self._storage = storage
        self._keys = keys

    async def username(self, guild_id: int) -> str | None:
        """Whose key the server's sponsor key is, or ``None`` when it has none."""
        record = await self._storage.sponsor_keys.get(guild_id)
        return None if record is None else record.horde_username

    async def set(self, guild_id: int, typed: str, actor_id: int) -> tuple[str | None, str]:
        """Check ``typed`` with the Horde and store it; returns the old and the new key's usernames.

        Raises :class:`SettingValueError` (nothing stored) or ``HordeUnavailableError``.
        """
        accepted = await self._keys.accept(SPONSOR_KEYS, guild_id, typed)
        old = await self.username(guild_id)
        await self._storage.sponsor_keys.set(
            GuildSponsorKeyRecord(
                guild_id=guild_id,
                encrypted_api_key=accepted.token,
                horde_username=accepted.horde_username,
                updated_by=actor_id,
            )
        )
        return old, accepted.horde_username

    async def delete(self, guild_id: int, actor_id: int) -> bool:
        return await self._storage.sponsor_keys.delete(guild_id, actor_id)

    async def resolve(self, guild_id: int | None) -> ResolvedKey | None:
        """The server's sponsor key, decrypted for one request, or ``None``."""
        if guild_id is None:
            return None
        record = await self._storage.sponsor_keys.get(guild_id)
        if record is None:
            return None
        apikey = self._keys.read(SPONSOR_KEYS, guild_id, record.encrypted_api_key)
        return ResolvedKey(apikey=apikey, owner="sponsor", horde_username=record.horde_username)
