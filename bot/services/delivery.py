"""Delivering a job to Discord: the message a job keeps current, the per-channel edit budget, and the
listener that text and alchemy jobs share (images have their own in ``cogs.imagine``, built on the
same pieces).

A job's message is a :class:`MessageTarget`:

* :class:`ChannelTarget` — a message in the channel, edited by channel and message id, so it keeps
  working after the interaction token expired and after a restart. Without a message id it posts
  a new message on its first edit (a private job resumed after a restart).
* :class:`InteractionTarget` — a private (ephemeral) reply, which only the interaction's webhook can
  edit, for 15 minutes. Shortly before the token expires (or when Discord already refuses it), the
  job moves to a new channel message that says why, and the private reply points there.

The token is deliberately not journalled: it is a bearer credential for posting as the bot, and
it would only buy a resumed job the rest of those 15 minutes. So a private job resumed after a
restart continues in a channel message too (its journalled ``message_id`` is ``None``: a private
reply can't be edited through the channel).

Every edit goes through its channel's :class:`ChannelEditBudget` (at most 5 edits in any 5 s per
channel, Discord's bucket): progress edits, and images that arrive mid-job, are skipped when the
channel has no turn free (the next edit shows them); final results wait for their turn, first come
first served, however long the queue (it always moves: one turn a second at the defaults), and
progress never takes a turn they wait for. Once its turn comes, a result has one overall deadline
(:data:`DELIVERY_DEADLINE_S`, discord.py's own retries included); past it the listener raises
:class:`~bot.services.jobs.DeliveryDeferred` and the jobs engine, which journals the delivery apart
from the generation, tries again later. A result is never dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import discord
from pydantic import BaseModel, ValidationError

from bot.errors import BotError
from bot.horde import Wakeup
from bot.services.jobs import (
    CancelReason,
    DeliveredImage,
    DeliveryDeferred,
    JobAbandoned,
    JobListener,
    JobOutcome,
    JobProgress,
)
from bot.services.limits import fit_fields
from bot.services.render import EditThrottle
from bot.storage import JobRecord

if TYPE_CHECKING:
    from bot.config import ProgressSettings
    from bot.storage import Storage

log = logging.getLogger(__name__)
_T = TypeVar("_T")

NO_MENTIONS: Final = discord.AllowedMentions.none()
NO_FILES: Final = "⚠️ I can't attach files here: I need the Attach Files permission in this channel."
CHANNEL_EDITS: Final = 5
CHANNEL_WINDOW_S: Final = 5.0
"""Discord's per-channel message bucket is 5 requests per 5 s; every job in a channel shares it."""
DELIVERY_DEADLINE_S: Final = 120.0
"""How long a result may take to go out once its turn came, every try and discord.py's own
retries (up to 25 s for a 5xx, a 429's wait) included. Past it the delivery is deferred (tried
again later), never dropped."""
FIRST_EDIT_DEADLINE_S: Final = 20.0
"""How long the first edit of a job's message (before anything is sent to the Horde) is tried."""
TOKEN_LIFETIME_S: Final = 15 * 60.0
TOKEN_MARGIN_S: Final = 120.0
"""A private reply moves to the channel this long before its token expires, so the move (and a
last edit pointing to it) still fits in the token's life even if an edit is slow or retried."""
FINAL_RETRY_DELAYS_S: Final[tuple[float, ...]] = (0.25, 1.0, 2.0, 4.0, 8.0)
"""Waits between tries of an edit that must not be lost (a result) after a 429 or a 5xx that
discord.py gave up on; the last one repeats until :data:`DELIVERY_DEADLINE_S`."""
MESSAGE_LIMIT: Final = 2000
MOVED_AFTER_TIMEOUT: Final = (
    "-# Posted in the channel: Discord lets me update a private reply for 15 minutes only."
)
MOVED_AFTER_RESTART: Final = (
    "-# Posted in the channel: the bot restarted and can no longer update the private reply."
)
MOVED_HERE: Final = (
    "This continues in the channel, because private replies can only be updated for 15 minutes: {url}"
)
DISCORD_TROUBLE: Final = (
    "Discord didn't let me show this (HTTP {status}), so nothing was started. Please try again in a moment."
)
# Discord error codes.
UNKNOWN_MESSAGE: Final = 10008
UNKNOWN_WEBHOOK: Final = 10015
INVALID_WEBHOOK_TOKEN: Final = 50027

Fields = dict[str, Any]
BuildFields = Callable[[bool], Fields]
"""``build(fresh)``: the ``edit`` keyword arguments of the next edit. ``fresh`` means the edit posts a
new message, which needs everything (the view, every file) rather than only what changed."""
Finish = Callable[[JobRecord, JobOutcome], Fields]
"""The final edit of a job's message: ``message.edit`` keyword arguments."""


def monotonic() -> float:
    """``time.monotonic()``, looked up at each call (not bound at import as a default argument),
    so a patched clock such as SimCord's virtual one is seen."""
    return time.monotonic()


class ChannelEditBudget:
    """Every job in a channel shares one edit budget: at most ``edits`` edits in any ``window_s``
    seconds (a sliding window over the times of the channel's last ``edits`` edits), which keeps
    the bot inside Discord's per-channel bucket (fixed windows of the same size).

    * Progress (:meth:`try_spend`) goes out only if a turn is free *now* and no result is waiting
      for one: otherwise it is skipped (the next poll shows the news).
    * Results (:meth:`acquire`) wait for their turn, first come first served: each call reserves
      the earliest turn after every earlier reservation, so none can be overtaken, and none is
      dropped however long the queue (it moves ``edits`` per ``window_s`` whatever happens).
    * Once :meth:`stop_waiting` was called (the bot shuts down: there is no later), nothing waits.
    """

    def __init__(
        self,
        edits: int = CHANNEL_EDITS,
        window_s: float = CHANNEL_WINDOW_S,
        *,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        max_channels: int = 4096,
    ) -> None:
        if edits < 1 or window_s <= 0:
            raise ValueError("edits must be at least 1 and window_s positive")
        self.edits = edits
        self.window_s = window_s
        self.longest_wait_s = 0.0
        """The longest a result waited for its turn (for benchmarks)."""
        self._clock = clock
        self._sleep = sleep
        self._stopped = Wakeup()
        self._max_channels = max_channels
        # Channel id -> the times of its last `edits` edits, ascending; a time in the future is
        # the turn a result is waiting for.
        self._turns: dict[int, deque[float]] = {}

    def __repr__(self) -> str:
        return f"ChannelEditBudget({self.edits}/{self.window_s:g}s, channels={len(self._turns)})"

    def available(self, channel_id: int) -> int:
        """Edits the channel could make now without waiting (0 while anything waits)."""
        now = self._clock()
        turns = self._turns.get(channel_id, ())
        if turns and turns[-1] > now:
            return 0
        return self.edits - sum(1 for at in turns if at > now - self.window_s)

    def try_spend(self, channel_id: int) -> bool:
        """Take the channel's next turn for a progress edit if it is now; ``False`` (nothing taken)
        when the channel is busy or a result is waiting."""
        now = self._clock()
        if self.next_turn(channel_id, now) > now:
            return False
        self._take(channel_id, now, now)
        return True

    def reserve(self, channel_id: int) -> float:
        """Reserve the channel's next turn for an edit that must go out (a result): the time it
        may go out."""
        now = self._clock()
        turn = self.next_turn(channel_id, now)
        self._take(channel_id, turn, now)
        self.longest_wait_s = max(self.longest_wait_s, turn - now)
        return turn

    async def acquire(self, channel_id: int) -> None:
        """Wait for the channel's next turn (see :meth:`reserve`), or until :meth:`stop_waiting`."""
        if self._stopped.is_set():
            return
        delay = self.reserve(channel_id) - self._clock()
        if delay <= 0:
            return
        if self._sleep is not None:
            await self._sleep(delay)
        else:
            # On an asyncio.sleep timer, which SimCord's virtual clock runs in tests.
            await self._stopped.sleep(delay)

    def stop_waiting(self) -> None:
        """From now on nothing waits, and every edit waiting for its turn goes out at once: the bot
        is shutting down, and a result still waiting would be cut off (it stays journalled as
        undelivered, for the next start)."""
        self._stopped.set()

    def next_turn(self, channel_id: int, now: float) -> float:
        """The earliest time the channel's next edit may go out: after every reserved turn, and a
        whole window after the edit ``edits`` back."""
        turns = self._turns.get(channel_id)
        if not turns:
            return now
        turn = max(now, turns[-1])
        if len(turns) >= self.edits:
            turn = max(turn, turns[0] + self.window_s)
        return turn

    def _take(self, channel_id: int, turn: float, now: float) -> None:
        turns = self._turns.get(channel_id)
        if turns is None:
            turns = self._turns[channel_id] = deque(maxlen=self.edits)
        turns.append(turn)
        if len(self._turns) > self._max_channels:
            # A channel whose last edit is a window old constrains nothing: forgetting it is free.
            for key in [key for key, kept in self._turns.items() if kept[-1] <= now - self.window_s]:
                del self._turns[key]


# -- where a job's message is ----------------------------------------------------------------------


class MessageTarget(Protocol):
    """The message a job keeps current."""

    @property
    def channel_id(self) -> int: ...

    @property
    def message_id(self) -> int | None:
        """The channel message's id; ``None`` while there is none (a private reply)."""
        ...

    async def edit(self, build: BuildFields) -> discord.Message:
        """Apply ``build``'s fields; raises what Discord raised (``NotFound`` 10008: it's gone)."""
        ...


def _for_send(fields: Fields) -> Fields:
    """``edit`` keyword arguments as ``send`` takes them."""
    sent = {key: value for key, value in fields.items() if key not in ("attachments", "view", "embed")}
    files = [item for item in fields.get("attachments", ()) if isinstance(item, discord.File)]
    if files:
        sent["files"] = files
    if fields.get("view") is not None:
        sent["view"] = fields["view"]
    if fields.get("embed") is not None:
        sent["embed"] = fields["embed"]
    return sent


def _with_note(content: str, note: str) -> str:
    text = f"{content}\n{note}"
    return text if len(text) <= MESSAGE_LIMIT else content[: MESSAGE_LIMIT - len(note) - 2] + "…\n" + note


class ChannelTarget:
    """A message in a channel. Without ``message_id``, the first edit posts it (fresh), for
    ``user_id`` and with ``note`` saying why it is in the channel; the note stays on later edits."""

    def __init__(
        self,
        client: discord.Client,
        channel_id: int,
        message_id: int | None,
        *,
        guild_id: int | None = None,
        user_id: int | None = None,
        note: str | None = None,
    ) -> None:
        self._client = client
        self._guild_id = guild_id
        self._channel_id = channel_id
        self._message_id = message_id
        self._user_id = user_id
        self._note = note

    def __repr__(self) -> str:
        return f"ChannelTarget(channel={self._channel_id}, message={self._message_id})"

    @property
    def channel_id(self) -> int:
        return self._channel_id

    @property
    def message_id(self) -> int | None:
        return self._message_id

    async def edit(self, build: BuildFields) -> discord.Message:
        # With the guild, so that the posted message's jump_url is right.
        channel = self._client.get_partial_messageable(self._channel_id, guild_id=self._guild_id)
        if self._message_id is not None:
            fields = build(False)
            if self._note is not None and "content" in fields:
                fields["content"] = self._noted(fields["content"] or "")
            return await channel.get_partial_message(self._message_id).edit(**fields)
        fields = _for_send(build(True))
        fields["content"] = self._noted(fields.get("content") or "")
        if self._user_id is not None:
            # Only the member it is for is pinged (their prompt may mention others: they aren't).
            fields["allowed_mentions"] = discord.AllowedMentions(
                everyone=False, roles=False, replied_user=False, users=[discord.Object(self._user_id)]
            )
        message = await channel.send(**fields)
        self._message_id = message.id
        return message

    def _noted(self, content: str) -> str:
        if self._note is None:
            return content
        who = f"<@{self._user_id}> " if self._user_id is not None else ""
        return _with_note(content, f"{who}{self._note}")


class InteractionTarget:
    """A private reply, edited through the interaction's webhook while its token lives (less a
    margin); then, or when Discord refuses the token, the job moves to ``fallback`` (a new channel
    message) and the private reply says where it went."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        fallback: ChannelTarget,
        *,
        margin_s: float = TOKEN_MARGIN_S,
    ) -> None:
        self._interaction: discord.Interaction[Any] | None = interaction
        self._expires_at = interaction.created_at.timestamp() + TOKEN_LIFETIME_S - margin_s
        self._fallback = fallback

    def __repr__(self) -> str:
        return f"InteractionTarget(private={self.private}, fallback={self._fallback!r})"

    @property
    def private(self) -> bool:
        """Still shown in the private reply."""
        return self._interaction is not None

    @property
    def channel_id(self) -> int:
        return self._fallback.channel_id

    @property
    def message_id(self) -> int | None:
        return self._fallback.message_id

    async def edit(self, build: BuildFields) -> discord.Message:
        interaction = self._interaction
        if interaction is not None and discord.utils.utcnow().timestamp() < self._expires_at:
            try:
                return await interaction.edit_original_response(**build(False))
            except discord.HTTPException as exc:
                if not _token_refused(exc):
                    raise
                log.info("The interaction token of a private reply was refused: moving it to the channel")
                self._interaction = interaction = None
        message = await self._fallback.edit(build)
        if interaction is not None:
            # The token still works: the private reply points to where the job went.
            self._interaction = None
            try:
                await interaction.edit_original_response(
                    content=MOVED_HERE.format(url=message.jump_url),
                    embed=None,
                    attachments=[],
                    view=None,
                    allowed_mentions=NO_MENTIONS,
                )
            except discord.HTTPException as exc:
                log.info(
                    "Could not point the private reply to the channel: HTTP %s (code %s)",
                    exc.status,
                    exc.code,
                )
        return message


def _token_refused(exc: discord.HTTPException) -> bool:
    return exc.code in (UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN) or exc.status == 401


# -- the delivery service --------------------------------------------------------------------------


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
            fallback = ChannelTarget(
                self.client,
                channel_id,
                None,
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
                note=MOVED_AFTER_TIMEOUT,
            )
            return JobMessage(InteractionTarget(interaction, fallback), channel_id, None)
        return JobMessage(ChannelTarget(self.client, channel_id, message.id), channel_id, message.id)

    def in_channel(self, message: discord.Message) -> JobMessage:
        """A job shown in ``message``, a channel message the bot posted."""
        target = ChannelTarget(self.client, message.channel.id, message.id)
        return JobMessage(target, message.channel.id, message.id)

    def resumed(self, job: JobRecord) -> ChannelTarget:
        """The message of a journalled job after a restart: its channel message, or (a private job:
        the token is gone) a new channel message that says why."""
        if job.message_id is not None:
            return ChannelTarget(self.client, job.channel_id, job.message_id)
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

    async def record_move(self, job: JobRecord, target: MessageTarget, before: int | None) -> None:
        """Journal the job's new channel message, so reactions and a restart find it."""
        if target.message_id is None or target.message_id == before:
            return
        try:
            await self.storage.jobs.update(job.id, message_id=target.message_id)
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


# -- the listener of text and alchemy jobs ---------------------------------------------------------


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
                fields["content"] = _with_line(fields.get("content") or "", NO_FILES)
            return fields

        return build

    async def _edit(self, job: JobRecord, build: BuildFields, *, final: bool = False) -> bool:
        """Edit; ``False`` when Discord failed in a way a later edit may not. A 404 abandons the job
        (its message is gone). A 403 with files propagates (sent again without them); so does any
        error of a ``final`` edit, which :meth:`Delivery.must_deliver` tries again."""
        before = self._target.message_id
        if await edit_job_message(self._target, job, build, final=final) is None:
            return False
        await self._delivery.record_move(job, self._target, before)
        return True


async def edit_job_message(
    target: MessageTarget, job: JobRecord, build: BuildFields, *, final: bool
) -> discord.Message | None:
    """Edit ``job``'s message; ``None`` when Discord failed in a way a later edit may not.

    A 404 abandons the job (its message is gone). A 403 while attaching files propagates (the caller
    sends again without them); so does any error of a ``final`` edit, which
    :meth:`Delivery.must_deliver` tries again.
    """
    had_files = False

    def recorded(fresh: bool) -> Fields:
        nonlocal had_files
        fields = fit_fields(build(fresh))
        had_files = bool(fields.get("attachments"))
        return fields

    try:
        return await target.edit(recorded)
    except discord.NotFound as exc:
        if exc.code != UNKNOWN_MESSAGE:
            log.info("The message of job %s can no longer be edited: %s", job.id, exc)
        raise JobAbandoned from None
    except discord.Forbidden:
        if had_files:
            raise
        log.warning("Not allowed to edit the message of job %s", job.id)
        return None
    except discord.HTTPException as exc:
        if final:
            raise
        log.warning("Could not edit the message of job %s: HTTP %s (code %s)", job.id, exc.status, exc.code)
        return None


def _with_line(content: str, line: str) -> str:
    return content if line in content else f"{content}\n{line}"
