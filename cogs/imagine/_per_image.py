"""The actions on one image of an /imagine result (the buttons of :mod:`cogs._image_actions`):
Upscale #n (alchemy, replied with that image's own buttons), Vary (img2img), Zoom out and Pan
(outpainting) and Details. Part of the ``Imagine`` cog (:class:`PerImageActions` is mixed in).

The image is read from the message the button is on, so it works on old messages and after a
restart: on a result, the attachment named for image #n (``imagine_<n>_<seed>.webp``); on the
reply of an Upscale #n, its one image.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from typing import Any, Final

import discord
import PIL.Image

from bot.app import HordeBot
from bot.errors import UserInputError
from bot.horde import AIHordeRequestError
from bot.services.alchemy.request import UPSCALE_FORM, ImageOrigin
from bot.services.image.actions import (
    VARY_STRONG,
    VARY_SUBTLE,
    Move,
    outpaint_layout,
    outpaint_request,
    outpaint_sources,
    resized_source,
    vary_request,
)
from bot.services.image.inpainting import pick_inpainting_model
from bot.services.image.render import render_details
from bot.services.image.request import ImagineParams, ImagineRequest, generation_context
from bot.services.image.source import check_source_attachment
from bot.services.jobs import describe_horde_error
from bot.services.models_cache import ModelsCache
from bot.storage import JobRecord
from cogs._image_actions import ImageAction
from cogs._jobs import ALCHEMY_COG, ImageOperations, Launch, admit_and_launch, is_age_restricted
from cogs.imagine._launch import IMAGE

NOT_ATTACHED: Final = "Image #{number} isn't attached to this message any more."
NO_ALCHEMY: Final = "Upscaling isn't available on this bot."
DOWNLOAD_FAILED: Final = "I couldn't download the image from Discord. Please try again."
UNREADABLE: Final = "I couldn't read this image any more."
_NUMBERED: Final = re.compile(r"^(?:SPOILER_)?imagine_(\d+)(?:_|\.)")
MOVES: Final = {
    ImageAction.zoom_1_5: Move.zoom_1_5,
    ImageAction.zoom_2: Move.zoom_2,
    ImageAction.pan_left: Move.left,
    ImageAction.pan_right: Move.right,
    ImageAction.pan_up: Move.up,
    ImageAction.pan_down: Move.down,
}
FRESH_MODELS_S: Final = 5.0
"""Before saying no worker serves an inpainting model, the list is fetched again unless it is at
most this old (the Horde itself caches ``status/models`` for 2 s)."""
STRENGTHS: Final = {ImageAction.vary: VARY_STRONG, ImageAction.vary_subtle: VARY_SUBTLE}

BuildFromImage = Callable[[bytes], ImagineRequest]
"""The new request from the downloaded image (blocking: run in a thread)."""


def image_attachment(message: discord.Message | None, number: int) -> discord.Attachment:
    """Image ``number`` of the message: the one named for it, else the message's only image."""
    images = [
        attachment
        for attachment in (message.attachments if message is not None else [])
        if (attachment.content_type or "").lower().startswith("image/")
    ]
    for attachment in images:
        found = _NUMBERED.match(attachment.filename)
        if found is not None and int(found[1]) == number:
            return attachment
    if len(images) == 1 and _NUMBERED.match(images[0].filename) is None:
        return images[0]  # the reply of an Upscale #n
    raise UserInputError(NOT_ATTACHED.format(number=number))


class PerImageActions:
    bot: HordeBot
    models: ModelsCache

    async def on_image_action(
        self, interaction: discord.Interaction[Any], action: ImageAction, job: JobRecord, number: int
    ) -> None:
        if action is ImageAction.details:
            await interaction.response.send_message(embed=render_details(job), ephemeral=True)
            return
        attachment = image_attachment(interaction.message, number)
        check_source_attachment(attachment.filename, attachment.content_type, attachment.size)
        if action is ImageAction.upscale:
            # Typed as object: mypy finds no class that is both a Cog and a Protocol.
            alchemy: object = self.bot.get_cog(ALCHEMY_COG)
            if not isinstance(alchemy, ImageOperations):
                raise UserInputError(NO_ALCHEMY)
            await alchemy.run(
                interaction, attachment, UPSCALE_FORM, ImageOrigin(job_id=job.id, number=number)
            )
            return
        params = ImagineParams.from_json(job.params_json)
        config = await self.bot.guild_settings.get(interaction.guild_id)
        age_restricted = is_age_restricted(interaction.channel)
        allow_nsfw = config.nsfw_allowed(interaction.channel_id, age_restricted=age_restricted)
        build: BuildFromImage
        if action in STRENGTHS:
            strength = STRENGTHS[action]

            def build(data: bytes) -> ImagineRequest:
                return vary_request(
                    job.request_json,
                    job.params_json,
                    number=number,
                    source=resized_source(data, params.width, params.height),
                    strength=strength,
                    allow_nsfw=allow_nsfw,
                )

            planned = params
        else:
            move = MOVES[action]
            model = await self._inpainting_model(params.model)
            layout = outpaint_layout(
                params.width, params.height, move, max_pixels=config.generation.max_pixels
            )

            def build(data: bytes) -> ImagineRequest:
                return outpaint_request(
                    job.request_json,
                    job.params_json,
                    number=number,
                    move=move,
                    sources=outpaint_sources(data, layout),
                    model=model,
                    allow_nsfw=allow_nsfw,
                )

            planned = params.model_copy(
                update={"model": model, "width": layout.canvas[0], "height": layout.canvas[1]}
            )
        context = generation_context(
            planned.model_copy(update={"nsfw": allow_nsfw}),
            "button",
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            age_restricted=age_restricted,
        )

        async def prepare() -> Launch:
            imagine = await asyncio.to_thread(build, await _download(attachment))
            return IMAGE.launch(imagine.request, imagine.params)

        await admit_and_launch(self.bot, interaction, context, prepare)

    async def _inpainting_model(self, like: str) -> str:
        try:
            try:
                return pick_inpainting_model(await self.models.models(), like)
            except UserInputError:
                # The cached list may predate the worker that serves one now: a member told "no
                # worker" must not be told it from a list up to a minute old.
                return pick_inpainting_model(await self.models.models(max_age_s=FRESH_MODELS_S), like)
        except AIHordeRequestError as exc:
            raise UserInputError(describe_horde_error(exc, anonymous=False)) from None


async def _download(attachment: discord.Attachment) -> bytes:
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise UserInputError(DOWNLOAD_FAILED) from None
    try:
        await asyncio.to_thread(_check_readable, data)
    except (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError):
        raise UserInputError(UNREADABLE) from None
    return data


def _check_readable(data: bytes) -> None:
    with PIL.Image.open(io.BytesIO(data)) as image:
        image.verify()
