"""The Discord side of an image job: start it bound to a message, then keep that one message current.

The message is a :class:`~bot.services.delivery.MessageTarget`: a channel message (edited by channel
and message id, so it keeps working after the interaction token expired and after a restart) or,
where the server shows results privately, the interaction's ephemeral reply, which moves to a
channel message before its token expires.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import discord

from bot.app import HordeBot
from bot.errors import BotError, UserInputError
from bot.services.delivery import (
    Delivery,
    Fields,
    JobMessage,
    MessageTarget,
    edit_job_message,
    journalled_params,
    monotonic,
)
from bot.services.imagine import ImagineParams, ImagineRequest
from bot.services.jobs import DeliveredImage, JobListener, JobOutcome, JobProgress
from bot.services.keys import ResolvedKey
from bot.services.render import NO_ATTACH_PERMISSION, EditThrottle, render_progress, render_result
from bot.storage import JobRecord
from cogs.imagine._views import progress_view, result_view

log = logging.getLogger(__name__)

NO_MENTIONS: Final = discord.AllowedMentions.none()
MAX_ATTACHMENTS: Final = 10
"""Discord allows this many files on one message."""
FILE_STEM: Final = "imagine"
NOT_STARTED: Final = "This generation could not be started."
PRIVATE_CHANNEL: Final = (
    "This server shows results privately here, and a reaction has no private reply: "
    "use the Rerun button instead."
)


def is_age_restricted(channel: object) -> bool:
    """Whether ``channel`` is age-restricted; a thread follows its parent. Unknown channels are not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return callable(is_nsfw) and bool(is_nsfw())


def too_many_files(count: int) -> str:
    return (
        f"⚠️ Discord shows at most {MAX_ATTACHMENTS} files per message, so {count} "
        f"image{'s are' if count != 1 else ' is'} not attached; Details lists every seed."
    )


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
        private: bool = False,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._delivery = delivery
        self._target = target
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
        await self._edit(job, content=content, view=progress_view(job.id), final=False)

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
        await self._edit(job, content=self._progress_text(), view=progress_view(job.id), final=False)

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self._queue(outcome.images)
        await self._delivery.result_turn(self._target.channel_id, outcome)

        async def attempt() -> None:
            result = render_result(self._params, outcome, anonymous=self._anonymous, notes=self._notes())
            # A private reply has no Delete (Discord lets its member dismiss it); a channel message,
            # also one the job moved to, has.
            private = self._private and self._target.message_id is None
            await self._edit(
                job,
                content=result.content,
                embed=result.embed,
                view=result_view(job.id, private=private),
                fresh_view=result_view(job.id),
                final=True,
            )

        await self._delivery.must_deliver(f"the result of job {job.id}", attempt)

    def _queue(self, images: Sequence[DeliveredImage]) -> None:
        for image in images:
            if image.generation_id not in self._seen:
                self._seen.add(image.generation_id)
                self._images.append(image)

    def _left_out(self) -> int:
        return max(0, len(self._images) - MAX_ATTACHMENTS) if self._can_attach else 0

    def _notes(self) -> list[str]:
        notes = []
        if not self._can_attach:
            notes.append(NO_ATTACH_PERMISSION)
        if self._left_out():
            notes.append(too_many_files(self._left_out()))
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
        view: discord.ui.View,
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

        def build(fresh: bool) -> Fields:
            nonlocal uploading
            # A fresh message starts with nothing attached: every image goes up again.
            attached = [] if fresh else self._attached
            already = 0 if fresh else self._shown
            text = _with_line(content, NO_ATTACH_PERMISSION) if not self._can_attach else content
            fields: Fields = {"content": text, "allowed_mentions": NO_MENTIONS}
            if embed is not None:
                fields["embed"] = embed
            if fresh or final or not self._has_view:
                fields["view"] = fresh_view if fresh and fresh_view is not None else view
            uploading = []
            if self._can_attach:
                uploading = self._images[already:MAX_ATTACHMENTS]
                if uploading:
                    fields["attachments"] = [*attached, *(_file(image) for image in uploading)]
                if self._left_out():
                    fields["content"] = _with_line(fields["content"], too_many_files(self._left_out()))
            return fields

        before = self._target.message_id
        try:
            message = await edit_job_message(self._target, job, build, final=final)
        except discord.Forbidden:
            log.warning("Missing permission to attach files in channel %s", self._target.channel_id)
            self._can_attach = False
            message = await edit_job_message(self._target, job, build, final=final)
        if message is None:
            return
        if self._target.message_id != before:
            self._shown, self._attached = 0, []
            await self._delivery.record_move(job, self._target, before)
        if uploading:
            self._attached = list(message.attachments)
            self._shown = min(len(self._images), MAX_ATTACHMENTS)
        self._has_view = True
        self._throttle.sent(shown)


def _file(image: DeliveredImage) -> discord.File:
    # Posted exactly as the Horde served it; a censored image is hidden behind a spoiler.
    return discord.File(io.BytesIO(image.data), filename=image.filename(FILE_STEM), spoiler=image.censored)


def _with_line(content: str, line: str) -> str:
    return content if line in content else f"{content}\n{line}"


def listener_for(bot: HordeBot, job: JobRecord) -> ImagineListener:
    """The listener of a journalled job (after a restart); :class:`JobAbandoned` if its parameters
    can't be read. A private job (no channel message) continues in a new channel message."""
    params = journalled_params(job, ImagineParams.from_json)
    return ImagineListener(
        bot.delivery,
        bot.delivery.resumed(job),
        params=params,
        anonymous=job.key_owner == "anonymous",
    )


@contextlib.asynccontextmanager
async def private_failures(interaction: discord.Interaction) -> AsyncIterator[None]:
    """After a public ``defer``, answer a :class:`BotError` privately and leave nothing public.

    The first followup would replace the public "thinking" message (and be public too), so that
    message is settled with an edit first; then the explanation goes out as an ephemeral followup
    and the public message is deleted.
    """
    try:
        yield
    except BotError as exc:
        try:
            await interaction.edit_original_response(
                content=NOT_STARTED, allowed_mentions=NO_MENTIONS, view=None
            )
        except discord.HTTPException:
            settled = False  # then the followup takes the "thinking" message's place: keep it
        else:
            settled = True
        await interaction.followup.send(exc.user_message, ephemeral=True, allowed_mentions=NO_MENTIONS)
        if settled:
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()


async def launch(
    bot: HordeBot,
    interaction: discord.Interaction,
    imagine: ImagineRequest,
    key: ResolvedKey,
    *,
    private: bool = False,
) -> JobRecord:
    """Start ``imagine`` for the interaction's user in the interaction's (deferred) reply; ``private``
    when it was deferred ephemeral (the server shows results privately).

    ``key`` is the one the policy chose (own, sponsor or anonymous; then the message says how to log in).
    """
    placed = await bot.delivery.open(interaction, _first_text(bot, imagine, key), private=private)
    return await _start(
        bot, placed, imagine, key, user_id=interaction.user.id, guild_id=interaction.guild_id, private=private
    )


async def launch_in_channel(
    bot: HordeBot,
    channel: discord.abc.Messageable,
    imagine: ImagineRequest,
    key: ResolvedKey,
    *,
    user_id: int,
    guild_id: int | None,
) -> JobRecord:
    """Start ``imagine`` for ``user_id`` in a new message in ``channel`` (no interaction to answer).

    Where the server shows results privately this refuses (:class:`UserInputError`): without an
    interaction there is no private reply, and posting publicly would go against the setting.
    """
    channel_id = getattr(channel, "id", None)
    config = await bot.guild_settings.get(guild_id)
    if config.visibility_in(channel_id if isinstance(channel_id, int) else None) == "private":
        raise UserInputError(PRIVATE_CHANNEL)
    message = await channel.send(_first_text(bot, imagine, key), allowed_mentions=NO_MENTIONS)
    return await _start(
        bot, bot.delivery.in_channel(message), imagine, key, user_id=user_id, guild_id=guild_id
    )


def _first_text(bot: HordeBot, imagine: ImagineRequest, key: ResolvedKey) -> str:
    return render_progress(
        imagine.params, None, bar_width=bot.settings.progress.bar_width, anonymous=key.is_anonymous
    )


async def _start(
    bot: HordeBot,
    placed: JobMessage,
    imagine: ImagineRequest,
    key: ResolvedKey,
    *,
    user_id: int,
    guild_id: int | None,
    private: bool = False,
) -> JobRecord:
    listener = ImagineListener(
        bot.delivery, placed.target, params=imagine.params, anonymous=key.is_anonymous, private=private
    )
    return await bot.jobs.start_image_job(
        request=imagine.request,
        key=key.apikey,
        key_owner=key.owner,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=placed.channel_id,
        message_id=placed.message_id,
        params=imagine.params.model_dump(mode="json"),
        listener=listener,
    )
