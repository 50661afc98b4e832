"""What a reaction on an /imagine result means, on a real SQLite journal (no Discord, no Horde)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.accounts import AccountService
from bot.services.image.reactions import (
    ReactionAction,
    ReactionEvent,
    ReactionService,
    action_for,
    gift_context_id,
    kudos_gifting_enabled,
    rerun_for,
)
from bot.services.image.request import ImagineOptions, build_request
from bot.services.kudos import KudosService
from bot.services.settings.service import GuildSettingsService
from bot.storage import JobRecord, JobState, SQLiteStorage, SQLiteURL

GUILD = 100
CHANNEL = 200
MESSAGE = 300
BOT = 1
ADMIN = 2
ALICE = 10
BOB = 11


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as opened:
        yield opened


@pytest.fixture
def settings_service(storage: SQLiteStorage, keyring: KeyRing) -> GuildSettingsService:
    return GuildSettingsService(
        storage, GenerationDefaults(), keyring=keyring, horde=AIHordeAPIAsyncSimpleClient()
    )


@pytest.fixture
def service(
    storage: SQLiteStorage, keyring: KeyRing, settings_service: GuildSettingsService
) -> ReactionService:
    # Nothing here reaches the Horde: the kudos tests stop before the transfer.
    horde = AIHordeAPIAsyncSimpleClient()
    kudos = KudosService(storage, AccountService(storage, keyring, horde), horde)
    return ReactionService(storage, settings_service, kudos)


async def add_job(
    storage: SQLiteStorage, *, state: JobState = JobState.DONE, kind: str = "image"
) -> JobRecord:
    imagine = build_request(
        ImagineOptions(prompt="a fox", seed="7", n=2), GenerationDefaults(), allow_nsfw=False
    )
    job = await storage.jobs.create(
        JobRecord(
            kind=kind,  # type: ignore[arg-type]
            guild_id=GUILD,
            channel_id=CHANNEL,
            message_id=MESSAGE,
            user_id=ALICE,
            key_owner="anonymous",
            request_json=imagine.request.model_dump_json(exclude_unset=True),
            params_json=imagine.params_json,
        )
    )
    if state is not JobState.PENDING:
        job = await storage.jobs.update(job.id, state=state)
    return job


def event(emoji: str, user_id: int = BOB, **overrides: object) -> ReactionEvent:
    fields: dict[str, object] = {
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "message_id": MESSAGE,
        "user_id": user_id,
        "emoji": emoji,
    }
    return ReactionEvent(**(fields | overrides))  # type: ignore[arg-type]


async def test_the_emoji_map_to_actions(settings_service: GuildSettingsService) -> None:
    config = await settings_service.get(GUILD)
    assert action_for("🔁", config) is ReactionAction.rerun
    assert action_for("🎲", config) is ReactionAction.new_seed
    assert action_for("❌", config) is ReactionAction.delete
    assert action_for("⭐", config) is None  # gifting is off until the server turns it on
    assert action_for("👍", config) is None


async def test_gifting_needs_the_server_to_switch_it_on(settings_service: GuildSettingsService) -> None:
    assert not kudos_gifting_enabled(await settings_service.get(GUILD))

    await settings_service.set(GUILD, "kudos_reactions", "on", ADMIN)
    await settings_service.set(GUILD, "kudos_emoji", "💎", ADMIN)

    config = await settings_service.get(GUILD)
    assert kudos_gifting_enabled(config)
    assert action_for("💎", config) is ReactionAction.gift
    assert action_for("⭐", config) is None


def test_the_gift_context_is_the_same_for_the_same_reaction_only() -> None:
    assert gift_context_id(1, 2, "⭐") == gift_context_id(1, 2, "⭐")
    assert len({gift_context_id(1, 2, "⭐"), gift_context_id(1, 3, "⭐"), gift_context_id(9, 2, "⭐")}) == 3
    assert gift_context_id(1, 2, "⭐") != gift_context_id(1, 2, "💎")


async def test_a_rerun_reaction_on_a_finished_image_job_is_planned(
    service: ReactionService, storage: SQLiteStorage
) -> None:
    job = await add_job(storage)

    plan = await service.plan(event("🔁"), bot_user_id=BOT)

    assert plan is not None
    assert (plan.action, plan.job.id) == (ReactionAction.rerun, job.id)


@pytest.mark.parametrize(
    "reaction",
    [
        event("🔁", user_id=BOT),
        event("🔁", from_bot=True),
        event("🔁", guild_id=None),
        event("🔁", message_author_id=999),
        event("🔁", message_id=MESSAGE + 1),
        event("👍"),
        event("❌", user_id=BOB),
    ],
    ids=["own", "bot", "dm", "other-author", "other-message", "unknown-emoji", "cross-by-other"],
)
async def test_ignored_reactions(
    service: ReactionService, storage: SQLiteStorage, reaction: ReactionEvent
) -> None:
    await add_job(storage)

    assert await service.plan(reaction, bot_user_id=BOT) is None


async def test_the_requester_may_delete(service: ReactionService, storage: SQLiteStorage) -> None:
    await add_job(storage)

    plan = await service.plan(event("❌", user_id=ALICE), bot_user_id=BOT)

    assert plan is not None
    assert plan.action is ReactionAction.delete


async def test_a_running_job_is_not_rerun(service: ReactionService, storage: SQLiteStorage) -> None:
    await add_job(storage, state=JobState.PENDING)
    assert await service.plan(event("🔁"), bot_user_id=BOT) is None


async def test_text_jobs_are_not_rerun(service: ReactionService, storage: SQLiteStorage) -> None:
    await add_job(storage, kind="text")
    assert await service.plan(event("🔁"), bot_user_id=BOT) is None


async def test_the_rerun_keeps_the_seed_and_the_dice_drops_it(
    service: ReactionService, storage: SQLiteStorage
) -> None:
    await add_job(storage)

    same = await service.plan(event("🔁"), bot_user_id=BOT)
    new = await service.plan(event("🎲"), bot_user_id=BOT)
    assert same is not None
    assert new is not None

    same_request, context = rerun_for(same, event("🔁"), age_restricted=False)
    new_request, _ = rerun_for(new, event("🎲"), age_restricted=False)
    assert json.loads(same_request.request.model_dump_json(exclude_unset=True))["params"]["seed"] == "7"
    assert "seed" not in json.loads(new_request.request.model_dump_json(exclude_unset=True))["params"]
    assert (context.origin, context.user_id, context.channel_id, context.n) == ("reaction", BOB, CHANNEL, 2)


async def test_a_gift_from_a_member_who_is_not_logged_in_is_not_paid(
    service: ReactionService, storage: SQLiteStorage, settings_service: GuildSettingsService
) -> None:
    await add_job(storage)
    await settings_service.set(GUILD, "kudos_reactions", "on", ADMIN)
    plan = await service.plan(event("⭐"), bot_user_id=BOT)
    assert plan is not None
    assert plan.action is ReactionAction.gift

    assert await service.gift(plan, event("⭐")) is None
