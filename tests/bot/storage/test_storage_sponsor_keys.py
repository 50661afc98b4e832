from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.crypto import KeyRing, binding
from bot.storage import GuildSponsorKeyRecord
from bot.storage.guild_settings import SPONSOR_AUDIT_KEY
from bot.storage.keys_at_rest import rotate_all
from bot.storage.sql import SQLStorage

pytest_plugins = ("storage_fixtures",)

GUILD = 7
ADMIN = 70
OTHER_ADMIN = 71
SPONSOR_APIKEY = "sponsor-horde-key-0123456789"


def sponsor(ring: KeyRing, username: str = "patron#1", actor: int = ADMIN) -> GuildSponsorKeyRecord:
    return GuildSponsorKeyRecord(
        guild_id=GUILD,
        encrypted_api_key=ring.encrypt(SPONSOR_APIKEY, bound_to=binding("guild", GUILD)),
        horde_username=username,
        updated_by=actor,
    )


async def test_set_replace_and_delete_are_audited_with_the_username_only(
    storage: SQLStorage[Any], ring: KeyRing, clock: Any
) -> None:
    assert await storage.sponsor_keys.get(GUILD) is None
    await storage.sponsor_keys.set(sponsor(ring))
    stored = await storage.sponsor_keys.get(GUILD)
    assert stored is not None
    assert ring.decrypt(stored.encrypted_api_key, bound_to=binding("guild", GUILD)) == SPONSOR_APIKEY
    assert (stored.horde_username, stored.updated_by, stored.updated_at) == ("patron#1", ADMIN, clock.now)

    await storage.sponsor_keys.set(sponsor(ring, username="patron#2", actor=OTHER_ADMIN))
    assert await storage.sponsor_keys.delete(GUILD, actor_id=ADMIN) is True
    assert await storage.sponsor_keys.get(GUILD) is None
    assert await storage.sponsor_keys.delete(GUILD, actor_id=ADMIN) is False

    audit = await storage.guild_settings.audit(GUILD)
    assert [(a.key, a.old_value_json, a.new_value_json, a.actor_id) for a in audit] == [
        (SPONSOR_AUDIT_KEY, '"patron#2"', None, ADMIN),
        (SPONSOR_AUDIT_KEY, '"patron#1"', '"patron#2"', OTHER_ADMIN),
        (SPONSOR_AUDIT_KEY, None, '"patron#1"', ADMIN),
    ]
    assert all(SPONSOR_APIKEY not in (a.new_value_json or "") + (a.old_value_json or "") for a in audit)
    # A sponsor key is not a guild setting value.
    assert await storage.guild_settings.get_all(GUILD) == {}


async def test_a_failed_audit_rolls_back_the_key(
    storage: SQLStorage[Any], ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_execute(sql: str, params: Any = ()) -> int:
        if "guild_settings_audit" in sql:
            raise RuntimeError("audit failed")
        changed: int = await real_execute(sql, params)
        return changed

    real_execute = storage._db.execute
    monkeypatch.setattr(storage._db, "execute", failing_execute)
    with pytest.raises(RuntimeError, match="audit failed"):
        await storage.sponsor_keys.set(sponsor(ring))
    monkeypatch.undo()
    assert await storage.sponsor_keys.get(GUILD) is None


async def test_sponsor_keys_are_rotated_with_the_user_keys(storage: SQLStorage[Any]) -> None:
    first_key = Fernet.generate_key()
    await storage.sponsor_keys.set(sponsor(KeyRing({1: first_key})))
    newer = KeyRing({1: first_key, 2: Fernet.generate_key()})
    assert await rotate_all(storage, newer) == 1
    stored = await storage.sponsor_keys.get(GUILD)
    assert stored is not None
    assert not newer.needs_rotation(stored.encrypted_api_key)
    assert newer.decrypt(stored.encrypted_api_key, bound_to=binding("guild", GUILD)) == SPONSOR_APIKEY
