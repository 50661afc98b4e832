"""The Discord side of an image job: start it bound to a message, then keep that one message current.

The listener addresses its message by channel and message id (never through the interaction), so it
keeps working after the 15-minute interaction token expired and after a restart.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

import discord
from pydantic import ValidationError

from bot.app import HordeBot
from bot.errors import BotError
from bot.services.accounts import ResolvedKey
from bot.services.imagine import ImagineParams, ImagineRequest
from bot.services.jobs import DeliveredImage, JobAbandoned, JobListener, JobOutcome, JobProgress
from bot.services.render import NO_ATTACH_PERMISSION, EditThrottle, render_progress, render_result
from bot.storage import JobRecord
from cogs.imagine._views import progress_view, result_view

log = logging.getLogger(__name__)

NO_MENTIONS: Final = discord.AllowedMentions.none()
MAX_ATTACHMENTS: Final = 10
"""Discord allows this many files on one message."""
FILE_STEM: Final = "imagine"
NOT_STARTED: Final = "This generation could not be started."
# Discord error codes: the message or its channel is gone, or the bot can no longer reach it.
_UNKNOWN_MESSAGE: Final = 10008


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
    """Edits one message: progress (only when it changed, at most once per edit interval), each
    image as soon as it arrives, and the final result with its buttons (always sent)."""

    def __init__(
        self,
        bot: HordeBot,
        *,
        channel_id: int,
        message_id: int,
        params: ImagineParams,
        anonymous: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._message = bot.get_partial_messageable(channel_id).get_partial_message(message_id)
        self._params = params
        self._anonymous = anonymous
        self._bar_width = bot.settings.progress.bar_width
        self._throttle = EditThrottle(bot.settings.progress.edit_interval_s, clock=clock)
        self._progress: JobProgress | None = None
        self._seen: set[str] = set()
        self._pending: list[DeliveredImage] = []
        self._attached: list[discord.Attachment] = []
        self._left_out = 0
        self._can_attach = True
        self._has_view = False

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        self._progress = progress
        await self._update(job)

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        # At once, not throttled: the engine fetches new images at most every few seconds (the
        # status endpoint's rate limit), so these edits cannot flood the channel.
        self._queue(new_images)
        await self._edit(content=self._progress_text(), view=self._view_once(job))

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self._queue(outcome.images)
        result = render_result(self._params, outcome, anonymous=self._anonymous, notes=self._notes())
        await self._edit(content=result.content, embed=result.embed, view=result_view(job.id))

    def _queue(self, images: Sequence[DeliveredImage]) -> None:
        for image in images:
            if image.generation_id not in self._seen:
                self._seen.add(image.generation_id)
                self._pending.append(image)

    def _notes(self) -> list[str]:
        notes = []
        if not self._can_attach:
            notes.append(NO_ATTACH_PERMISSION)
        if self._left_out:
            notes.append(too_many_files(self._left_out))
        return notes

    def _progress_text(self) -> str:
        return render_progress(
            self._params,
            self._progress,
            bar_width=self._bar_width,
            anonymous=self._anonymous,
            notes=self._notes(),
        )

    def _view_once(self, job: JobRecord) -> discord.ui.View | None:
        """The Cancel button, sent with the first edit only (later edits keep it)."""
        return None if self._has_view else progress_view(job.id)

    async def _update(self, job: JobRecord) -> None:
        content = self._progress_text()
        if self._throttle.should_edit((content, len(self._seen))):
            await self._edit(content=content, view=self._view_once(job))

    async def _edit(
        self, *, content: str, embed: discord.Embed | None = None, view: discord.ui.View | None = None
    ) -> None:
        """Show ``content`` and every pending image. A 404 abandons the job (the message is gone);
        a 403 with files means no Attach Files permission: the images are left out and the text
        says so."""
        shown = (content, len(self._seen))
        fields: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
        if embed is not None:
            fields["embed"] = embed
        if view is not None:
            fields["view"] = view
        uploading: list[DeliveredImage] = []
        left_out = 0
        if self._can_attach and self._pending:
            uploading = self._pending[: MAX_ATTACHMENTS - len(self._attached)]
            left_out = len(self._pending) - len(uploading)
            if left_out:
                fields["content"] = _with_line(content, too_many_files(self._left_out + left_out))
            if uploading:
                fields["attachments"] = [*self._attached, *(_file(image) for image in uploading)]
        try:
            message = await self._send(fields)
        except discord.Forbidden:
            log.warning("Missing permission to attach files in channel %s", self._message.channel.id)
            self._can_attach, uploading, left_out = False, [], 0
            del fields["attachments"]
            fields["content"] = _with_line(content, NO_ATTACH_PERMISSION)
            message = await self._send(fields)
        if message is None:
            return
        if uploading:
            self._attached = list(message.attachments)
        self._left_out += left_out
        self._pending.clear()
        self._has_view = self._has_view or view is not None
        self._throttle.sent(shown)

    async def _send(self, fields: dict[str, Any]) -> discord.Message | None:
        """The edited message; ``None`` when Discord failed in a way a later edit may not."""
        try:
            return await self._message.edit(**fields)
        except discord.NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                log.info("Message %s can no longer be edited: %s", self._message.id, exc)
            raise JobAbandoned from None
        except discord.Forbidden:
            if "attachments" in fields:
                raise
            log.warning("Not allowed to edit message %s", self._message.id)
            return None
        except discord.HTTPException as exc:
            log.warning(
                "Could not edit message %s: HTTP %s (code %s)", self._message.id, exc.status, exc.code
            )
            return None


def _file(image: DeliveredImage) -> discord.File:
    # Posted exactly as the Horde served it; a censored image is hidden behind a spoiler.
    return discord.File(io.BytesIO(image.data), filename=image.filename(FILE_STEM), spoiler=image.censored)


def _with_line(content: str, line: str) -> str:
    return content if line in content else f"{content}\n{line}"


def listener_for(bot: HordeBot, job: JobRecord) -> ImagineListener:
    """The listener of a journalled job (after a restart); :class:`JobAbandoned` if it has no message."""
    if job.message_id is None:
        raise JobAbandoned(f"job {job.id} has no message")
    try:
        params = ImagineParams.from_json(job.params_json)
    except ValidationError:
        log.warning("Job %s: its journalled parameters can't be read", job.id)
        raise JobAbandoned(f"job {job.id} has unreadable parameters") from None
    return ImagineListener(
        bot,
        channel_id=job.channel_id,
        message_id=job.message_id,
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
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=NOT_STARTED, allowed_mentions=NO_MENTIONS, view=None
            )
        await interaction.followup.send(exc.user_message, ephemeral=True, allowed_mentions=NO_MENTIONS)
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()


async def launch(
    bot: HordeBot, interaction: discord.Interaction, imagine: ImagineRequest, key: ResolvedKey
) -> JobRecord:
    """Start ``imagine`` for the interaction's user in the interaction's (deferred) message.

    ``key`` is the one the policy chose (own, sponsor or anonymous; then the message says how to log in).
    """
    message = await interaction.edit_original_response(
        content=_first_text(bot, imagine, key), allowed_mentions=NO_MENTIONS
    )
    return await _start(
        bot, message, imagine, key, user_id=interaction.user.id, guild_id=interaction.guild_id
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
    """Start ``imagine`` for ``user_id`` in a new message in ``channel`` (no interaction to answer)."""
    message = await channel.send(_first_text(bot, imagine, key), allowed_mentions=NO_MENTIONS)
    return await _start(bot, message, imagine, key, user_id=user_id, guild_id=guild_id)


def _first_text(bot: HordeBot, imagine: ImagineRequest, key: ResolvedKey) -> str:
    return render_progress(
        imagine.params, None, bar_width=bot.settings.progress.bar_width, anonymous=key.is_anonymous
    )


async def _start(
    bot: HordeBot,
    message: discord.Message,
    imagine: ImagineRequest,
    key: ResolvedKey,
    *,
    user_id: int,
    guild_id: int | None,
) -> JobRecord:
    listener = ImagineListener(
        bot,
        channel_id=message.channel.id,
        message_id=message.id,
        params=imagine.params,
        anonymous=key.is_anonymous,
    )
    return await bot.jobs.start_image_job(
        request=imagine.request,
        key=key.apikey,
        key_owner=key.owner,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=message.channel.id,
        message_id=message.id,
        params=imagine.params.model_dump(mode="json"),
        listener=listener,
    )
