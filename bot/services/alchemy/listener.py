"""The Discord side of an alchemy job: its message, kept current by the shared
:class:`~bot.services.delivery.listener.MessageJobListener` with /alchemy's texts; post-processed
images are attached to the result."""

from __future__ import annotations

import io
from typing import Final

import discord

from bot.services.alchemy.render import render_alchemy_progress, render_alchemy_result
from bot.services.alchemy.request import AlchemyParams
from bot.services.delivery.limits import files_left_out, split_images
from bot.services.delivery.listener import MessageJobListener
from bot.services.delivery.service import Delivery, JobViews
from bot.services.delivery.targets import Fields, MessageTarget, with_line
from bot.services.jobs import DeliveredImage, JobOutcome
from bot.storage import JobRecord

FILE_STEM: Final = "alchemy"


def alchemy_file(image: DeliveredImage) -> discord.File:
    return discord.File(io.BytesIO(image.data), filename=image.filename(FILE_STEM))


def alchemy_listener(
    delivery: Delivery, target: MessageTarget, params: AlchemyParams, *, anonymous: bool, views: JobViews
) -> MessageJobListener:
    """Progress while the forms are worked on, then their results."""
    bar_width = delivery.progress.bar_width

    def finish(job: JobRecord, outcome: JobOutcome) -> Fields:
        kept, left = split_images(outcome.images)
        files = [alchemy_file(image) for image in kept]
        content, embed = render_alchemy_result(
            params,
            outcome,
            job.result_json,
            image_filenames=[file.filename for file in files],
            anonymous=anonymous,
        )
        if left:
            content = with_line(content, files_left_out(left))
        return {"content": content, "embed": embed, "attachments": files, "view": views.result(job.id)}

    return MessageJobListener(
        delivery,
        target,
        progress_text=lambda progress: render_alchemy_progress(
            params, progress, bar_width=bar_width, anonymous=anonymous
        ),
        finish=finish,
        progress_view=lambda job: views.progress(job.id),
    )
