"""/jobs list, /jobs show and the ✉️ reaction: a member's own jobs, a finished result posted again
(here, or by DM), with its buttons.

A reaction has no interaction to answer privately: when the DM can't be sent, a short notice in
the channel mentions only the reacting member and deletes itself after :data:`NOTICE_S`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any, Final, Self

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import BotError, UserInputError
from bot.services.controls import DM_COPY_EMOJI
from bot.services.delivery.limits import fit_embed
from bot.services.image.reactions import action_for
from bot.services.job_list import NO_JOBS, choice_name, overview, running_of
from bot.services.reposts import ResultCopies, ResultCopy
from bot.storage import JobRecord, JobState
from bot.tree import report_interaction_error
from cogs._jobs import NO_MENTIONS, cancel_job, is_age_restricted

log = logging.getLogger(__name__)

RECENT_READ: Final = 50
"""The member's newest jobs read for /jobs and its autocomplete."""
NOTICE_S: Final = 15.0
RUNNING_HEADER: Final = "**Running**"
FINISHED_HEADER: Final = "**Finished** (the last 10)"
NOT_YOURS: Final = "I can't find that generation among yours: pick one from the list as you type."
POSTED: Final = "Posted again here: {url}"
REPOSTED_BY: Final = "-# Posted again by <@{user_id}> with /jobs show."
DM_SENT_NOWHERE: Final = "I can't send you DMs (they are closed to me), so I couldn't send you that result."
CANCELLING: Final = "Cancelling `{job}`: its message says when it has stopped."


class JobsCancel(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"jobs:cancel:(?P<job_id>[0-9a-f]{32})",
):
    """Cancel on /jobs list: the same as the job's own Cancel (its member or a moderator)."""

    def __init__(self, job: JobRecord | str) -> None:
        job_id = job if isinstance(job, str) else job.id
        super().__init__(
            discord.ui.Button(
                label=f"Cancel {job_id[:8]}",
                style=discord.ButtonStyle.danger,
                emoji="✖️",
                custom_id=f"jobs:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            bot = interaction.client
            if not isinstance(bot, HordeBot):
                raise RuntimeError("no HordeBot to cancel a job")
            job = await bot.storage.jobs.get(self.job_id)
            if job is None:
                raise UserInputError(NOT_YOURS)
            await cancel_job(bot, interaction, job)
            await interaction.followup.send(CANCELLING.format(job=self.job_id[:8]), ephemeral=True)
        except Exception as exc:
            await report_interaction_error(interaction, exc)


class MemberJobs(
    commands.GroupCog, name="MemberJobs", group_name="jobs", group_description="Your generations."
):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.copies = ResultCopies(bot, bot.horde)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobsCancel)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobsCancel)

    @app_commands.command(name="list", description="Your running generations and your last 10 finished ones.")
    async def list_jobs(self, interaction: discord.Interaction) -> None:
        recent = await self.bot.storage.jobs.list_recent(interaction.user.id, RECENT_READ)
        active = {job.record.id: job for job in self.bot.jobs.active_jobs(user_id=interaction.user.id)}
        waiting = [job.id for job in running_of(recent) if job.state is JobState.PENDING]
        places = await self.bot.storage.submit_queue.places(waiting)
        shown = overview(recent, active, now=discord.utils.utcnow(), places=places)
        parts = []
        if shown.lines_running:
            parts.append("\n".join([RUNNING_HEADER, *shown.lines_running]))
        if shown.lines_finished:
            parts.append("\n".join([FINISHED_HEADER, *shown.lines_finished]))
        embed = discord.Embed(title="Your generations", description="\n\n".join(parts) or NO_JOBS)
        view = discord.ui.View(timeout=None)
        for job in shown.running:
            view.add_item(JobsCancel(job))
        await interaction.response.send_message(
            embed=fit_embed(embed), view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(description="Post a finished result of yours again here, with its buttons.")
    @app_commands.describe(job="Which generation (start typing its prompt or id).")
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[str, 1, 32]) -> None:
        record = await self._own_job(interaction.user.id, job)
        private = await self._private_here(interaction, record)
        await interaction.response.defer(ephemeral=True, thinking=True)
        copy = await self.copies.copy(record)
        view = self._view(record, private=private)
        if private:
            await interaction.followup.send(**_message(copy, view), ephemeral=True)
            return
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise UserInputError("I can't post in this channel.")
        copy = ResultCopy(
            f"{copy.content}\n{REPOSTED_BY.format(user_id=interaction.user.id)}", copy.embeds, copy.files
        )
        posted = await channel.send(**_message(copy, view))
        await interaction.followup.send(POSTED.format(url=posted.jump_url), ephemeral=True)

    @show.autocomplete("job")
    async def _job_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        recent = await self.bot.storage.jobs.list_recent(interaction.user.id, RECENT_READ)
        return [
            app_commands.Choice(name=choice_name(job), value=job.id)
            for job in recent
            if job.state.is_terminal
            and (not typed or job.id.startswith(typed) or typed in choice_name(job).lower())
        ][:25]

    async def _own_job(self, user_id: int, typed: str) -> JobRecord:
        """The member's job with this id (or the one whose id starts with it)."""
        typed = typed.strip().lower()
        recent = await self.bot.storage.jobs.list_recent(user_id, RECENT_READ)
        matches = [job for job in recent if job.id == typed] or [
            job for job in recent if job.id.startswith(typed)
        ]
        if len(matches) != 1:
            found = await self.bot.storage.jobs.get(typed)
            if found is None or found.user_id != user_id:
                raise UserInputError(NOT_YOURS)
            return found
        return matches[0]

    async def _private_here(self, interaction: discord.Interaction, job: JobRecord) -> bool:
        """Shown only to the member: a result that was private (a private reply), where this server
        shows results privately, and an NSFW result where NSFW isn't allowed."""
        config = await self.bot.guild_settings.get(interaction.guild_id)
        nsfw = json.loads(job.params_json).get("nsfw") is True
        return (
            job.message_id is None
            or config.visibility_in(interaction.channel_id) == "private"
            or (
                nsfw
                and not config.nsfw_allowed(
                    interaction.channel_id, age_restricted=is_age_restricted(interaction.channel)
                )
            )
        )

    def _view(self, job: JobRecord, *, private: bool) -> discord.ui.View | None:
        views = self.bot.delivery.views.get(job.kind)
        return views.result(job.id, private=private) if views is not None else None

    # -- ✉️ ----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.bot.user
        if str(payload.emoji) != DM_COPY_EMOJI or me is None or payload.user_id == me.id:
            return
        if payload.member is not None and payload.member.bot:
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return
        if payload.guild_id is not None:
            config = await self.bot.guild_settings.get(payload.guild_id)
            if action_for(DM_COPY_EMOJI, config) is not None:
                return  # the server gave ✉️ another meaning (a rerun or a gift)
        job = await self.bot.storage.jobs.get_by_message(payload.channel_id, payload.message_id)
        if job is None:
            return
        try:
            copy = await self.copies.copy(job)
            user = payload.member or await self.bot.fetch_user(payload.user_id)
            channel = await user.create_dm()
            await channel.send(**_message(copy, self._view(job, private=False)))
        except discord.Forbidden:
            await self._notice(payload, DM_SENT_NOWHERE)
        except BotError as exc:
            log.info("✉️ by Discord user %s on message %s: %s", payload.user_id, payload.message_id, exc)
            await self._notice(payload, exc.user_message)

    async def _notice(self, payload: discord.RawReactionActionEvent, text: str) -> None:
        """A short notice for the reacting member alone, deleted after :data:`NOTICE_S`."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        with contextlib.suppress(discord.HTTPException):
            await channel.send(
                f"<@{payload.user_id}> {text}",
                allowed_mentions=discord.AllowedMentions(
                    everyone=False, roles=False, users=[discord.Object(payload.user_id)]
                ),
                delete_after=NOTICE_S,
            )


def _message(copy: ResultCopy, view: discord.ui.View | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"content": copy.content, "embeds": copy.embeds, "allowed_mentions": NO_MENTIONS}
    if copy.files:
        fields["files"] = copy.files
    if view is not None:
        fields["view"] = view
    return fields


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.member_jobs needs a HordeBot")
    await bot.add_cog(MemberJobs(bot))
