"""What every job kind's cog shares (not a cog itself): starting a job, cancelling it and who may,
the persistent button of a job's message, and the estimate and model autocomplete of the
generation commands.

One launch path, whatever the kind and however the job was asked for (a command, a button, a
modal): :func:`admit_and_launch` — the policy admits it, the interaction is deferred (privately
where the server shows results privately), then inside :func:`private_failures` the kind prepares
its :class:`Launch` (downloading a source image, say) and :func:`launch` shows the first progress
text (``delivery.open``) and starts the job (``bot.jobs.start_job``). A reaction has no interaction:
:func:`launch_in_channel` posts the first text itself.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Literal, Protocol, Self, TypeVar, runtime_checkable

import discord
from discord import app_commands
from pydantic import BaseModel

from bot.app import HordeBot
from bot.errors import BotError, HordeUnavailableError, PermissionDeniedError, UserInputError
from bot.horde import AIHordeRequestError, BaseAsyncRequest
from bot.services.alchemy.request import ImageOrigin
from bot.services.delivery.service import JobMessage, JobViews, journalled_params
from bot.services.delivery.targets import MessageTarget
from bot.services.formatting import format_kudos
from bot.services.jobs import JobListener, JobProgress, JobsShuttingDownError, describe_horde_error
from bot.services.keys import ResolvedKey
from bot.services.kinds import COMMAND_KINDS
from bot.services.member_settings import MemberSettingsService
from bot.services.models_cache import ModelsCache
from bot.services.policy import GenerationContext, Origin, can_manage_job
from bot.services.settings.config import GuildConfig
from bot.services.styles import NO_STYLE, AppliedStyle, StyleKind, StylesCache, check_style_allowed
from bot.storage import JobKind, JobRecord
from bot.tree import report_interaction_error

log = logging.getLogger(__name__)

NO_MENTIONS: Final = discord.AllowedMentions.none()
NOT_STARTED: Final = "This generation could not be started."
PRIVATE_CHANNEL: Final = (
    "This server shows results privately here, and a reaction has no private reply: "
    "use the Rerun button instead."
)
UNKNOWN_JOB: Final = "I can't find this generation any more."
ALREADY_FINISHED: Final = "This generation has already finished."
NOT_YOURS: Final = "Only the member who started this generation or a moderator can {verb} it."
ESTIMATE: Final = "This would cost about **{kudos} kudos**. Nothing was generated."
DMS_CLOSED: Final = (
    "I can't send you DMs (Discord refused: they are closed to me), so your result comes here, "
    "privately. Open your DMs to the bot, or turn DM delivery off in `/settings show`."
)
IN_YOUR_DMS: Final = "📬 Working on it in your DMs: {url}"
ALCHEMY_COG: Final = "Alchemy"
"""The cog that runs alchemy on an image (:class:`ImageOperations`), for /imagine's Upscale."""
CANCEL: Final = "cancel"
CANCEL_LOOK: Final = ("Cancel", discord.ButtonStyle.danger, "✖️")

_Params = TypeVar("_Params", bound=BaseModel)
_P_contra = TypeVar("_P_contra", bound=BaseModel, contravariant=True)


def is_age_restricted(channel: object) -> bool:
    """Whether ``channel`` is age-restricted; a thread follows its parent. Unknown channels are not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return callable(is_nsfw) and bool(is_nsfw())


def require_manager(interaction: discord.Interaction[Any], job: JobRecord, verb: str) -> None:
    """Cancel and Delete: the member who started the job, or a moderator (Manage Messages) here."""
    manages = interaction.guild is not None and interaction.permissions.manage_messages
    if not can_manage_job(job, interaction.user.id, manages_messages=manages):
        raise PermissionDeniedError(NOT_YOURS.format(verb=verb))


def job_context(
    bot: HordeBot,
    interaction: discord.Interaction[Any],
    command: Literal["write", "alchemy"],
    prompt: str = "",
    *,
    model: str | None = None,
) -> GenerationContext:
    """What the policy checks before a text or alchemy job starts. Refuses early when the bot is
    shutting down, so nothing fails after a public answer."""
    if not bot.jobs.accepting:
        raise JobsShuttingDownError()
    origin: Origin = "button" if interaction.type is discord.InteractionType.component else "command"
    return GenerationContext(
        origin=origin,
        command=command,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        # Text and alchemy requests are never NSFW, so the channel's rating doesn't matter.
        age_restricted=False,
        prompt=prompt,
        kind=COMMAND_KINDS[command],
        model=model,
    )


@runtime_checkable
class ImageOperations(Protocol):
    """What the alchemy cog offers other cogs (found by name, never imported: cogs don't import
    each other): start ``form`` on an image, public or private as the server says."""

    async def run(
        self,
        interaction: discord.Interaction[Any],
        attachment: discord.Attachment,
        form: str,
        origin: ImageOrigin | None = None,
    ) -> None: ...


# -- starting --------------------------------------------------------------------------------------


class RenderProgress(Protocol[_P_contra]):
    """A kind's progress text (``None``: before the Horde answered)."""

    def __call__(
        self, params: _P_contra, progress: JobProgress | None, *, bar_width: int, anonymous: bool
    ) -> str: ...


class MakeListener(Protocol[_P_contra]):
    """A kind's listener for a job shown in ``target``."""

    def __call__(
        self, bot: HordeBot, target: MessageTarget, params: _P_contra, *, anonymous: bool, private: bool
    ) -> JobListener: ...


@dataclass(frozen=True, slots=True)
class JobUI(Generic[_Params]):
    """How a kind's jobs look on Discord: what the launch path and a restart need of the kind."""

    kind: JobKind
    button: type[JobButton]
    parse: Callable[[str], _Params]
    """Its journalled parameters, read back."""
    progress_text: RenderProgress[_Params]
    listener: MakeListener[_Params]
    views: JobViews | None = None
    """Its buttons, for a copy of a result (/jobs show, ✉️) to have them too."""

    def launch(self, request: BaseAsyncRequest, params: _Params) -> Launch:
        return Launch(self, request, params)

    def load(self, bot: HordeBot) -> None:
        """From the kind's ``cog_load``: its buttons answer on every message, and the bot knows how
        to rebuild its listeners after a restart."""
        bot.add_dynamic_items(self.button)
        if self.views is not None:
            bot.delivery.views[self.kind] = self.views
        bot.jobs.set_listener_factory(self.kind, lambda job: self.listener_for(bot, job))

    def unload(self, bot: HordeBot) -> None:
        bot.remove_dynamic_items(self.button)

    def listener_for(self, bot: HordeBot, job: JobRecord) -> JobListener:
        """The listener of a journalled job; :class:`JobAbandoned` when its parameters can't be
        read. A private job (no channel message) continues in a new channel message."""
        params = journalled_params(job, self.parse)
        anonymous = job.key_owner == "anonymous"
        return self.listener(bot, bot.delivery.resumed(job), params, anonymous=anonymous, private=False)


@dataclass(frozen=True, slots=True)
class Launch:
    """A job ready to start: its kind's :class:`JobUI`, the Horde request (without a key yet) and
    the parameters to journal."""

    ui: JobUI[Any]
    request: BaseAsyncRequest
    params: BaseModel

    def first_text(self, bot: HordeBot, key: ResolvedKey) -> str:
        """What the job's message says until the Horde answers."""
        bar_width = bot.settings.progress.bar_width
        return self.ui.progress_text(self.params, None, bar_width=bar_width, anonymous=key.is_anonymous)


@contextlib.asynccontextmanager
async def private_failures(interaction: discord.Interaction[Any]) -> AsyncIterator[None]:
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


async def admit_and_launch(
    bot: HordeBot,
    interaction: discord.Interaction[Any],
    context: GenerationContext,
    prepare: Callable[[], Awaitable[Launch]],
) -> None:
    """Through the server's policy, then (publicly, or privately where the server or the member's
    /settings say so, or in the member's DMs where they asked for that) the progress message and
    the job. ``prepare`` makes the job once the member was answered (a source image is downloaded
    there); what it refuses is told privately."""
    member = await MemberSettingsService(bot.storage).get(interaction.user.id)
    async with bot.policy.admit(context) as decision:
        private = decision.ephemeral or member.private
        by_dm = member.dm and interaction.guild_id is not None
        await interaction.response.defer(thinking=True, ephemeral=private or by_dm)
        async with private_failures(interaction):
            job = await prepare()
            if by_dm and await launch_in_dm(bot, interaction, job, decision.key):
                return
            await launch(bot, interaction, job, decision.key, private=private or by_dm)
            if by_dm:
                await interaction.followup.send(DMS_CLOSED, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def launch_in_dm(
    bot: HordeBot, interaction: discord.Interaction[Any], job: Launch, key: ResolvedKey
) -> bool:
    """Start ``job`` in a new message in the member's DMs, and point the (private, deferred) reply
    there; ``False`` when Discord refuses to DM them (nothing was started)."""
    try:
        channel = await interaction.user.create_dm()
        message = await channel.send(job.first_text(bot, key), allowed_mentions=NO_MENTIONS)
    except discord.Forbidden:
        return False
    # Pointed there first: if the DMs close mid-job, the job comes back to this reply, and a late
    # pointer must not overwrite it.
    try:
        await interaction.edit_original_response(content=IN_YOUR_DMS.format(url=message.jump_url))
    except discord.HTTPException as exc:
        log.warning("Could not point a private reply to the DMs: HTTP %s (code %s)", exc.status, exc.code)
    try:
        await _start(
            bot,
            bot.delivery.in_dm(message, interaction),
            job,
            key,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
        )
    except BotError:
        # Told privately by private_failures; the DM would only say "sending…" for ever.
        with contextlib.suppress(discord.HTTPException):
            await message.delete()
        raise
    return True


async def launch(
    bot: HordeBot, interaction: discord.Interaction[Any], job: Launch, key: ResolvedKey, *, private: bool
) -> JobRecord:
    """Start ``job`` for the interaction's user in the interaction's (deferred) reply; ``private``
    when it was deferred ephemeral. ``key`` is the one the policy chose (own, sponsor or
    anonymous; then the message says how to log in)."""
    placed = await bot.delivery.open(interaction, job.first_text(bot, key), private=private)
    return await _start(
        bot, placed, job, key, user_id=interaction.user.id, guild_id=interaction.guild_id, private=private
    )


async def launch_in_channel(
    bot: HordeBot,
    channel: discord.abc.Messageable,
    job: Launch,
    key: ResolvedKey,
    *,
    user_id: int,
    guild_id: int | None,
) -> JobRecord:
    """Start ``job`` for ``user_id`` in a new message in ``channel`` (no interaction to answer).

    Where the server shows results privately this refuses (:class:`UserInputError`): without an
    interaction there is no private reply, and posting publicly would go against the setting.
    """
    channel_id = getattr(channel, "id", None)
    config = await bot.guild_settings.get(guild_id)
    if config.visibility_in(channel_id if isinstance(channel_id, int) else None) == "private":
        raise UserInputError(PRIVATE_CHANNEL)
    message = await channel.send(job.first_text(bot, key), allowed_mentions=NO_MENTIONS)
    return await _start(
        bot, bot.delivery.in_channel(message, user_id), job, key, user_id=user_id, guild_id=guild_id
    )


async def _start(
    bot: HordeBot,
    placed: JobMessage,
    job: Launch,
    key: ResolvedKey,
    *,
    user_id: int,
    guild_id: int | None,
    private: bool = False,
) -> JobRecord:
    listener = job.ui.listener(bot, placed.target, job.params, anonymous=key.is_anonymous, private=private)
    request = job.request
    if "proxied_account" in type(request).model_fields:
        proxied = await bot.proxied.for_request(key, user_id)
        if proxied is not None:
            request = request.with_fields(proxied_account=proxied)
    return await bot.jobs.start_job(
        job.ui.kind,
        request=request,
        key=key.apikey,
        key_owner=key.owner,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=placed.channel_id,
        message_id=placed.message_id,
        params=job.params.model_dump(mode="json"),
        listener=listener,
    )


async def answer_estimate(
    bot: HordeBot, interaction: discord.Interaction[Any], price: Callable[[str], Awaitable[float]]
) -> None:
    """``estimate``: what the job would cost with the member's key (``price(key)``, a dry run),
    privately. Nothing is queued, so it needs no admission."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    key = await bot.accounts.resolve_key(interaction.user.id, interaction.guild_id)
    try:
        kudos = await price(key.apikey)
    except AIHordeRequestError as exc:
        raise UserInputError(describe_horde_error(exc, anonymous=key.is_anonymous)) from None
    await interaction.followup.send(
        ESTIMATE.format(kudos=format_kudos(kudos)), ephemeral=True, allowed_mentions=NO_MENTIONS
    )


async def model_choices(models: ModelsCache, current: str) -> list[app_commands.Choice[str]]:
    """The model option's autocomplete: the models workers serve that match ``current`` (none
    while the Horde can't be asked)."""
    try:
        suggestions = await models.suggest(current)
    except AIHordeRequestError:
        return []
    return [app_commands.Choice(name=choice.name, value=choice.value) for choice in suggestions]


async def find_style(
    styles: StylesCache, kind: StyleKind, name: str, config: GuildConfig
) -> AppliedStyle | None:
    """The style a generation applies (the member's, else the server's default; none when both
    are empty, or when the member typed ``none``), if this server allows it. The Horde failing is
    told as such."""
    if not name or name.strip().casefold() == NO_STYLE:
        return None
    check_style_allowed(name, config.style_allowed)
    try:
        return await styles.find(kind, name)
    except AIHordeRequestError:
        raise HordeUnavailableError() from None


async def style_choices(
    styles: StylesCache, kind: StyleKind, current: str, config: GuildConfig
) -> list[app_commands.Choice[str]]:
    """The style option's autocomplete: the popular styles this server allows that match ``current``."""
    try:
        suggestions = await styles.suggest(kind, current, allowed=config.style_allowed)
    except AIHordeRequestError:
        return []
    return [app_commands.Choice(name=choice.name, value=choice.value) for choice in suggestions]


# -- the buttons -----------------------------------------------------------------------------------


def job_view(*buttons: discord.ui.Item[Any]) -> discord.ui.View:
    """A persistent view (no timeout) of ``buttons``."""
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


async def find_job(bot: HordeBot, job_id: str, kind: JobKind) -> JobRecord:
    job = await bot.storage.jobs.get(job_id)
    if job is None or job.kind != kind:
        raise UserInputError(UNKNOWN_JOB)
    return job


async def cancel_job(bot: HordeBot, interaction: discord.Interaction[Any], job: JobRecord) -> None:
    """Cancel: the job's own message then says it was cancelled, with what had finished."""
    require_manager(interaction, job, "cancel")
    if not await bot.jobs.cancel(job.id):
        raise UserInputError(ALREADY_FINISHED)
    await interaction.response.defer()


class JobButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"(?!)"):
    """A button of a job's message that works on any message, also after a restart, without
    registering anything per message: its ``custom_id`` is ``<prefix>:<action>:<job id>`` and a
    click reads the job back from the journal.

    A kind subclasses it with its ``template`` (matching those custom ids), ``prefix``, ``kind``,
    ``cog_name`` and ``looks``. Cancel is handled here, the same for every kind; any other action
    goes to the ``on_job_button(interaction, action, job)`` method of the cog named ``cog_name``.
    """

    prefix: ClassVar[str]
    kind: ClassVar[JobKind]
    cog_name: ClassVar[str]
    looks: ClassVar[Mapping[str, tuple[str, discord.ButtonStyle, str]]]

    def __init__(self, action: str, job_id: str) -> None:
        label, style, emoji = self.looks[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"{self.prefix}:{action}:{job_id}"
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # Dynamic items have no view of ours to route errors through: answer them here.
        try:
            bot = interaction.client
            if not isinstance(bot, HordeBot):
                raise RuntimeError(f"no HordeBot to handle {self.custom_id}")
            job = await find_job(bot, self.job_id, self.kind)
            if self.action == CANCEL:
                await cancel_job(bot, interaction, job)
                return
            handle = getattr(bot.get_cog(self.cog_name), "on_job_button", None)
            if handle is None:
                raise RuntimeError(f"no {self.cog_name} cog to handle {self.custom_id}")
            await handle(interaction, self.action, job)
        except Exception as exc:
            await report_interaction_error(interaction, exc)
