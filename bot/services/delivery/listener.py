"""The listener of text and alchemy jobs: one message kept current, from progress to result."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

import discord

from bot.clock import monotonic
from bot.services.delivery.budget import EditThrottle
from bot.services.delivery.service import Delivery
from bot.services.delivery.targets import (
    NO_MENTIONS,
    BuildFields,
    Fields,
    MessageTarget,
    edit_job_message,
    with_line,
)
from bot.services.jobs import DeliveredImage, JobListener, JobOutcome, JobProgress
from bot.storage import JobRecord

log = logging.getLogger(__name__)

NO_FILES: Final = "⚠️ I can't attach files here: I need the Attach Files permission in this channel."

Finish = Callable[[JobRecord, JobOutcome], Fields]
"""The final edit of a job's message: ``message.edit`` keyword arguments."""


class MessageJobListener(JobListener):
    """Keeps one message current: progress (only on change, at most once per edit interval and
    when the channel has a turn free; the Cancel button goes once per message), then the final
    message, which waits for the channel's turn and is never dropped: retried after 429s and 5xx
    within :attr:`Delivery.deadline_s`, then deferred (:class:`DeliveryDeferred`), and sent
    without files (saying so) when the bot may not attach them."""

    def __init__(
        self,
        delivery: Delivery,
        target: MessageTarget,
        *,
        progress_text: Callable[[JobProgress | None], str],
        finish: Finish,
        progress_view: Callable[[JobRecord], discord.ui.View],
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._delivery = delivery
        self._target = target
        self._progress_text = progress_text
        self._finish = finish
        self._progress_view = progress_view
        self._throttle = EditThrottle(delivery.progress.edit_interval_s, clock=clock)
        self._has_view = False

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        content = self._progress_text(progress)
        if not self._throttle.should_edit(content):
            return
        if not self._delivery.budget.try_spend(self._target.channel_id):
            return  # the channel is busy: a later poll shows it

        def build(fresh: bool) -> Fields:
            fields: Fields = {"content": content, "allowed_mentions": NO_MENTIONS}
            if fresh or not self._has_view:
                fields["view"] = self._progress_view(job)
            return fields

        if await self._edit(job, build):
            self._has_view = True
            self._throttle.sent(content)

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        # Shown with the final message: these jobs make one or two images, all at the end.
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        await self._delivery.result_turn(self._target.channel_id, outcome)
        describe = f"the result of job {job.id}"
        try:
            await self._delivery.must_deliver(
                describe, lambda: self._edit(job, self._final(job, outcome), final=True)
            )
        except discord.Forbidden:
            # No Attach Files permission: the text still goes out.
            log.warning("Missing permission to attach files in channel %s", self._target.channel_id)
            build = self._final(job, outcome, files=False)
            await self._delivery.must_deliver(describe, lambda: self._edit(job, build, final=True))

    def _final(self, job: JobRecord, outcome: JobOutcome, *, files: bool = True) -> BuildFields:
        def build(fresh: bool) -> Fields:
            # Built for each try: a discord.File can be read once.
            fields = {**self._finish(job, outcome), "allowed_mentions": NO_MENTIONS}
            if not files:
                fields["attachments"] = []
                fields["content"] = with_line(fields.get("content") or "", NO_FILES)
            return fields

        return build

    async def _edit(self, job: JobRecord, build: BuildFields, *, final: bool = False) -> bool:
        """Edit; ``False`` when Discord failed in a way a later edit may not. A 404 abandons the job
        (its message is gone). A 403 with files propagates (sent again without them); so does any
        error of a ``final`` edit, which :meth:`Delivery.must_deliver` tries again."""
        before = (self._target.channel_id, self._target.message_id)
        if await edit_job_message(self._target, job, build, final=final) is None:
            return False
        await self._delivery.record_move(job, self._target, before)
        return True
