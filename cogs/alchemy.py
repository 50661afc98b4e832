"""/alchemy and the "Describe image" / "Upscale image" message menus: caption, tag, check or
post-process an image with the AI Horde.

What its messages say is in ``bot.services.alchemy.render``; this cog holds the commands and buttons.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import UserInputError
from bot.services.alchemy.listener import alchemy_listener
from bot.services.alchemy.render import render_alchemy_progress
from bot.services.alchemy.request import (
    DESCRIBE_FORM,
    UPSCALE_FORM,
    AlchemyParams,
    ImageOrigin,
    alchemy_choices,
    build_alchemy_request,
    first_image,
)
from bot.services.delivery.targets import MessageTarget
from bot.services.image.source import check_source_attachment, prepare_source_image
from bot.services.jobs import JobListener
from bot.storage import JobKind
from cogs._image_actions import upscaled_view
from cogs._jobs import (
    ALCHEMY_COG,
    CANCEL,
    CANCEL_LOOK,
    JobButton,
    JobUI,
    Launch,
    admit_and_launch,
    job_context,
    job_view,
)

COG_NAME: Final = ALCHEMY_COG
DOWNLOAD_FAILED: Final = "I couldn't download the image from Discord. Please try again."


class AlchemyButton(JobButton, template=r"alchemy:(?P<action>cancel):(?P<job_id>[0-9a-f]{32})"):
    prefix: ClassVar[str] = "alchemy"
    kind: ClassVar[JobKind] = "alchemy"
    cog_name: ClassVar[str] = COG_NAME
    looks: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {CANCEL: CANCEL_LOOK}


class AlchemyViews:
    """Cancel while it runs; no buttons on the result."""

    def progress(self, job_id: str) -> discord.ui.View:
        return job_view(AlchemyButton(CANCEL, job_id))

    def result(self, job_id: str, *, private: bool = False) -> discord.ui.View | None:
        return None


VIEWS: Final = AlchemyViews()


class UpscaledViews(AlchemyViews):
    """The reply to Upscale #n of an /imagine result: that image's buttons (Vary, Zoom out, Pan,
    Details), handled by /imagine."""

    def __init__(self, origin: ImageOrigin) -> None:
        self._origin = origin

    def result(self, job_id: str, *, private: bool = False) -> discord.ui.View | None:
        return upscaled_view(self._origin.job_id, self._origin.number)


def _listener(
    bot: HordeBot, target: MessageTarget, params: AlchemyParams, *, anonymous: bool, private: bool
) -> JobListener:
    views = VIEWS if params.origin is None else UpscaledViews(params.origin)
    return alchemy_listener(bot.delivery, target, params, anonymous=anonymous, views=views)


ALCHEMY = JobUI("alchemy", AlchemyButton, AlchemyParams.from_json, render_alchemy_progress, _listener)


class Alchemy(commands.Cog, name=COG_NAME):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self._menus = (
            app_commands.ContextMenu(name="Describe image", callback=self.describe_image),
            app_commands.ContextMenu(name="Upscale image", callback=self.upscale_image),
        )

    async def cog_load(self) -> None:
        ALCHEMY.load(self.bot)
        for menu in self._menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        ALCHEMY.unload(self.bot)
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
        self,
        interaction: discord.Interaction[Any],
        attachment: discord.Attachment,
        form: str,
        origin: ImageOrigin | None = None,
    ) -> None:
        """Start ``form`` on ``attachment`` through the server's policy, in a new message, public or
        private as the server says (also for /imagine's Upscale buttons: ``origin`` says which
        image of which job, and its reply gets that image's buttons)."""
        # What needs no download is checked before anything is posted publicly.
        check_source_attachment(attachment.filename, attachment.content_type, attachment.size)
        params = AlchemyParams(form=form, filename=attachment.filename, origin=origin)

        async def prepare() -> Launch:
            # A file that can't be read is the member's business: said privately, nothing public.
            try:
                data = await attachment.read()
            except discord.HTTPException:
                raise UserInputError(DOWNLOAD_FAILED) from None
            source = await asyncio.to_thread(prepare_source_image, attachment.filename, data)
            return ALCHEMY.launch(build_alchemy_request(form, source), params)

        await admit_and_launch(self.bot, interaction, job_context(self.bot, interaction, "alchemy"), prepare)


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.alchemy needs a HordeBot")
    await bot.add_cog(Alchemy(bot))
