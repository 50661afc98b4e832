"""GuildSettingsService on a real SQLite file and the simulator: set, reset, show, audit, cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.settings.config import build_config
from bot.services.settings.registry import REGISTRY, SPONSOR_KEY, SettingValueError, UnknownSettingError
from bot.services.settings.service import GuildSettingsService
from bot.storage import SQLiteStorage, SQLiteURL

GUILD = 111
ADMIN = 7
OTHER_ADMIN = 8
CHANNEL = 222_222_222_222_222_222
DEFAULTS = GenerationDefaults()


async def test_set_stores_audits_and_invalidates_the_cache(service: GuildSettingsService) -> None:
    assert (await service.get(GUILD)).generation.steps == 30

    change = await service.set(GUILD, "Steps", "12", ADMIN)

    assert (change.name, change.old, change.new, change.changed) == ("steps", "30", "12", True)
    assert (await service.get(GUILD)).generation.steps == 12
    [entry] = await service.audit(GUILD)
    assert (entry.key, entry.old_value_json, entry.new_value_json, entry.actor_id) == (
        "steps",
        None,
        '"12"',
        ADMIN,
    )
    again = await service.set(GUILD, "steps", "12", OTHER_ADMIN)
    assert not again.changed
    assert len(await service.audit(GUILD)) == 1


async def test_reads_are_cached_until_a_write(service: GuildSettingsService, storage: SQLiteStorage) -> None:
    await service.get(GUILD)
    # Written behind the service's back: not seen until the service itself writes.
    await storage.guild_settings.set(GUILD, "cooldown_seconds", "9", ADMIN)
    assert (await service.get(GUILD)).cooldown_seconds == 0
    await service.set(GUILD, "max_jobs_member", "2", ADMIN)
    config = await service.get(GUILD)
    assert (config.cooldown_seconds, config.max_jobs_member) == (9, 2)


async def test_an_invalid_value_stores_nothing(service: GuildSettingsService, storage: SQLiteStorage) -> None:
    with pytest.raises(SettingValueError, match="from 1 to 20"):
        await service.set(GUILD, "max_count", "50", ADMIN)
    with pytest.raises(UnknownSettingError, match="no setting “colour”"):
        await service.set(GUILD, "colour", "red", ADMIN)
    assert await storage.guild_settings.get_all(GUILD) == {}
    assert await service.audit(GUILD) == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_steps", "20", "the default steps (30) must not exceed max_steps (20)"),
        ("steps", "60", "the default steps (60) must not exceed max_steps (50)"),
        ("max_pixels", "4096", "must not exceed max_pixels (4,096)"),
        ("size", "2048x2048", "must not exceed max_pixels (1,048,576)"),
        (
            "blocked_models",
            "stable_diffusion",
            "the default model (stable_diffusion) must be allowed and not blocked",
        ),
        ("allowed_models", "Deliberate", "the default model (stable_diffusion) must be allowed"),
    ],
)
async def test_settings_that_contradict_each_other_are_refused_whole(
    service: GuildSettingsService, storage: SQLiteStorage, name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingValueError, match=re.escape(message)):
        await service.set(GUILD, name, value, ADMIN)
    assert await storage.guild_settings.get_all(GUILD) == {}


async def test_lowering_a_limit_works_once_the_default_is_lowered(service: GuildSettingsService) -> None:
    await service.set(GUILD, "steps", "10", ADMIN)
    await service.set(GUILD, "max_steps", "20", ADMIN)
    with pytest.raises(SettingValueError, match="can't be reset"):
        await service.reset(GUILD, "steps", ADMIN)  # back to 30, above max_steps
    assert (await service.get(GUILD)).generation.max_steps == 20


async def test_reset_goes_back_to_the_default_and_is_audited(service: GuildSettingsService) -> None:
    await service.set(GUILD, "cooldown_seconds", "30", ADMIN)

    change = await service.reset(GUILD, "cooldown_seconds", OTHER_ADMIN)

    assert (change.old, change.new, change.changed) == ("30", "0", True)
    assert (await service.get(GUILD)).cooldown_seconds == 0
    newest = (await service.audit(GUILD))[0]
    assert (newest.key, newest.old_value_json, newest.new_value_json, newest.actor_id) == (
        "cooldown_seconds",
        '"30"',
        None,
        OTHER_ADMIN,
    )
    assert not (await service.reset(GUILD, "cooldown_seconds", ADMIN)).changed


async def test_channel_overrides_are_set_and_reset_per_channel(service: GuildSettingsService) -> None:
    change = await service.set(GUILD, "nsfw_policy", "off", ADMIN, channel_id=CHANNEL)
    assert (change.old, change.new, change.channel_id) == ("age_restricted_only", "off", CHANNEL)
    config = await service.get(GUILD)
    assert not config.nsfw_allowed(CHANNEL, age_restricted=True)
    assert config.nsfw_policy == "age_restricted_only"
    assert any(entry.name == f"nsfw_policy in <#{CHANNEL}>" for entry in service.show(config))

    await service.reset(GUILD, "nsfw_policy", ADMIN, channel_id=CHANNEL)
    assert (await service.get(GUILD)).nsfw_allowed(CHANNEL, age_restricted=True)


async def test_server_wide_settings_refuse_a_channel(service: GuildSettingsService) -> None:
    with pytest.raises(
        SettingValueError, match=r"server-wide setting.*allowed_commands, nsfw_policy, visibility"
    ):
        await service.set(GUILD, "max_steps", "20", ADMIN, channel_id=CHANNEL)


async def test_settings_survive_a_restart(
    service: GuildSettingsService, tmp_path: Path, keyring: KeyRing
) -> None:
    await service.set(GUILD, "blocked_words", "gore", ADMIN)
    await service.set(GUILD, "visibility", "private", ADMIN, channel_id=CHANNEL)

    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as reopened:
        fresh = GuildSettingsService(reopened, DEFAULTS, keyring=keyring, horde=AIHordeAPIAsyncSimpleClient())
        config = await fresh.get(GUILD)
    assert config.blocked_words == ("gore",)
    assert config.visibility_in(CHANNEL) == "private"


async def test_other_guilds_and_dms_keep_the_defaults(service: GuildSettingsService) -> None:
    await service.set(GUILD, "max_steps", "40", ADMIN)
    assert (await service.get(GUILD + 1)).generation.max_steps == 50
    assert (await service.get(None)).generation == DEFAULTS


def test_show_lists_every_setting_marking_the_overridden_ones() -> None:
    service = GuildSettingsService.__new__(GuildSettingsService)
    config = build_config(GUILD, DEFAULTS, {"steps": "12"}, sponsor_username="patron#5")
    shown = {entry.name: entry for entry in GuildSettingsService.show(service, config)}
    assert set(shown) == set(REGISTRY)
    assert (shown["steps"].value, shown["steps"].overridden) == ("12", True)
    assert (shown["max_steps"].value, shown["max_steps"].overridden) == ("50", False)
    assert shown[SPONSOR_KEY].value == "set (AI Horde user patron#5)"
