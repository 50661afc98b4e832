"""Reactions on /imagine results: the rerun emoji (default 🔁) reruns with the same seed, 🎲 with a
new one, ❌ from the requester (or a moderator) deletes, and the kudos emoji gifts kudos where the
server enabled it.

A reaction has no interaction to answer privately, and a public reply would be noise. So when the
policy refuses a rerun, the bot removes the member's reaction if it may (Manage Messages), which
shows that nothing happened, and otherwise does nothing; either way it logs the reason at INFO.
"""

from __future__ import annotations

import contextlib
import logging

import discord
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import BotError
from bot.services.image.reactions import (
    ReactionAction,
    ReactionEvent,
    ReactionPlan,
    ReactionService,
    rerun_for,
)
from cogs._jobs import is_age_restricted, launch_in_channel
from cogs.imagine._launch import IMAGE

log = logging.getLogger(__name__)


class Reactions(commands.Cog, name="Reactions"):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.service = ReactionService(bot.storage, bot.guild_settings, bot.kudos)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.bot.user
        if me is None:
            return
        event = ReactionEvent(
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            message_id=payload.message_id,
            user_id=payload.user_id,
            emoji=str(payload.emoji),
            from_bot=payload.member is not None and payload.member.bot,
            message_author_id=payload.message_author_id,
            manages_messages=self._manages_messages(payload),
        )
        plan = await self.service.plan(event, bot_user_id=me.id)
        if plan is None:
            return
        match plan.action:
            case ReactionAction.delete:
                with contextlib.suppress(discord.NotFound):
                    await self._message(payload).delete()
            case ReactionAction.gift:
                await self.service.gift(plan, event)
            case ReactionAction.rerun | ReactionAction.new_seed:
                await self._rerun(plan, event, payload)

    async def _rerun(
        self, plan: ReactionPlan, event: ReactionEvent, payload: discord.RawReactionActionEvent
    ) -> None:
        channel = self.bot.get_channel(payload.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        imagine, context = rerun_for(plan, event, age_restricted=is_age_restricted(channel))
        try:
            async with self.bot.policy.admit(context) as decision:
                await launch_in_channel(
                    self.bot,
                    channel,
                    IMAGE.launch(imagine.request, imagine.params),
                    decision.key,
                    user_id=event.user_id,
                    guild_id=event.guild_id,
                )
        except BotError as exc:
            log.info(
                "Reaction rerun by Discord user %s on message %s refused: %s",
                event.user_id,
                event.message_id,
                exc,
            )
            await self._withdraw(channel, payload)

    async def _withdraw(self, channel: object, payload: discord.RawReactionActionEvent) -> None:
        """Remove the member's reaction, if the bot may."""
        if not isinstance(channel, discord.abc.GuildChannel):
            return
        if not channel.permissions_for(channel.guild.me).manage_messages:
            return
        with contextlib.suppress(discord.HTTPException):
            await self._message(payload).remove_reaction(payload.emoji, discord.Object(payload.user_id))

    def _manages_messages(self, payload: discord.RawReactionActionEvent) -> bool:
        channel = self.bot.get_channel(payload.channel_id)
        if payload.member is None or not isinstance(channel, discord.abc.GuildChannel):
            return False
        return channel.permissions_for(payload.member).manage_messages

    def _message(self, payload: discord.RawReactionActionEvent) -> discord.PartialMessage:
        return self.bot.get_partial_messageable(payload.channel_id).get_partial_message(payload.message_id)
