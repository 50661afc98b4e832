"""/alchemy and the "Describe image" / "Upscale image" message menus: caption, tag, check or
post-process an image with the AI Horde."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import UserInputError
from bot.services.alchemy import (
    DESCRIBE_FORM,
    UPSCALE_FORM,
    AlchemyParams,
    SourceImage,
    alchemy_choices,
    build_alchemy_request,
    check_source_attachment,
    first_image,
    prepare_source_image,
    render_alchemy_progress,
    render_alchemy_result,
)
from bot.services.delivery import MessageJobListener, MessageTarget, journalled_params
from bot.services.jobs import DeliveredImage, JobListener, JobOutcome
from bot.storage import JobRecord
from bot.tree import report_interaction_error
from cogs.write import job_context, require_manager

COG_NAME: Final = "Alchemy"
UNKNOWN_JOB: Final = "I can't find this job any more."
ALREADY_FINISHED: Final = "This job has already finished."
DOWNLOAD_FAILED: Final = "I couldn't download the image from Discord. Please try again."
FILE_STEM: Final = "alchemy"


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"alchemy:cancel:(?P<job_id>[0-9a-f]{32})",
):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.danger,
                emoji="✖️",
                custom_id=f"alchemy:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            client = interaction.client
            cog = client.get_cog(COG_NAME) if isinstance(client, commands.Bot) else None
            if not isinstance(cog, Alchemy):
                raise RuntimeError(f"no {COG_NAME} cog to handle {self.custom_id}")
            await cog.cancel(interaction, self.job_id)
        except Exception as exc:
            await report_interaction_error(interaction, exc)


def _cancel_view(job: JobRecord) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job.id))
    return view


def _file(image: DeliveredImage) -> discord.File:
    return discord.File(io.BytesIO(image.data), filename=image.filename(FILE_STEM))


class Alchemy(commands.Cog, name=COG_NAME):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self._menus = (
            app_commands.ContextMenu(name="Describe image", callback=self.describe_image),
            app_commands.ContextMenu(name="Upscale image", callback=self.upscale_image),
        )

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)
        self.bot.jobs.set_listener_factory("alchemy", self.listener_for)
        for menu in self._menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)
        for menu in self._menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    @app_commands.command(description="Caption, tag, check or post-process an image with the AI Horde.")
    @app_commands.describe(image="The image (PNG, JPEG or WebP).", operation="What to do with it.")
    @app_commands.choices(
        operation=[app_commands.Choice(name=label, value=form) for label, form in alchemy_choices()]
    )
    async def alchemy(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, operation: str
    ) -> None:
        await self.run(interaction, image, operation)

    async def describe_image(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await self.run(interaction, first_image(message.attachments), DESCRIBE_FORM)

    async def upscale_image(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await self.run(interaction, first_image(message.attachments), UPSCALE_FORM)

    async def run(
        self, interaction: discord.Interaction[Any], attachment: discord.Attachment, form: str
    ) -> None:
        """Start ``form`` on ``attachment`` through the server's policy, in a new message, public or
        private as the server says (also for /imagine's Upscale button)."""
        # What needs no download is checked before anything is posted publicly.
        check_source_attachment(attachment.filename, attachment.content_type, attachment.size)
        params = AlchemyParams(form=form, filename=attachment.filename)
        async with self.bot.policy.admit(job_context(self.bot, interaction, "alchemy")) as decision:
            await interaction.response.defer(thinking=True, ephemeral=decision.ephemeral)
            # A file that can't be read is the member's business: say so privately, leave nothing public.
            # Imported here: cogs.imagine imports this cog for its Upscale button.
            from cogs.imagine._delivery import private_failures

            sources: list[SourceImage] = []
            async with private_failures(interaction):
                try:
                    data = await attachment.read()
                except discord.HTTPException:
                    raise UserInputError(DOWNLOAD_FAILED) from None
                sources.append(await asyncio.to_thread(prepare_source_image, attachment.filename, data))
            if not sources:
                return  # unreadable: private_failures told the member privately
            request = build_alchemy_request(form, sources[0])
            key = decision.key
            anonymous = key.is_anonymous
            first = render_alchemy_progress(
                params, None, bar_width=self.bot.settings.progress.bar_width, anonymous=anonymous
            )
            placed = await self.bot.delivery.open(interaction, first, private=decision.ephemeral)
            await self.bot.jobs.start_alchemy_job(
                request=request,
                key=key.apikey,
                key_owner=key.owner,
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=placed.channel_id,
                message_id=placed.message_id,
                params=params.model_dump(mode="json"),
                listener=self._listener(placed.target, params, anonymous=anonymous),
            )

    def _listener(self, target: MessageTarget, params: AlchemyParams, *, anonymous: bool) -> JobListener:
        bar_width = self.bot.settings.progress.bar_width

        def finish(job: JobRecord, outcome: JobOutcome) -> dict[str, Any]:
            files = [_file(image) for image in outcome.images]
            content, embed = render_alchemy_result(
                params,
                outcome,
                job.result_json,
                image_filenames=[file.filename for file in files],
                anonymous=anonymous,
            )
            return {"content": content, "embed": embed, "attachments": files, "view": None}

        return MessageJobListener(
            self.bot.delivery,
            target,
            progress_text=lambda progress: render_alchemy_progress(
                params, progress, bar_width=bar_width, anonymous=anonymous
            ),
            finish=finish,
            progress_view=_cancel_view,
        )

    def listener_for(self, job: JobRecord) -> JobListener:
        """The listener of a journalled alchemy job (after a restart)."""
        params = journalled_params(job, AlchemyParams.from_json)
        return self._listener(self.bot.delivery.resumed(job), params, anonymous=job.key_owner == "anonymous")

    async def cancel(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        job = await self.bot.storage.jobs.get(job_id)
        if job is None or job.kind != "alchemy":
            raise UserInputError(UNKNOWN_JOB)
        require_manager(interaction, job)
        if not await self.bot.jobs.cancel(job_id):
            raise UserInputError(ALREADY_FINISHED)
        await interaction.response.defer()


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.alchemy needs a HordeBot")
    await bot.add_cog(Alchemy(bot))
