"""The Discord side of a text job: its message, kept current by the shared
:class:`~bot.services.delivery.listener.MessageJobListener` with /write's texts."""

from __future__ import annotations

import io

import discord

from bot.services.delivery.listener import JobViews, MessageJobListener
from bot.services.delivery.service import Delivery
from bot.services.delivery.targets import Fields, MessageTarget
from bot.services.jobs import JobOutcome
from bot.services.text.render import TEXT_FILENAME, render_text_progress, render_text_result
from bot.services.text.request import TextParams, text_result
from bot.storage import JobRecord, JobState


def text_file(data: bytes, filename: str = TEXT_FILENAME) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename)


def text_listener(
    delivery: Delivery, target: MessageTarget, params: TextParams, *, anonymous: bool, views: JobViews
) -> MessageJobListener:
    """Progress while the text is written, then the text; its result buttons (Continue) only on a
    finished text."""
    bar_width = delivery.progress.bar_width

    def finish(job: JobRecord, outcome: JobOutcome) -> Fields:
        result = text_result(job.result_json)
        rendered = render_text_result(params, outcome, result, anonymous=anonymous)
        fields: Fields = {"content": rendered.content, "embed": rendered.embed}
        fields["attachments"] = [text_file(rendered.attachment)] if rendered.attachment else []
        done = outcome.state is JobState.DONE and result is not None
        fields["view"] = views.result(job.id) if done else None
        return fields

    return MessageJobListener(
        delivery,
        target,
        progress_text=lambda progress: render_text_progress(
            params, progress, bar_width=bar_width, anonymous=anonymous
        ),
        finish=finish,
        progress_view=lambda job: views.progress(job.id),
    )
