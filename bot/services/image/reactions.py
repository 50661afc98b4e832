"""Reacting on an /imagine result: rerun it, rerun it with a new seed, delete it, or gift kudos.

A reaction has no interaction, so nothing can be answered privately. The Discord side therefore
stays quiet: a refused rerun or an unpaid gift is logged at INFO (see :mod:`cogs.imagine._reactions` for what
the member sees). A rerun goes through :meth:`~bot.services.policy.Policy.admit` with
``origin="reaction"`` like every other start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bot.errors import BotError
from bot.services.image.request import ImagineRequest, generation_context
from bot.services.image.rerun import exact_seed, rerun_request
from bot.services.kudos import KudosGift, KudosService
from bot.services.policy import GenerationContext, can_manage_job
from bot.services.settings.config import GuildConfig
from bot.services.settings.service import GuildSettingsService
from bot.storage import JobRecord, Storage

log = logging.getLogger(__name__)

NEW_SEED_EMOJI: Final = "🎲"
DELETE_EMOJI: Final = "❌"


class ReactionAction(StrEnum):
    rerun = "rerun"
    """The configured rerun emoji: the same request with the same seed (like the Same seed button)."""
    new_seed = "new_seed"
    delete = "delete"
    gift = "gift"


@dataclass(frozen=True, slots=True)
class ReactionEvent:
    """One added reaction, as Discord reported it."""

    guild_id: int | None
    channel_id: int
    message_id: int
    user_id: int
    emoji: str
    from_bot: bool = False
    message_author_id: int | None = None
    manages_messages: bool = False
    """Whether the member may manage messages in the channel (a moderator's ❌ deletes too)."""


@dataclass(frozen=True, slots=True)
class ReactionPlan:
    """What to do about a reaction on the result of ``job``."""

    action: ReactionAction
    job: JobRecord
    config: GuildConfig


def kudos_gifting_enabled(config: GuildConfig) -> bool:
    """Gifting moves a member's kudos, so ``kudos_reactions`` is off unless the server turns it on."""
    return config.kudos_reactions


def action_for(emoji: str, config: GuildConfig) -> ReactionAction | None:
    """The action ``emoji`` stands for on this server, if any (reruns win over gifting)."""
    if config.rerun_reactions and emoji == config.rerun_emoji:
        return ReactionAction.rerun
    if config.rerun_reactions and emoji == NEW_SEED_EMOJI:
        return ReactionAction.new_seed
    if emoji == DELETE_EMOJI:
        return ReactionAction.delete
    if kudos_gifting_enabled(config) and emoji == config.kudos_emoji:
        return ReactionAction.gift
    return None


def gift_context_id(message_id: int, reactor_id: int, emoji: str) -> str:
    """One gift per (message, member, emoji): reacting again never pays twice."""
    return f"reaction:{message_id}:{reactor_id}:{emoji}"


def rerun_for(
    plan: ReactionPlan, event: ReactionEvent, *, age_restricted: bool
) -> tuple[ImagineRequest, GenerationContext]:
    """The rerun a reaction asks for, for the reacting member, and what the policy must admit."""
    job = plan.job
    seed = exact_seed(job.params_json, job.result_json) if plan.action is ReactionAction.rerun else None
    allow_nsfw = plan.config.nsfw_allowed(event.channel_id, age_restricted=age_restricted)
    imagine = rerun_request(job.request_json, job.params_json, seed=seed, allow_nsfw=allow_nsfw)
    context = generation_context(
        imagine.params,
        "reaction",
        user_id=event.user_id,
        guild_id=event.guild_id,
        channel_id=event.channel_id,
        age_restricted=age_restricted,
    )
    return imagine, context


class ReactionService:
    def __init__(
        self,
        storage: Storage,
        settings: GuildSettingsService,
        kudos: KudosService,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._kudos = kudos

    async def plan(self, event: ReactionEvent, *, bot_user_id: int) -> ReactionPlan | None:
        """What to do, or ``None`` when the reaction means nothing to the bot.

        Ignored: reactions by bots (the bot's own included), outside servers, on messages that are
        not an image job's, unknown emoji, reruns of a job still running, and ❌ by anyone but the
        member who started the job or a moderator (like the Delete button).
        """
        if event.from_bot or event.user_id == bot_user_id or event.guild_id is None:
            return None
        if event.message_author_id is not None and event.message_author_id != bot_user_id:
            return None
        config = await self._settings.get(event.guild_id)
        action = action_for(event.emoji, config)
        if action is None:
            return None
        job = await self._storage.jobs.get_by_message(event.channel_id, event.message_id)
        if job is None or job.kind != "image":
            return None
        if action is ReactionAction.delete and not can_manage_job(
            job, event.user_id, manages_messages=event.manages_messages
        ):
            return None
        if action in (ReactionAction.rerun, ReactionAction.new_seed) and not job.state.is_terminal:
            return None
        return ReactionPlan(action=action, job=job, config=config)

    async def gift(self, plan: ReactionPlan, event: ReactionEvent) -> KudosGift | None:
        """Send the reacting member's kudos to the job's requester; ``None`` (logged) if not paid."""
        try:
            return await self._kudos.give(
                giver_id=event.user_id,
                receiver_id=plan.job.user_id,
                receiver_name=f"Discord user {plan.job.user_id}",
                amount=plan.config.kudos_amount,
                context_id=gift_context_id(event.message_id, event.user_id, event.emoji),
            )
        except BotError as exc:
            log.info(
                "Kudos reaction by Discord user %s on message %s not paid: %s",
                event.user_id,
                event.message_id,
                exc,
            )
            return None
