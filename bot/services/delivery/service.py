"""Delivering a job to Discord: the :class:`Delivery` every listener shares (one per bot).

Every edit goes through its channel's :class:`~bot.services.delivery.budget.ChannelEditBudget`
(at most 5 edits in any 5 s per channel, Discord's bucket): progress edits, and images that arrive
mid-job, are skipped when the channel has no turn free (the next edit shows them); final results
wait for their turn, first come first served, however long the queue (it always moves: one turn a
second at the defaults), and progress never takes a turn they wait for. Once its turn comes, a
result has one overall deadline (:data:`DELIVERY_DEADLINE_S`, discord.py's own retries included);
past it the listener raises :class:`~bot.services.jobs.DeliveryDeferred` and the jobs engine,
which journals the delivery apart from the generation, tries again later. A result is never
dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import discord
from pydantic import BaseModel, ValidationError

from bot.errors import BotError
from bot.services.delivery.budget import ChannelEditBudget
from bot.services.delivery.targets import (
    MOVED_AFTER_RESTART,
    MOVED_AFTER_TIMEOUT,
    NO_MENTIONS,
    ChannelTarget,
    DirectMessageTarget,
    InteractionTarget,
    MessageTarget,
    PublicTarget,
)
from bot.services.jobs import CancelReason, DeliveryDeferred, JobAbandoned, JobOutcome
from bot.storage import JobRecord

if TYPE_CHECKING:
    from bot.config import ProgressSettings
    from bot.storage import JobKind, Storage

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DELIVERY_DEADLINE_S: Final = 120.0
"""How long a result may take to go out once its turn came, every try and discord.py's own
retries (up to 25 s for a 5xx, a 429's wait) included. Past it the delivery is deferred (tried
again later), never dropped."""
FIRST_EDIT_DEADLINE_S: Final = 20.0
"""How long the first edit of a job's message (before anything is sent to the Horde) is tried."""
FINAL_RETRY_DELAYS_S: Final[tuple[float, ...]] = (0.25, 1.0, 2.0, 4.0, 8.0)
"""Waits between tries of an edit that must not be lost (a result) after a 429 or a 5xx that
discord.py gave up on; the last one repeats until :data:`DELIVERY_DEADLINE_S`."""
DISCORD_TROUBLE: Final = (
    "Discord didn't let me show this (HTTP {status}), so nothing was started. Please try again in a moment."
)


class JobViews(Protocol):
    """A kind's buttons, which its cog makes and handles: while the job runs, and on its result."""

    def progress(self, job_id: str) -> discord.ui.View: ...

    def result(self, job_id: str, *, private: bool = False) -> discord.ui.View | None:
        """``None``: no buttons. A ``private`` (ephemeral) reply can't be deleted by the bot."""
        ...


@dataclass(frozen=True, slots=True)
class JobMessage:
    """Where a new job is shown: its target, and the ids to journal."""

    target: MessageTarget
    channel_id: int
    message_id: int | None


class Delivery:
    """What every job listener shares: the Discord client, the journal (to record a job's new
    message), the progress settings and the per-channel edit budget. One per bot."""

    def __init__(
        self,
        client: discord.Client,
        storage: Storage,
        progress: ProgressSettings,
        *,
        budget: ChannelEditBudget | None = None,
        retry_delays_s: Sequence[float] = FINAL_RETRY_DELAYS_S,
        deadline_s: float = DELIVERY_DEADLINE_S,
        first_edit_deadline_s: float = FIRST_EDIT_DEADLINE_S,
    ) -> None:
        self.client = client
        self.storage = storage
        self.progress = progress
        self.budget = (
            budget
            if budget is not None
            else ChannelEditBudget(progress.channel_edits, progress.channel_window_s)
        )
        self.retry_delays_s = tuple(retry_delays_s) or (1.0,)
        self.deadline_s = deadline_s
        self.first_edit_deadline_s = first_edit_deadline_s
        self.views: dict[JobKind, JobViews] = {}
        """Each kind's buttons (its cog registers them when it loads), for copies of a result."""

    def __repr__(self) -> str:
        return f"Delivery({self.budget!r})"

    async def open(self, interaction: discord.Interaction[Any], content: str, *, private: bool) -> JobMessage:
        """Show ``content`` in the interaction's deferred reply (private if it was deferred so) and
        return where the job goes from there. Nothing has been sent to the Horde yet: when Discord
        keeps failing (429, 5xx) past :attr:`first_edit_deadline_s`, this raises a
        :class:`BotError` saying so, and nothing is started."""

        async def first_edit() -> discord.Message:
            return await interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS)

        try:
            message: discord.Message = await self.must_deliver(
                "the first edit of a job's message", first_edit, deadline_s=self.first_edit_deadline_s
            )
        except DeliveryDeferred as exc:
            status = exc.__cause__.status if isinstance(exc.__cause__, discord.HTTPException) else "timeout"
            raise BotError(DISCORD_TROUBLE.format(status=status), detail=str(exc)) from exc
        channel_id = interaction.channel_id if interaction.channel_id is not None else message.channel.id
        if private:
            return JobMessage(
                InteractionTarget(interaction, self._moved_out(interaction, channel_id)), channel_id, None
            )
        return JobMessage(self._public(channel_id, message.id, interaction.user.id), channel_id, message.id)

    def in_channel(self, message: discord.Message, user_id: int) -> JobMessage:
        """A job of ``user_id`` shown in ``message``, a channel message the bot posted."""
        return JobMessage(
            self._public(message.channel.id, message.id, user_id), message.channel.id, message.id
        )

    def _public(self, channel_id: int, message_id: int, user_id: int) -> PublicTarget:
        return PublicTarget(self.client, ChannelTarget(self.client, channel_id, message_id), user_id)

    def in_dm(self, message: discord.Message, interaction: discord.Interaction[Any]) -> JobMessage:
        """A job shown in ``message``, in the member's DMs; ``interaction`` is the command's private
        reply, pointing there, where the job moves if the DMs close mid-job."""
        dm = ChannelTarget(self.client, message.channel.id, message.id)
        # The command's channel (a DM job always comes from a server's).
        channel_id = interaction.channel_id if interaction.channel_id is not None else message.channel.id
        reply = InteractionTarget(interaction, self._moved_out(interaction, channel_id), fresh=True)
        return JobMessage(DirectMessageTarget(dm, reply), message.channel.id, message.id)

    def _moved_out(self, interaction: discord.Interaction[Any], channel_id: int) -> ChannelTarget:
        """Where a private reply goes on before its token expires: a new message in the command's
        channel, for the member and saying why."""
        return ChannelTarget(
            self.client,
            channel_id,
            None,
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            note=MOVED_AFTER_TIMEOUT,
        )

    def resumed(self, job: JobRecord) -> MessageTarget:
        """The message of a journalled job after a restart: its channel message, or (a private job:
        the token is gone) a new channel message that says why."""
        if job.message_id is not None:
            return self._public(job.channel_id, job.message_id, job.user_id)
        return ChannelTarget(
            self.client,
            job.channel_id,
            None,
            guild_id=job.guild_id,
            user_id=job.user_id,
            note=MOVED_AFTER_RESTART,
        )

    async def result_turn(self, channel_id: int, outcome: JobOutcome) -> None:
        """Wait for the channel's turn for a job's last edit (:meth:`ChannelEditBudget.acquire`).
        A job the shutdown ended does not wait: there is no later."""
        if outcome.cancel_reason is CancelReason.SHUTDOWN:
            return
        await self.budget.acquire(channel_id)

    async def stop_waiting(self) -> None:
        """A shutdown hook: no edit waits for its channel's turn any more (see
        :meth:`ChannelEditBudget.stop_waiting`)."""
        self.budget.stop_waiting()

    async def record_move(
        self, job: JobRecord, target: MessageTarget, before: tuple[int, int | None]
    ) -> None:
        """Journal the job's new place, ``(channel, message)`` after ``before``, so reactions and a
        restart find it. A private reply has no message id: only a move to another channel (out of
        the member's DMs) is journalled then, and a restart goes on in a channel message there."""
        channel_id, message_id = target.channel_id, target.message_id
        if (channel_id, message_id) == before or (message_id is None and channel_id == before[0]):
            return
        try:
            if channel_id == before[0]:
                await self.storage.jobs.update(job.id, message_id=message_id)
            else:
                await self.storage.jobs.update(job.id, channel_id=channel_id, message_id=message_id)
        except Exception:
            log.exception("Job %s: could not journal its new message", job.id)

    async def must_deliver(
        self, describe: str, attempt: Callable[[], Awaitable[_T]], *, deadline_s: float | None = None
    ) -> _T:
        """``await attempt()``, tried again after a 429 or a 5xx (waiting ``retry_delays_s``, the
        last one repeating) within one overall deadline (``deadline_s``, default
        :attr:`deadline_s`) that also bounds each try, discord.py's own retries and waits
        included. Past it raises :class:`DeliveryDeferred` (its ``__cause__`` is the last
        error): the caller tries again later. Other errors propagate."""
        deadline = self.deadline_s if deadline_s is None else deadline_s
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        last: BaseException | None = None
        for tries in itertools.count():
            remaining = until - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    return await attempt()
            except TimeoutError as exc:
                last = exc
                break
            except discord.HTTPException as exc:
                if isinstance(exc, discord.Forbidden | discord.NotFound) or not (
                    exc.status == 429 or exc.status >= 500
                ):
                    raise
                last = exc
            delay = self.retry_delays_s[min(tries, len(self.retry_delays_s) - 1)]
            if loop.time() + delay >= until:
                break
            log.info("Retrying %s in %gs: %s", describe, delay, _described(last))
            await asyncio.sleep(delay)
        log.warning("Deferred %s: not done within %gs (%s)", describe, deadline, _described(last))
        raise DeliveryDeferred(f"{describe}: not done within {deadline:g}s ({_described(last)})") from last


def _described(error: BaseException | None) -> str:
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status} (code {error.code})"
    return "no answer" if error is None or isinstance(error, TimeoutError) else type(error).__name__


_Params = TypeVar("_Params", bound=BaseModel)


def journalled_params(job: JobRecord, parse: Callable[[str], _Params]) -> _Params:
    """A journalled job's parameters; :class:`JobAbandoned` when they can't be read."""
    try:
        return parse(job.params_json)
    except ValidationError:
        log.warning("Job %s: its journalled parameters can't be read", job.id)
        raise JobAbandoned(f"job {job.id} has unreadable parameters") from None
