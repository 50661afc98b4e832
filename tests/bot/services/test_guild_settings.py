"""The settings registry, GuildConfig and GuildSettingsService, on a real SQLite file and the simulator."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing, binding, generate_key_value, rotate_all
from bot.horde import ANON_API_KEY, AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.horde.simulator import Simulator
from bot.services.guild_settings import (
    REGISTRY,
    SETTINGS,
    SPONSOR_KEY,
    SPONSOR_NOT_BOUND_MESSAGE,
    GuildSettingsService,
    SettingValueError,
    SponsorKeyUnreadableError,
    UnknownSettingError,
    build_config,
)
from bot.storage import SQLiteStorage, SQLiteURL

GUILD = 111
ADMIN = 7
OTHER_ADMIN = 8
CHANNEL = 222_222_222_222_222_222
ALICE_KEY = "sim-alice-key-00000001"
DEFAULTS = GenerationDefaults()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as opened:
        yield opened


@pytest.fixture
async def horde(horde_sim: Simulator) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    async with aiohttp.ClientSession() as http:
        session = AIHordeAPIAsyncClientSession(http, base_url=horde_sim.base_url)
        async with session:
            yield AIHordeAPIAsyncSimpleClient(horde_client_session=session, aiohttp_session=http)


@pytest.fixture
def service(
    storage: SQLiteStorage, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient
) -> GuildSettingsService:
    return GuildSettingsService(storage, DEFAULTS, keyring=keyring, horde=horde)


# -- parsing and formatting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "typed", "shown"),
    [
        ("steps", " 20 ", "20"),
        ("size", "768 × 512", "768x512"),
        ("sampler", "k_dpmpp_2m", "k_dpmpp_2m"),
        ("cfg_scale", "7.456", "7.46"),
        ("negative_prompt", "none", "none"),
        ("max_pixels", "1,048,576", "1048576"),
        ("allowed_models", "b, a, a", "a, b"),
        ("blocked_words", "Foo, bar baz", "bar baz, foo"),
        ("blocked_patterns", "fo{1,3}", "fo{1,3}"),
        ("blocked_patterns", '["a+", "b,c"]', '["a+", "b,c"]'),
        (
            "allowed_channels",
            "<#222222222222222222> 333333333333333333",
            "<#222222222222222222>, <#333333333333333333>",
        ),
        ("allowed_commands", "all", "all"),
        ("allowed_commands", "none", "none"),
        ("nsfw_policy", "Off", "off"),
        ("allow_anonymous", "no", "off"),
        ("rerun_emoji", "♻️", "♻️"),
        ("rerun_emoji", "<:redo:123456789012345678>", "<:redo:123456789012345678>"),
        ("visibility", "private", "private"),
        ("log_channel", "<#222222222222222222>", "<#222222222222222222>"),
        ("log_channel", "none", "none"),
    ],
)
def test_values_are_parsed_to_a_canonical_text(name: str, typed: str, shown: str) -> None:
    setting = REGISTRY[name]
    assert setting.canonical(typed) == shown
    assert setting.canonical(shown) == shown  # what is stored reads back the same


@pytest.mark.parametrize(
    ("name", "typed", "allowed"),
    [
        ("steps", "0", "a whole number from 1 to this server's max_steps"),
        ("steps", "many", "a whole number from 1 to this server's max_steps"),
        ("size", "500x512", "multiple of 64"),
        ("size", "512", "multiple of 64"),
        ("sampler", "euler", "one of k_"),
        ("cfg_scale", "101", "a number from 0 to 100"),
        ("max_count", "21", "a whole number from 1 to 20"),
        ("max_prompt_length", "5", "a whole number from 16 to 6,000"),
        ("max_text_tokens", "4097", "a whole number from 16 to 4,096"),
        ("allowed_channels", "#general", "channel mentions or ids"),
        ("allowed_commands", "paint", "all, none, or some of: imagine"),
        ("nsfw_policy", "sometimes", "one of age_restricted_only, off"),
        ("allow_anonymous", "maybe", "on or off"),
        ("rerun_emoji", "R", "one emoji"),
        ("visibility", "secret", "one of public, private"),
        ("log_channel", "<#222222222222222222> <#333333333333333333>", "one channel"),
        ("daily_kudos_member", "-1", "from 0 to 10,000,000"),
    ],
)
def test_an_invalid_value_names_the_setting_and_what_is_allowed(name: str, typed: str, allowed: str) -> None:
    with pytest.raises(SettingValueError) as caught:
        REGISTRY[name].read(typed)
    assert caught.value.user_message.startswith(f"`{name}`")
    assert allowed in caught.value.user_message


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences"),
        ("foo(?!bar)", "lookahead"),
        ("a" * 201, "1 to 200 characters"),
        ("(unclosed", "invalid regular expression"),
    ],
)
def test_patterns_that_cannot_be_matched_safely_are_refused_naming_them(pattern: str, why: str) -> None:
    with pytest.raises(SettingValueError, match=re.escape(why)) as caught:
        REGISTRY["blocked_patterns"].read(json.dumps(["fine", pattern]))
    assert f"“{pattern[:60]}”" in caught.value.user_message
    assert "without backreferences, lookaround" in caught.value.user_message  # what is allowed


@pytest.mark.parametrize("pattern", ["(a+)+$", r"(\w*x)*", "a.*b.*c", "(a|aa)*b", r"\bcat\b"])
def test_patterns_refused_for_their_shape_before_re2_are_accepted(pattern: str) -> None:
    assert REGISTRY["blocked_patterns"].read(pattern) == (pattern,)


def test_stored_patterns_that_re2_cannot_match_are_dropped_and_shown(
    service: GuildSettingsService, caplog: pytest.LogCaptureFixture
) -> None:
    # Saved before patterns ran on RE2: the lookbehind is dropped, the other pattern still blocks.
    stored = json.dumps(["sp[a4]m", "(?<=x)ray"])
    config = build_config(GUILD, DEFAULTS, {"blocked_patterns": stored})
    assert config.blocked_patterns == ("sp[a4]m",)
    assert config.blocked_term_in("SPAM") == "a blocked pattern"
    assert config.blocked_term_in("xray") is None
    [shown] = [entry for entry in service.show(config) if entry.name == "blocked_patterns not applied"]
    assert shown.value.startswith("“(?<=x)ray”: lookahead and lookbehind")
    assert "no longer applied" in caplog.text


def test_a_safe_pattern_matches_case_insensitively() -> None:
    config = build_config(GUILD, DEFAULTS, {"blocked_patterns": r"b[a4]d\s+word"})
    assert config.blocked_term_in("a BAD   Word here") == "a blocked pattern"


def test_too_many_patterns_are_refused() -> None:
    with pytest.raises(SettingValueError, match="at most 25 patterns"):
        REGISTRY["blocked_patterns"].read(json.dumps([f"p{i}" for i in range(26)]))


def test_every_setting_has_a_group_a_description_and_a_valid_default() -> None:
    config = build_config(GUILD, DEFAULTS, {})
    for setting in SETTINGS:
        assert setting.description
        assert setting.allowed
        if not setting.secret:
            text = setting.format(config.values[setting.name])
            assert setting.canonical(text) == text


# -- GuildConfig ---------------------------------------------------------------------------------


def test_the_config_starts_from_the_config_toml_defaults() -> None:
    base = GenerationDefaults(model="Deliberate", steps=20, max_steps=40, allow_anonymous=False)
    config = build_config(GUILD, base, {})
    assert config.generation == base
    assert (config.values["model"], config.values["max_steps"], config.allow_anonymous) == (
        "Deliberate",
        40,
        False,
    )
    assert config.overridden == frozenset()


def test_overrides_apply_and_the_generation_defaults_follow() -> None:
    config = build_config(
        GUILD, DEFAULTS, {"steps": "12", "size": "768x512", "max_count": "2", "negative_prompt": "blurry"}
    )
    assert (config.generation.steps, config.generation.width, config.generation.height) == (12, 768, 512)
    assert (config.generation.max_n, config.generation.n) == (2, 1)
    assert config.negative_prompt_for("ugly") == "blurry, ugly"
    assert config.negative_prompt_for(None) == "blurry"
    assert config.overridden == {"steps", "size", "max_count", "negative_prompt"}


def test_stored_values_that_no_longer_fit_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # Stored under an older config.toml, or by hand: unknown, malformed, or now inconsistent.
    base = GenerationDefaults(steps=30, max_steps=50)
    config = build_config(
        GUILD, base, {"max_steps": "20", "steps": "many", "nope": "1", f"max_steps#{CHANNEL}": "3"}
    )
    assert config.generation.max_steps == 50  # 20 would be below the default steps (30)
    assert config.generation.steps == 30
    assert config.overridden == frozenset()
    assert "ignoring the stored setting 'nope'" in caplog.text


def test_blocked_words_match_whole_words_case_insensitively() -> None:
    config = build_config(
        GUILD, DEFAULTS, {"blocked_words": "gore, bad word", "blocked_patterns": "sp[a@]m+"}
    )
    assert config.blocked_term_in("Some GORE here") == "“gore”"
    assert config.blocked_term_in("gorex gorey and gorgeous") is None
    assert config.blocked_term_in("a Bad Word!") == "“bad word”"
    assert config.blocked_term_in("SP@MMM") == "a blocked pattern"
    assert config.blocked_term_in("a fox") is None


def test_per_channel_overrides_win_in_their_channel_only() -> None:
    config = build_config(
        GUILD,
        DEFAULTS,
        {f"nsfw_policy#{CHANNEL}": "off", f"allowed_commands#{CHANNEL}": "none", "visibility": "private"},
    )
    assert config.nsfw_allowed(CHANNEL, age_restricted=True) is False
    assert config.nsfw_allowed(CHANNEL + 1, age_restricted=True) is True
    assert config.nsfw_allowed(CHANNEL + 1, age_restricted=False) is False
    assert config.commands_in(CHANNEL) == frozenset()
    assert config.commands_in(CHANNEL + 1) is None
    assert config.visibility_in(CHANNEL) == "private"


# -- the service ---------------------------------------------------------------------------------


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


# -- the sponsor key -----------------------------------------------------------------------------


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
