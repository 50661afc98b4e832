"""The Discord side of an image job: keep its one message current, images attached as they come.

The message is a :class:`~bot.services.delivery.targets.MessageTarget`: a channel message (edited by
channel and message id, so it keeps working after the interaction token expired and after a
restart) or, where the server shows results privately, the interaction's ephemeral reply, which
moves to a channel message before its token expires.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import discord

from bot.clock import monotonic
from bot.services.delivery.budget import EditThrottle
from bot.services.delivery.limits import MAX_FILES, files_left_out, split_images
from bot.services.delivery.service import Delivery
from bot.services.delivery.targets import NO_MENTIONS, Fields, MessageTarget, edit_job_message, with_line
from bot.services.image.render import NO_ATTACH_PERMISSION, render_progress, render_result
from bot.services.image.request import ImagineParams
from bot.services.jobs import DeliveredImage, JobListener, JobOutcome, JobProgress
from bot.storage import JobRecord

log = logging.getLogger(__name__)

MAX_ATTACHMENTS: Final = MAX_FILES
FILE_STEM: Final = "imagine"
SEEDS_IN_DETAILS: Final = "Details lists every seed."


class ImageViews(Protocol):
    """/imagine's buttons (its cog makes and handles them): Cancel while the job runs; on its
    result, buttons for each of the ``images`` attached (their 1-based numbers) and the whole
    result's. A ``private`` (ephemeral) reply can't be deleted by the bot."""

    def progress(self, job_id: str) -> discord.ui.View: ...

    def result(
        self, job_id: str, *, private: bool = False, images: Sequence[int] = ()
    ) -> discord.ui.View: ...


class ImagineListener(JobListener):
    """Edits one message: progress (only when it changed, at most once per edit interval, when the
    channel has a turn free), each image with the next edit the channel has a turn for (the last
    ones with the result), and the final result with its buttons (waits for its turn, then retried
    after a 429 or 5xx within the delivery deadline, then deferred to the jobs engine, which tries
    again later: never dropped). When the job moves to a new message (a private reply whose token
    runs out), every image is attached again there."""

    def __init__(
        self,
        delivery: Delivery,
        target: MessageTarget,
        *,
        params: ImagineParams,
        anonymous: bool,
        views: ImageViews,
        private: bool = False,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._delivery = delivery
        self._target = target
        self._views = views
        self._params = params
        self._anonymous = anonymous
        self._private = private
        self._bar_width = delivery.progress.bar_width
        self._throttle = EditThrottle(delivery.progress.edit_interval_s, clock=clock)
        self._progress: JobProgress | None = None
        self._seen: set[str] = set()
        self._images: list[DeliveredImage] = []
        """Every image in order; the message shows the first ``_shown`` of them."""
        self._shown = 0
        self._attached: list[discord.Attachment] = []
        self._can_attach = True
        self._has_view = False

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        self._progress = progress
        content = self._progress_text()
        if not self._throttle.should_edit((content, len(self._seen))):
            return
        if not self._delivery.budget.try_spend(self._target.channel_id):
            return  # the channel is busy: a later poll shows it
        await self._edit(job, content=content, view=self._views.progress(job.id), final=False)

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        self._queue(new_images)
        if self._progress is not None and self._progress.state == "finishing":
            # The job's last images: the result edit, which comes right after, shows them (one
            # edit of the channel's budget instead of two).
            return
        # Not throttled (the engine fetches images at most every few seconds: the status
        # endpoint's rate limit), but only on a free turn: a busy channel shows them with the next
        # progress edit or the result, which never skip them.
        if not self._delivery.budget.try_spend(self._target.channel_id):
            return
        await self._edit(job, content=self._progress_text(), view=self._views.progress(job.id), final=False)

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self._queue(outcome.images)
        await self._delivery.result_turn(self._target.channel_id, outcome)

        async def attempt() -> None:
            result = render_result(self._params, outcome, anonymous=self._anonymous, notes=self._notes())
            # A private reply has no Delete (Discord lets its member dismiss it); a channel message,
            # also one the job moved to, has.
            private = self._private and self._target.message_id is None
            numbers = self._attached_numbers()
            await self._edit(
                job,
                content=result.content,
                embed=result.embed,
                view=self._views.result(job.id, private=private, images=numbers),
                fresh_view=self._views.result(job.id, images=numbers),
                final=True,
            )

        await self._delivery.must_deliver(f"the result of job {job.id}", attempt)

    def _queue(self, images: Sequence[DeliveredImage]) -> None:
        for image in images:
            if image.generation_id not in self._seen:
                self._seen.add(image.generation_id)
                self._images.append(image)

    def _attachable(self) -> list[DeliveredImage]:
        """The images the message carries, in order: within Discord's files and bytes per message."""
        return split_images(self._images)[0]

    def _attached_numbers(self) -> list[int]:
        """The numbers (#1 …) of the images the result message carries, for their buttons."""
        if not self._can_attach:
            return []
        return sorted(image.index + 1 for image in self._attachable())

    def _left_out_note(self) -> str | None:
        if not self._can_attach:
            return None
        _, left = split_images(self._images)
        return f"{files_left_out(left)} {SEEDS_IN_DETAILS}" if left else None

    def _notes(self) -> list[str]:
        notes = []
        if not self._can_attach:
            notes.append(NO_ATTACH_PERMISSION)
        if left_out := self._left_out_note():
            notes.append(left_out)
        return notes

    def _progress_text(self) -> str:
        return render_progress(
            self._params,
            self._progress,
            bar_width=self._bar_width,
            anonymous=self._anonymous,
            notes=self._notes(),
        )

    async def _edit(
        self,
        job: JobRecord,
        *,
        content: str,
        view: discord.ui.View | None,
        final: bool,
        embed: discord.Embed | None = None,
        fresh_view: discord.ui.View | None = None,
    ) -> None:
        """Show ``content`` and every image not shown yet. A 404 abandons the job (the message is
        gone); a 403 with files means no Attach Files permission: the images are left out and the
        text says so. Other errors skip a progress edit (the next one catches up) and propagate
        from a ``final`` one (:meth:`Delivery.must_deliver` tries again)."""
        shown = (content, len(self._seen))
        uploading: list[DeliveredImage] = []
        showing = 0

        def build(fresh: bool) -> Fields:
            nonlocal uploading, showing
            # A fresh message starts with nothing attached: every image goes up again.
            attached = [] if fresh else self._attached
            already = 0 if fresh else self._shown
            text = with_line(content, NO_ATTACH_PERMISSION) if not self._can_attach else content
            fields: Fields = {"content": text, "allowed_mentions": NO_MENTIONS}
            if embed is not None:
                fields["embed"] = embed
            if fresh or final or not self._has_view:
                fields["view"] = fresh_view if fresh and fresh_view is not None else view
            uploading = []
            if self._can_attach:
                attachable = self._attachable()
                uploading = attachable[already:]
                showing = len(attachable)
                if uploading:
                    fields["attachments"] = [*attached, *(image_file(image) for image in uploading)]
                if left_out := self._left_out_note():
                    fields["content"] = with_line(fields["content"], left_out)
            return fields

        before = (self._target.channel_id, self._target.message_id)
        try:
            message = await edit_job_message(self._target, job, build, final=final)
        except discord.Forbidden:
            log.warning("Missing permission to attach files in channel %s", self._target.channel_id)
            self._can_attach = False
            message = await edit_job_message(self._target, job, build, final=final)
        if message is None:
            return
        if (self._target.channel_id, self._target.message_id) != before:
            self._shown, self._attached = 0, []
            await self._delivery.record_move(job, self._target, before)
        if uploading:
            self._attached = list(message.attachments)
            self._shown = showing
        self._has_view = True
        self._throttle.sent(shown)


def image_file(image: DeliveredImage) -> discord.File:
    # Posted exactly as the Horde served it; a censored image is hidden behind a spoiler.
    return discord.File(io.BytesIO(image.data), filename=image.filename(FILE_STEM), spoiler=image.censored)
