"""``proxied_account``: who a generation on a server's shared key is for.

The AI Horde asks services that act for others to name, in ``proxied_account``, "the actual
account from which this request is coming from". On a server's shared keys (its sponsor key, or the
anonymous key) that is a Discord member, so the bot sends a pseudonym of the member's Discord id
(``KeyRing.pseudonym``: HMAC-SHA256 keyed from ``HORDE_BOT_SECRET_KEYS``, the same for a member on
every server and across restarts and key rotations, and not reversible without the keys). The Horde
can then tell one member's requests from another's without learning who they are.

AI-Horde 5.1.5 refuses ``proxied_account`` from an account that is not a service account (400
``OnlyServiceAccountProxy``), so it is sent only when the key's account says ``service: true``
(``find_user``, asked once per key and kept :data:`SERVICE_CACHE_S`). A member's own key speaks for
the member already: nothing is added.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

from bot.clock import monotonic
from bot.crypto import KeyRing
from bot.horde import AIHordeAPIAsyncSimpleClient, AIHordeRequestError
from bot.services.keys import ResolvedKey

log = logging.getLogger(__name__)

SERVICE_CACHE_S: Final = 600.0
"""How long whether a shared key's account is a service account is kept."""
PREFIX: Final = "discord:"


class ProxiedAccounts:
    def __init__(self, horde: AIHordeAPIAsyncSimpleClient, keyring: KeyRing) -> None:
        self._horde = horde
        self._keyring = keyring
        self._service: dict[str, tuple[bool, float]] = {}

    def account_id(self, discord_id: int) -> str:
        """The member's pseudonym: ``discord:`` and 32 hex characters."""
        return PREFIX + self._keyring.pseudonym(f"discord-user:{discord_id}")

    async def for_request(self, key: ResolvedKey, discord_id: int) -> str | None:
        """The ``proxied_account`` to send with ``key`` for this member, or None."""
        if key.owner not in ("sponsor", "anonymous") or not await self._is_service(key.apikey):
            return None
        return self.account_id(discord_id)

    async def _is_service(self, apikey: str) -> bool:
        # Kept by a hash: the key itself is never held longer than the request needs it.
        slot = hashlib.sha256(apikey.encode()).hexdigest()
        known = self._service.get(slot)
        if known is not None and monotonic() - known[1] < SERVICE_CACHE_S:
            return known[0]
        try:
            service = bool((await self._horde.find_user(apikey)).service)
        except AIHordeRequestError as exc:
            # Without the answer nothing is added: a request without it is still a valid one.
            log.info("Could not tell whether a shared key's account is a service account: %s", exc)
            return False
        self._service[slot] = (service, monotonic())
        return service
