"""The policy layer: every rule, for each origin, on a real SQLite journal."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing, binding
from bot.errors import NotLoggedInError
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.accounts import AccountService
from bot.services.policy import GenerationContext, Origin, Policy, PolicyError, start_of_day
from bot.services.settings.registry import MAX_COOLDOWN_S
from bot.services.settings.service import GuildSettingsService
from bot.storage import (
    GuildSponsorKeyRecord,
    JobRecord,
    JobState,
    KeyOwner,
    SQLiteStorage,
    SQLiteURL,
    UserRecord,
)

GUILD = 100
CHANNEL = 200_000_000_000_000_000
OTHER_CHANNEL = 300_000_000_000_000_000
ADMIN = 1
ALICE = 10
BOB = 11
ALICE_KEY = "alice-own-key-000000001"
SPONSOR_KEY = "sponsor-key-0000000001"
NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
ORIGINS: tuple[Origin, ...] = ("command", "button", "reaction")


class Clock:
    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.now = NOW


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings_service(storage: SQLiteStorage, keyring: KeyRing) -> GuildSettingsService:
    # No test here reaches the Horde: sponsor keys are stored directly.
    return GuildSettingsService(
        storage, GenerationDefaults(), keyring=keyring, horde=AIHordeAPIAsyncSimpleClient()
    )


@pytest.fixture
def policy(
    storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService, clock: Clock
) -> Policy:
    accounts = AccountService(storage, keyring, AIHordeAPIAsyncSimpleClient())
    return Policy(
        settings_service,
        accounts,
        storage,
        monotonic=lambda: clock.monotonic,
        wall_clock=lambda: clock.now,
    )


def context(origin: Origin = "command", **changes: Any) -> GenerationContext:
    base = GenerationContext(
        origin=origin,
        command="imagine",
        user_id=BOB,
        guild_id=GUILD,
        channel_id=CHANNEL,
        age_restricted=False,
        prompt="a red fox",
        negative_prompt="",
        model="stable_diffusion",
        steps=30,
        width=512,
        height=512,
        n=1,
        nsfw=False,
    )
    return dataclasses.replace(base, **changes)


async def configure(service: GuildSettingsService, channel_id: int | None = None, **values: str) -> None:
    for name, value in values.items():
        await service.set(GUILD, name, value, ADMIN, channel_id=channel_id)


async def refused(policy: Policy, ctx: GenerationContext) -> str:
    with pytest.raises(PolicyError) as caught:
        await policy.check_generation(ctx)
    return caught.value.user_message


async def add_job(
    storage: SQLiteStorage,
    *,
    user_id: int = BOB,
    kudos: float | None = 10.0,
    key_owner: KeyOwner = "anonymous",
    created_at: datetime = NOW,
    state: JobState = JobState.DONE,
    guild_id: int = GUILD,
) -> None:
    await storage.jobs.create(
        JobRecord(
            kind="image",
            state=state,
            horde_id="h" * 8 + str(created_at.timestamp()) + str(user_id)
            if state is JobState.SUBMITTED
            else None,
            guild_id=guild_id,
            channel_id=CHANNEL,
            user_id=user_id,
            key_owner=key_owner,
            request_json="{}",
            params_json="{}",
            kudos=kudos,
            created_at=created_at,
            updated_at=created_at,
        )
    )


# -- the defaults let everything through ---------------------------------------------------------


@pytest.mark.parametrize("origin", ORIGINS)
async def test_by_default_a_member_generates_anonymously(policy: Policy, origin: Origin) -> None:
    decision = await policy.check_generation(context(origin))
    assert decision.key.owner == "anonymous"
    assert decision.visibility == "public"
    assert not decision.ephemeral


# -- where ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ORIGINS)
async def test_blocked_and_not_allowed_channels_are_refused(
    policy: Policy, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, blocked_channels=str(CHANNEL))
    assert "isn't allowed in this channel" in await refused(policy, context(origin))
    await policy.check_generation(context(origin, channel_id=OTHER_CHANNEL))

    await configure(settings_service, blocked_channels="none", allowed_channels=str(OTHER_CHANNEL))
    message = await refused(policy, context(origin))
    assert f"Try <#{OTHER_CHANNEL}>." in message
    await policy.check_generation(context(origin, channel_id=OTHER_CHANNEL))


@pytest.mark.parametrize("origin", ORIGINS)
async def test_a_command_can_be_turned_off_in_one_channel(
    policy: Policy, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, channel_id=CHANNEL, allowed_commands="none")
    assert await refused(policy, context(origin)) == "`/imagine` isn't allowed in this channel."
    await policy.check_generation(context(origin, channel_id=OTHER_CHANNEL))


@pytest.mark.parametrize("origin", ORIGINS)
async def test_nsfw_needs_an_age_restricted_channel_and_the_policy(
    policy: Policy, settings_service: GuildSettingsService, origin: Origin
) -> None:
    assert await refused(policy, context(origin, nsfw=True)) == "NSFW generations aren't allowed here."
    await policy.check_generation(context(origin, nsfw=True, age_restricted=True))

    await configure(settings_service, channel_id=CHANNEL, nsfw_policy="off")
    assert "NSFW" in await refused(policy, context(origin, nsfw=True, age_restricted=True))
    await policy.check_generation(context(origin, nsfw=True, age_restricted=True, channel_id=OTHER_CHANNEL))


# -- what ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ORIGINS)
async def test_models_must_be_allowed_and_not_blocked(
    policy: Policy, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, blocked_models="Deliberate")
    assert "“Deliberate” isn't allowed" in await refused(policy, context(origin, model="Deliberate"))

    await configure(settings_service, allowed_models="stable_diffusion, AlbedoBase XL")
    message = await refused(policy, context(origin, model="Anything"))
    assert message.endswith("Allowed here: AlbedoBase XL, stable_diffusion.")
    await policy.check_generation(context(origin, model="AlbedoBase XL"))


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"prompt": "so much GORE"}, "The prompt contains “gore”"),
        ({"negative_prompt": "gore"}, "The negative prompt contains “gore”"),
        ({"prompt": "free sp4m here"}, "The prompt contains a blocked pattern"),
    ],
)
async def test_blocked_words_and_patterns_are_caught(
    policy: Policy,
    settings_service: GuildSettingsService,
    origin: Origin,
    changes: dict[str, str],
    expected: str,
) -> None:
    await configure(settings_service, blocked_words="gore", blocked_patterns="sp[a4]m")
    assert (await refused(policy, context(origin, **changes))).startswith(expected)
    await policy.check_generation(context(origin, prompt="gorgeous spa"))


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize(
    ("setting", "value", "changes", "expected"),
    [
        ("max_steps", "30", {"steps": 31}, "Steps must be between 1 and 30 on this server."),
        ("max_pixels", "262144", {"width": 1024, "height": 512}, "at most 262,144 pixels"),
        ("max_count", "2", {"n": 3}, "Count must be between 1 and 2 on this server."),
        (
            "max_prompt_length",
            "20",
            {"prompt": "x" * 15, "negative_prompt": "y" * 6},
            "at most 20 characters",
        ),
    ],
)
async def test_each_limit_is_enforced(
    policy: Policy,
    settings_service: GuildSettingsService,
    origin: Origin,
    setting: str,
    value: str,
    changes: dict[str, Any],
    expected: str,
) -> None:
    if setting == "max_pixels":
        await configure(settings_service, size="512x512")
    await configure(settings_service, **{setting: value})
    assert expected in await refused(policy, context(origin, **changes))


async def test_limits_at_the_bound_pass(policy: Policy, settings_service: GuildSettingsService) -> None:
    await configure(settings_service, max_steps="30", max_count="2", max_prompt_length="20")
    await policy.check_generation(context(steps=30, n=2, prompt="x" * 14, negative_prompt="y" * 6))


# -- who pays ------------------------------------------------------------------------------------


async def set_sponsor(storage: SQLiteStorage, keyring: KeyRing, service: GuildSettingsService) -> None:
    await storage.sponsor_keys.set(
        GuildSponsorKeyRecord(
            guild_id=GUILD,
            encrypted_api_key=keyring.encrypt(SPONSOR_KEY, bound_to=binding("guild", GUILD)),
            horde_username="patron#9",
            updated_by=ADMIN,
        )
    )
    service.invalidate(GUILD)


async def login(storage: SQLiteStorage, keyring: KeyRing, user_id: int = ALICE) -> None:
    await storage.users.upsert(
        UserRecord(
            discord_id=user_id,
            encrypted_api_key=keyring.encrypt(ALICE_KEY, bound_to=binding("user", user_id)),
            horde_user_id=1,
            horde_username="alice#1",
        )
    )


async def test_own_key_then_sponsor_key_then_anonymous(
    policy: Policy, storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService
) -> None:
    await login(storage, keyring)
    await set_sponsor(storage, keyring, settings_service)

    own = await policy.check_generation(context(user_id=ALICE))
    sponsored = await policy.check_generation(context(user_id=BOB))
    in_a_dm = await policy.check_generation(context(user_id=BOB, guild_id=None, channel_id=None))

    assert (own.key.owner, own.key.apikey) == ("user", ALICE_KEY)
    assert (sponsored.key.owner, sponsored.key.apikey, sponsored.key.horde_username) == (
        "sponsor",
        SPONSOR_KEY,
        "patron#9",
    )
    assert SPONSOR_KEY not in repr(sponsored)
    assert in_a_dm.key.owner == "anonymous"


async def test_without_anonymous_access_a_member_needs_a_key(
    policy: Policy, storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, allow_anonymous="off")
    with pytest.raises(NotLoggedInError, match="doesn't allow generating with the anonymous key"):
        await policy.check_generation(context())

    await set_sponsor(storage, keyring, settings_service)
    assert (await policy.check_generation(context())).key.owner == "sponsor"


# -- budgets -------------------------------------------------------------------------------------


def test_the_budget_day_starts_at_midnight_utc() -> None:
    assert start_of_day(NOW) == datetime(2026, 3, 4, tzinfo=UTC)


@pytest.mark.parametrize("origin", ORIGINS)
async def test_an_exhausted_member_budget_blocks_that_member(
    policy: Policy, storage: SQLiteStorage, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, daily_kudos_member="25")
    await add_job(storage, kudos=10)
    await add_job(storage, kudos=None)  # still running: no cost yet
    await add_job(storage, kudos=500, created_at=NOW - timedelta(days=1))  # yesterday's
    await add_job(storage, kudos=500, key_owner="user")  # on the member's own key
    await add_job(storage, kudos=500, guild_id=GUILD + 1)  # in another server
    await policy.check_generation(context(origin))

    await add_job(storage, kudos=15, key_owner="sponsor")

    message = await refused(policy, context(origin))
    assert message.startswith("Your daily kudos budget (25) is used up (25 spent).")
    assert "in about 8 h" in message
    await policy.check_generation(context(origin, user_id=ALICE))


async def test_an_exhausted_server_budget_blocks_everyone_on_shared_keys(
    policy: Policy, storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, daily_kudos_server="30")
    await add_job(storage, user_id=BOB, kudos=20)
    await add_job(storage, user_id=ALICE, kudos=10)

    assert "This server's daily kudos budget (30) is used up" in await refused(policy, context(user_id=BOB))
    assert "This server's daily kudos budget" in await refused(policy, context(user_id=ALICE + 5))
    await login(storage, keyring, ALICE)
    assert (await policy.check_generation(context(user_id=ALICE))).key.owner == "user"


async def test_the_budget_restarts_the_next_day(
    policy: Policy, storage: SQLiteStorage, settings_service: GuildSettingsService, clock: Clock
) -> None:
    await configure(settings_service, daily_kudos_member="5")
    await add_job(storage, kudos=5)
    await refused(policy, context())

    clock.now = start_of_day(NOW) + timedelta(days=1)
    await policy.check_generation(context())


# -- how often -----------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ORIGINS)
async def test_the_cooldown_counts_from_the_last_admitted_start(
    policy: Policy, settings_service: GuildSettingsService, clock: Clock, origin: Origin
) -> None:
    await configure(settings_service, cooldown_seconds="60")
    async with policy.admit(context("command")):
        pass

    clock.monotonic += 45
    assert (await refused(policy, context(origin))).endswith("Try again in 15 seconds.")
    await policy.check_generation(context(origin, user_id=ALICE))

    clock.monotonic += 15
    await policy.check_generation(context(origin))


async def test_cooldowns_are_remembered_for_a_bounded_number_of_members(
    storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService, clock: Clock
) -> None:
    accounts = AccountService(storage, keyring, AIHordeAPIAsyncSimpleClient())
    policy = Policy(settings_service, accounts, storage, monotonic=lambda: clock.monotonic, max_tracked=3)
    await configure(settings_service, cooldown_seconds="60")
    for member in range(1000, 1010):
        async with policy.admit(context(user_id=member)):
            clock.monotonic += 1
    assert list(policy._last_start) == [(GUILD, 1007), (GUILD, 1008), (GUILD, 1009)]
    assert "Try again in" in await refused(policy, context(user_id=1009))  # the latest still wait

    # A start older than the longest possible cooldown can refuse no one: it is forgotten.
    clock.monotonic += MAX_COOLDOWN_S
    async with policy.admit(context(user_id=ALICE)):
        pass
    assert list(policy._last_start) == [(GUILD, ALICE)]


@pytest.mark.parametrize("origin", ORIGINS)
async def test_running_jobs_count_against_the_concurrency_limits(
    policy: Policy, storage: SQLiteStorage, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, max_jobs_member="1", max_jobs_server="2")
    await add_job(storage, user_id=BOB, state=JobState.PENDING)
    await add_job(storage, user_id=BOB, state=JobState.DONE)
    await add_job(storage, user_id=ALICE, state=JobState.PENDING, guild_id=GUILD + 1)

    assert "at most 1 generation(s) at once here" in await refused(policy, context(origin))
    await policy.check_generation(context(origin, user_id=ALICE))

    await add_job(storage, user_id=ALICE + 1, state=JobState.SUBMITTED)
    assert "This server runs at most 2" in await refused(policy, context(origin, user_id=ALICE))


async def test_admitted_starts_hold_their_slot_until_journalled(
    policy: Policy, storage: SQLiteStorage, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, max_jobs_member="1")
    async with policy.admit(context()):
        # Not journalled yet, but a second start by the same member must not slip through.
        assert "at most 1 generation(s)" in await refused(policy, context("button"))
        await add_job(storage, state=JobState.PENDING)
    assert "at most 1 generation(s)" in await refused(policy, context())
    assert repr(policy) == "Policy(starting=0)"


async def test_a_refused_start_takes_no_slot_and_starts_no_cooldown(
    policy: Policy, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, cooldown_seconds="60", blocked_words="gore")
    with pytest.raises(PolicyError):
        async with policy.admit(context(prompt="gore")):
            pytest.fail("a refused start must not run")
    await policy.check_generation(context())
    assert repr(policy) == "Policy(starting=0)"


# -- text and alchemy ----------------------------------------------------------------------------


def text_context(origin: Origin = "command", **changes: Any) -> GenerationContext:
    base = GenerationContext(
        origin=origin,
        command="write",
        user_id=BOB,
        guild_id=GUILD,
        channel_id=CHANNEL,
        age_restricted=False,
        prompt="Once upon a time",
        kind="text",
    )
    return dataclasses.replace(base, **changes)


def alchemy_context(origin: Origin = "command") -> GenerationContext:
    return GenerationContext(
        origin=origin,
        command="alchemy",
        user_id=BOB,
        guild_id=GUILD,
        channel_id=CHANNEL,
        age_restricted=False,
        prompt="",
        kind="alchemy",
    )


@pytest.mark.parametrize("origin", ORIGINS)
async def test_text_and_alchemy_follow_the_channel_rules(
    policy: Policy, settings_service: GuildSettingsService, origin: Origin
) -> None:
    await configure(settings_service, channel_id=CHANNEL, allowed_commands="imagine")
    assert await refused(policy, text_context(origin)) == "`/write` isn't allowed in this channel."
    assert await refused(policy, alchemy_context(origin)) == "`/alchemy` isn't allowed in this channel."
    await policy.check_generation(context(origin))

    await configure(settings_service, blocked_channels=str(OTHER_CHANNEL))
    for ctx in (
        text_context(origin, channel_id=OTHER_CHANNEL),
        dataclasses.replace(alchemy_context(origin), channel_id=OTHER_CHANNEL),
    ):
        assert "isn't allowed in this channel" in await refused(policy, ctx)


async def test_a_text_prompt_is_filtered_but_not_limited_in_characters(
    policy: Policy, settings_service: GuildSettingsService
) -> None:
    # For text, the request builder checks the typed prompt's length (a continued prompt may grow
    # past max_prompt_length); the policy only filters it.
    await configure(
        settings_service, max_prompt_length="20", blocked_words="gore", blocked_patterns="sp[a4]m"
    )
    await policy.check_generation(text_context(prompt="x" * 500))

    assert (await refused(policy, text_context(prompt="A tale of gore"))).startswith(
        "The prompt contains “gore”"
    )
    assert "a blocked pattern" in await refused(policy, text_context(prompt="sp4m " * 100))


async def test_a_job_without_a_model_passes_the_model_rules(
    policy: Policy, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, allowed_models="stable_diffusion")
    await policy.check_generation(text_context())
    await policy.check_generation(alchemy_context())

    message = await refused(policy, text_context(model="koboldcpp/SimLlama-8B"))
    assert message.startswith("The model “koboldcpp/SimLlama-8B” isn't allowed on this server.")


async def test_an_empty_prompt_is_not_matched_against_the_patterns(
    policy: Policy, settings_service: GuildSettingsService
) -> None:
    # A pattern that matches the empty string must not refuse alchemy, which has no prompt at all.
    await configure(settings_service, blocked_patterns="x*")
    await policy.check_generation(alchemy_context())
    assert "a blocked pattern" in await refused(policy, text_context())


async def test_text_and_alchemy_choose_the_key_like_images(
    policy: Policy, storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService
) -> None:
    await configure(settings_service, allow_anonymous="off")
    for ctx in (text_context(), alchemy_context()):
        with pytest.raises(NotLoggedInError):
            await policy.check_generation(ctx)

    await set_sponsor(storage, keyring, settings_service)
    await login(storage, keyring, ALICE)
    assert (await policy.check_generation(text_context())).key.owner == "sponsor"
    assert (await policy.check_generation(alchemy_context())).key.apikey == SPONSOR_KEY
    assert (await policy.check_generation(text_context(user_id=ALICE))).key.apikey == ALICE_KEY
