"""Where a job's message is (:class:`MessageTarget`) and how it is edited (:func:`edit_job_message`).

* :class:`ChannelTarget` — a message in the channel, edited by channel and message id, so it keeps
  working after the interaction token expired and after a restart. Without a message id it posts
  a new message on its first edit (a private job resumed after a restart).
* :class:`InteractionTarget` — a private (ephemeral) reply, which only the interaction's webhook can
  edit, for 15 minutes. Shortly before the token expires (or when Discord already refuses it), the
  job moves to a new channel message that says why, and the private reply points there.
* :class:`PublicTarget` — a channel message for a member. When Discord refuses it and the bot may
  no longer post in the channel (its permissions were taken away mid-job, or before a restart),
  the job moves to a new message in the member's DMs that says why.
* :class:`DirectMessageTarget` — a message in the member's DMs (their /settings ask for results
  there). When Discord refuses the DM mid-job (the member closed their DMs or blocked the bot),
  the job moves to the command's private reply, and from there as a private reply does.

The token is deliberately not journalled: it is a bearer credential for posting as the bot, and
it would only buy a resumed job the rest of those 15 minutes. So a private job resumed after a
restart continues in a channel message too (its journalled ``message_id`` is ``None``: a private
reply can't be edited through the channel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import discord

from bot.services.delivery.limits import fit_fields
from bot.services.jobs import DeliveryFailed, JobAbandoned
from bot.storage import JobRecord

log = logging.getLogger(__name__)

NO_MENTIONS: Final = discord.AllowedMentions.none()
TOKEN_LIFETIME_S: Final = 15 * 60.0
TOKEN_MARGIN_S: Final = 120.0
"""A private reply moves to the channel this long before its token expires, so the move (and a
last edit pointing to it) still fits in the token's life even if an edit is slow or retried."""
MESSAGE_LIMIT: Final = 2000
MOVED_AFTER_TIMEOUT: Final = (
    "-# Posted in the channel: Discord lets me update a private reply for 15 minutes only."
)
MOVED_AFTER_RESTART: Final = (
    "-# Posted in the channel: the bot restarted and can no longer update the private reply."
)
MOVED_FROM_DMS: Final = "-# Shown here: I can't send you DMs any more."
MOVED_TO_DMS: Final = "-# Sent to your DMs: I can't post in <#{channel}> any more."
RESULT_REFUSED: Final = (
    "Discord refused the result's message: no permission to post it there, nor to DM the member"
)
MOVED_HERE: Final = (
    "This continues in the channel, because private replies can only be updated for 15 minutes: {url}"
)
# Discord error codes.
UNKNOWN_MESSAGE: Final = 10008
UNKNOWN_WEBHOOK: Final = 10015
INVALID_WEBHOOK_TOKEN: Final = 50027

Fields = dict[str, Any]
BuildFields = Callable[[bool], Fields]
"""``build(fresh)``: the ``edit`` keyword arguments of the next edit. ``fresh`` means the edit posts a
new message, which needs everything (the view, every file) rather than only what changed."""


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
        fresh: bool = False,
    ) -> None:
        self._interaction: discord.Interaction[Any] | None = interaction
        self._expires_at = interaction.created_at.timestamp() + TOKEN_LIFETIME_S - margin_s
        self._fallback = fallback
        self._fresh = fresh
        """The reply shows nothing of the job yet (it points elsewhere): the next edit sends all."""

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
                edited = await interaction.edit_original_response(**build(self._fresh))
                self._fresh = False
                return edited
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


class _MovingTarget:
    """A target that may move to another one: its ids are those of where the job is now."""

    @property
    def _current(self) -> MessageTarget:
        raise NotImplementedError

    @property
    def channel_id(self) -> int:
        return self._current.channel_id

    @property
    def message_id(self) -> int | None:
        return self._current.message_id


class DirectMessageTarget(_MovingTarget):
    """A message in the member's DMs, edited as a channel message; once Discord refuses the DM
    (any 403: a DM has no permissions to lack, so the member closed their DMs or blocked the bot),
    the job moves to ``fallback``, the command's private reply, with a line saying why."""

    def __init__(self, dm: ChannelTarget, fallback: InteractionTarget) -> None:
        self._dm = dm
        self._fallback = fallback
        self._moved = False

    def __repr__(self) -> str:
        return f"DirectMessageTarget(dm={self._dm!r}, moved={self._moved})"

    @property
    def _current(self) -> MessageTarget:
        return self._fallback if self._moved else self._dm

    async def edit(self, build: BuildFields) -> discord.Message:
        if not self._moved:
            try:
                return await self._dm.edit(build)
            except discord.Forbidden as exc:
                log.info("DMs refused a job's message (code %s): it moves to the private reply", exc.code)
                self._moved = True

        def noted(fresh: bool) -> Fields:
            fields = build(fresh)
            if "content" in fields:
                fields["content"] = _with_note(fields["content"] or "", MOVED_FROM_DMS)
            return fields

        return await self._fallback.edit(noted)


class PublicTarget(_MovingTarget):
    """``channel``'s message, for ``user_id``; once Discord refuses an edit (403) and the bot's
    cached permissions say it may not post there any more (no View Channel or Send Messages), the
    job moves to a new message in the member's DMs (every file, its buttons) with a line saying
    why. Any other 403 (no Attach Files, say) propagates as before."""

    def __init__(self, client: discord.Client, channel: ChannelTarget, user_id: int) -> None:
        self._client = client
        self._channel = channel
        self._user_id = user_id
        self._dm: ChannelTarget | None = None

    def __repr__(self) -> str:
        return f"PublicTarget(channel={self._channel!r}, dm={self._dm!r})"

    @property
    def _current(self) -> MessageTarget:
        return self._dm if self._dm is not None else self._channel

    async def edit(self, build: BuildFields) -> discord.Message:
        if self._dm is None:
            try:
                return await self._channel.edit(build)
            except discord.Forbidden:
                if self._may_post():
                    raise
            user = self._client.get_user(self._user_id) or await self._client.fetch_user(self._user_id)
            dm = await user.create_dm()
            log.info(
                "No permission to post in channel %s: a job moves to its member's DMs",
                self._channel.channel_id,
            )
            self._dm = ChannelTarget(
                self._client, dm.id, None, note=MOVED_TO_DMS.format(channel=self._channel.channel_id)
            )
        return await self._dm.edit(build)

    def _may_post(self) -> bool:
        """What the cache says; a channel it doesn't know (or a DM) counts as one the bot may post in."""
        channel = self._client.get_channel(self._channel.channel_id)
        if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return True
        return may_post_in(channel)


def may_post_in(channel: discord.abc.GuildChannel | discord.Thread) -> bool:
    """Whether the bot's cached permissions let it see ``channel`` and send messages there."""
    permissions = channel.permissions_for(channel.guild.me)
    send = (
        permissions.send_messages_in_threads
        if isinstance(channel, discord.Thread)
        else permissions.send_messages
    )
    return permissions.view_channel and send


def _token_refused(exc: discord.HTTPException) -> bool:
    return exc.code in (UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN) or exc.status == 401


async def edit_job_message(
    target: MessageTarget, job: JobRecord, build: BuildFields, *, final: bool
) -> discord.Message | None:
    """Edit ``job``'s message; ``None`` when Discord failed in a way a later edit may not.

    A 404 abandons the job (its message is gone). A 403 while attaching files propagates (the caller
    sends again without them); so does any error of a ``final`` edit, which
    :meth:`Delivery.must_deliver` tries again, but a 403 without files, which raises
    :class:`DeliveryFailed`: a result refused everywhere is journalled as not delivered.
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
        if final:
            raise DeliveryFailed(RESULT_REFUSED) from None
        return None
    except discord.HTTPException as exc:
        if final:
            raise
        log.warning("Could not edit the message of job %s: HTTP %s (code %s)", job.id, exc.status, exc.code)
        return None


def with_line(content: str, line: str) -> str:
    """``content`` with ``line`` added below it, unless it already says so."""
    return content if line in content else f"{content}\n{line}"
