"""The sponsor key, through GuildSettingsService, on a real SQLite file and the simulator."""

from __future__ import annotations

import pytest

from bot.crypto import KeyRing, binding, generate_key_value
from bot.horde import ANON_API_KEY
from bot.services.settings.registry import SPONSOR_KEY, SettingValueError
from bot.services.settings.service import GuildSettingsService
from bot.services.settings.sponsor import SPONSOR_NOT_BOUND_MESSAGE, SponsorKeyUnreadableError
from bot.storage import SQLiteStorage
from bot.storage.keys_at_rest import rotate_all
from horde_simulator import Simulator

GUILD = 111
ADMIN = 7
OTHER_ADMIN = 8
ALICE_KEY = "sim-alice-key-00000001"


async def test_a_sponsor_key_is_checked_stored_encrypted_and_never_shown(
    service: GuildSettingsService, storage: SQLiteStorage, keyring: KeyRing, horde_sim: Simulator
) -> None:
    change = await service.set(GUILD, "sponsor_key", f"  {ALICE_KEY} ", ADMIN)

    assert (change.old, change.new) == ("not set", "set (AI Horde user alice#1)")
    assert horde_sim.counters.calls("find_user") == 1
    record = await storage.sponsor_keys.get(GUILD)
    assert record is not None
    assert ALICE_KEY not in record.encrypted_api_key
    assert ALICE_KEY not in repr(record)
    assert keyring.decrypt(record.encrypted_api_key, bound_to=binding("guild", GUILD)) == ALICE_KEY
    config = await service.get(GUILD)
    assert config.has_sponsor_key
    assert ALICE_KEY not in repr(config)
    assert all(ALICE_KEY not in entry.value for entry in service.show(config))
    [entry] = await service.audit(GUILD)
    assert (entry.key, entry.new_value_json, entry.actor_id) == (SPONSOR_KEY, '"alice#1"', ADMIN)
    key = await service.sponsor_key(GUILD)
    assert key is not None
    assert (key.apikey, key.owner, key.horde_username) == (ALICE_KEY, "sponsor", "alice#1")
    assert ALICE_KEY not in repr(key)


async def test_a_sponsor_key_moved_to_another_server_is_refused(
    service: GuildSettingsService, storage: SQLiteStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await service.set(GUILD, "sponsor_key", ALICE_KEY, ADMIN)
    record = await storage.sponsor_keys.get(GUILD)
    assert record is not None
    await storage.sponsor_keys.set(record.model_copy(update={"guild_id": GUILD + 1}))

    with pytest.raises(SponsorKeyUnreadableError) as caught:
        await service.sponsor_key(GUILD + 1)
    assert caught.value.user_message == SPONSOR_NOT_BOUND_MESSAGE
    assert ALICE_KEY not in caplog.text
    assert f"Refusing the sponsor key of guild {GUILD + 1}" in caplog.text
    key = await service.sponsor_key(GUILD)
    assert key is not None
    assert key.apikey == ALICE_KEY


@pytest.mark.parametrize(
    ("apikey", "message"),
    [
        ("not-a-key", "doesn't look like an AI Horde API key"),
        (ANON_API_KEY, "anonymous key can't be a sponsor key"),
        ("unknown-key-0000000001", "did not accept that API key"),
    ],
)
async def test_a_bad_sponsor_key_is_refused_and_not_stored(
    service: GuildSettingsService, storage: SQLiteStorage, apikey: str, message: str
) -> None:
    with pytest.raises(SettingValueError, match=message) as caught:
        await service.set(GUILD, "sponsor_key", apikey, ADMIN)
    assert apikey not in caught.value.user_message
    assert await storage.sponsor_keys.get(GUILD) is None
    assert not (await service.get(GUILD)).has_sponsor_key


async def test_resetting_the_sponsor_key_deletes_it(service: GuildSettingsService) -> None:
    await service.set(GUILD, "sponsor_key", ALICE_KEY, ADMIN)

    change = await service.reset(GUILD, "sponsor_key", OTHER_ADMIN)

    assert (change.old, change.new, change.changed) == ("set (AI Horde user alice#1)", "not set", True)
    assert await service.sponsor_key(GUILD) is None
    assert not (await service.get(GUILD)).has_sponsor_key


async def test_the_sponsor_key_is_rotated_with_the_other_secrets(
    service: GuildSettingsService, storage: SQLiteStorage, keyring: KeyRing
) -> None:
    await service.set(GUILD, "sponsor_key", ALICE_KEY, ADMIN)
    newer = KeyRing.from_env_value(f"1:{keyring.secret_material()[0]},{generate_key_value(2)}")

    assert await rotate_all(storage, newer) == 1

    record = await storage.sponsor_keys.get(GUILD)
    assert record is not None
    assert newer.version_of(record.encrypted_api_key) == 2
    assert newer.decrypt(record.encrypted_api_key, bound_to=binding("guild", GUILD)) == ALICE_KEY
