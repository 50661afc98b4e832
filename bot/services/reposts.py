"""A copy of a finished job's result, for `/jobs show` and the ✉️ reaction.

The journal holds no image bytes, only where the result went and the Horde's ids. So a copy is
taken, in order, from the job's channel message (its text, embeds and files, as members saw them),
or, without one (a private reply, or a message since deleted): a text from the journal, which
holds the generated texts; captions and tags from the journal too, with an upscaled image from the
AI Horde; an image job's images from the AI Horde by its request id (``horde_id``). The Horde keeps
a finished request's images only for a while, so when neither has them the member is told plainly
that they expired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import discord

from bot.errors import UserInputError
from bot.horde import AIHordeAPIAsyncSimpleClient, AIHordeError, ImageGeneration, RequestErrorResponse
from bot.services.alchemy.job import image_url
from bot.services.alchemy.listener import alchemy_file
from bot.services.alchemy.render import render_alchemy_result
from bot.services.alchemy.request import AlchemyParams
from bot.services.delivery.limits import MAX_FILES, files_left_out, fit_content, split_images
from bot.services.image.job import delivered_image
from bot.services.image.listener import image_file
from bot.services.image.render import render_result
from bot.services.image.request import ImagineParams
from bot.services.jobs import DeliveredImage, JobOutcome, had_images
from bot.services.text.listener import text_file
from bot.services.text.render import render_text_result
from bot.services.text.request import TextParams, text_result
from bot.storage import JobRecord, JobState

log = logging.getLogger(__name__)

NOT_FINISHED: Final = "This generation is still running: its own message shows its progress."
NO_RESULT: Final = "This generation ended without a result to show ({state})."
EXPIRED: Final = (
    "I can't show this result any more: its message is gone (or was a private reply), and the "
    "AI Horde's copy of the images has expired (it keeps them only for a few minutes)."
)
UPSCALE_EXPIRED: Final = "-# The AI Horde's copy of the upscaled image has expired."
HORDE_UNREACHABLE: Final = "I couldn't fetch this result's images from the AI Horde. Please try again later."
COPY_NOTE: Final = "-# A copy of job `{job_id}`{where}."


def message_link(job: JobRecord) -> str | None:
    """The link to the job's channel message; ``None`` for a private reply."""
    if job.message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.message_id}"


@dataclass(frozen=True, slots=True)
class ResultCopy:
    content: str
    embeds: list[discord.Embed]
    files: list[discord.File] = field(default_factory=list)


class ResultCopies:
    def __init__(self, client: discord.Client, horde: AIHordeAPIAsyncSimpleClient) -> None:
        self._client = client
        self._horde = horde

    async def copy(self, job: JobRecord) -> ResultCopy:
        """A copy of ``job``'s result; :class:`UserInputError` saying why there is none."""
        if not job.state.is_terminal:
            raise UserInputError(NOT_FINISHED)
        if job.state is not JobState.DONE and not job.result_json:
            raise UserInputError(NO_RESULT.format(state=job.state.value))
        if job.message_id is not None:
            found = await self._from_message(job, job.message_id)
            if found is not None:
                return found
        if job.kind == "text":
            return _text_from_journal(job)
        if job.kind == "alchemy":
            return await self._alchemy_copy(job)
        if job.horde_id is not None:
            return await self._from_horde(job, job.horde_id)
        raise UserInputError(EXPIRED)

    async def _from_message(self, job: JobRecord, message_id: int) -> ResultCopy | None:
        channel = self._client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.fetch_message(message_id)
            files = [
                await attachment.to_file(spoiler=attachment.is_spoiler())
                for attachment in message.attachments[:MAX_FILES]
            ]
        except (discord.NotFound, discord.Forbidden) as exc:
            log.info("Job %s: its message can't be copied (%s); trying the AI Horde", job.id, exc)
            return None
        link = message_link(job)
        content = f"{message.content}\n{_note(job, link)}"
        return ResultCopy(content=fit_content(content), embeds=list(message.embeds), files=files)

    async def _from_horde(self, job: JobRecord, horde_id: str) -> ResultCopy:
        status = await self._horde.horde_client_session.get_generate_status(horde_id)
        if isinstance(status, RequestErrorResponse):
            if status.http_status == 404:
                raise UserInputError(EXPIRED, detail=f"job {job.id}: the Horde answered 404")
            raise UserInputError(HORDE_UNREACHABLE, detail=f"job {job.id}: {status.message}")
        images: list[DeliveredImage] = []
        for generation in status.generations[:MAX_FILES]:
            try:
                data = await self._horde.download_image_bytes(generation)
            except AIHordeError as exc:
                raise UserInputError(EXPIRED, detail=f"job {job.id}: download failed: {exc}") from None
            images.append(delivered_image(generation, len(images), data))
        if not images:
            raise UserInputError(EXPIRED, detail=f"job {job.id}: the Horde has no images left")
        result = render_result(
            ImagineParams.from_json(job.params_json), _outcome(job, images), anonymous=False
        )
        kept, left = split_images(images)
        files = [image_file(image) for image in kept]
        content = fit_content("\n".join([result.content, *_left_out(left), _note(job, None)]))
        return ResultCopy(content=content, embeds=[result.embed], files=files)

    async def _alchemy_copy(self, job: JobRecord) -> ResultCopy:
        """Captions and tags from the journal; an upscaled image from the Horde while it has it."""
        images = await self._alchemy_images(job)
        kept, left = split_images(images)
        files = [alchemy_file(image) for image in kept]
        content, embed = render_alchemy_result(
            AlchemyParams.from_json(job.params_json),
            _outcome(job, images),
            job.result_json,
            image_filenames=[file.filename for file in files if file.filename],
            anonymous=False,
        )
        if had_images(job.result_json) and not images:
            content = f"{content}\n{UPSCALE_EXPIRED}"
        if not files and embed is None:
            raise UserInputError(EXPIRED, detail=f"job {job.id}: nothing left to show")
        embeds = [embed] if embed is not None else []
        content = "\n".join([content, *_left_out(left), _note(job, None)])
        return ResultCopy(content=fit_content(content), embeds=embeds, files=files)

    async def _alchemy_images(self, job: JobRecord) -> list[DeliveredImage]:
        if not had_images(job.result_json) or job.horde_id is None:
            return []
        status = await self._horde.horde_client_session.get_alchemy_status(job.horde_id)
        if isinstance(status, RequestErrorResponse):
            log.info("Job %s: the Horde has no alchemy status any more (%s)", job.id, status.message)
            return []
        images: list[DeliveredImage] = []
        for form in status.forms:
            url = image_url(form)
            if url is None:
                continue
            generation = ImageGeneration.model_validate({"id": str(form.form), "img": url, "seed": "0"})
            try:
                data = await self._horde.download_image_bytes(generation)
            except AIHordeError as exc:
                log.info("Job %s: the upscaled image can't be downloaded any more: %s", job.id, exc)
                continue
            images.append(delivered_image(generation, len(images), data))
        return images


def _text_from_journal(job: JobRecord) -> ResultCopy:
    """The journal holds the generated text: a copy never expires."""
    result = text_result(job.result_json)
    if result is None:
        raise UserInputError(NO_RESULT.format(state=job.state.value))
    rendered = render_text_result(
        TextParams.from_json(job.params_json), _outcome(job, []), result, anonymous=False
    )
    files = [text_file(rendered.attachment)] if rendered.attachment else []
    embeds = [rendered.embed] if rendered.embed is not None else []
    return ResultCopy(
        content=fit_content(f"{rendered.content}\n{_note(job, None)}"), embeds=embeds, files=files
    )


def _left_out(numbers: list[int]) -> list[str]:
    return [files_left_out(numbers)] if numbers else []


def _outcome(job: JobRecord, images: list[DeliveredImage]) -> JobOutcome:
    return JobOutcome(
        state=job.state,
        images=tuple(images),
        kudos=job.kudos or 0.0,
        workers=tuple(sorted({image.worker_name for image in images if image.worker_name})),
        error=job.error,
    )


def _note(job: JobRecord, link: str | None) -> str:
    return COPY_NOTE.format(job_id=job.id, where=f", from {link}" if link else "")
