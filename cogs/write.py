"""/write: text generation with the AI Horde, with live progress, Cancel and Continue.

Its message is kept current by :class:`bot.services.delivery.MessageJobListener` (shared with
/alchemy). Also home of :func:`job_context` and :func:`require_manager`, which /alchemy uses too.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, Literal

import discord
from discord import app_commands
from discord.ext import commands
from pydantic import ValidationError

from bot.app import HordeBot
from bot.errors import PermissionDeniedError, UserInputError
from bot.generation_limits import MAX_PROMPT_CHARS, MAX_TEXT_TOKENS, MIN_TEXT_TOKENS
from bot.horde import ActiveModel, AIHordeRequestError
from bot.horde.consts import MODEL_TYPE
from bot.services.delivery import MessageJobListener, MessageTarget, journalled_params
from bot.services.estimates import estimate_text_cost
from bot.services.horde_info import fetch_models
from bot.services.imagine import can_manage_job
from bot.services.jobs import JobListener, JobOutcome, JobsShuttingDownError, describe_horde_error
from bot.services.keys import ResolvedKey
from bot.services.models_cache import ModelsCache
from bot.services.policy import GenerationContext, Origin
from bot.services.render import format_kudos
from bot.services.text import (
    MAX_CONTEXT,
    MAX_REP_PEN,
    MAX_TEMPERATURE,
    MIN_CONTEXT,
    MIN_REP_PEN,
    MIN_TOP_P,
    TEXT_FILENAME,
    TextOptions,
    TextParams,
    TextRequest,
    build_text_request,
    continuation,
    render_text_progress,
    render_text_result,
    text_result,
)
from bot.storage import JobKind, JobRecord, JobState
from bot.tree import report_interaction_error

log = logging.getLogger(__name__)

COG_NAME: Final = "Write"
UNKNOWN_JOB: Final = "I can't find this text any more."
ALREADY_FINISHED: Final = "This generation has already finished."
NOTHING_TO_CONTINUE: Final = "This generation has no finished text to continue."
_KINDS: Final[dict[str, JobKind]] = {"write": "text", "alchemy": "alchemy"}


def text_file(data: bytes, filename: str = TEXT_FILENAME) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename)


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
        kind=_KINDS[command],
        model=model,
    )


def require_manager(interaction: discord.Interaction[Any], job: JobRecord) -> None:
    manages = interaction.guild is not None and interaction.permissions.manage_messages
    if not can_manage_job(job, interaction.user.id, manages_messages=manages):
        raise PermissionDeniedError("Only the member who started this or a moderator can cancel it.")


# -- the buttons -----------------------------------------------------------------------------------


class Action(StrEnum):
    cancel = "cancel"
    cont = "continue"


_LOOKS: Final[dict[Action, tuple[str, discord.ButtonStyle, str]]] = {
    Action.cancel: ("Cancel", discord.ButtonStyle.danger, "✖️"),
    Action.cont: ("Continue", discord.ButtonStyle.primary, "➡️"),
}


class WriteButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"write:(?P<action>cancel|continue):(?P<job_id>[0-9a-f]{32})",
):
    """Persistent: the job id is in the ``custom_id``, the job is read back from the journal."""

    def __init__(self, action: Action, job_id: str) -> None:
        label, style, emoji = _LOOKS[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"write:{action.value}:{job_id}"
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> WriteButton:
        return cls(Action(match["action"]), match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            client = interaction.client
            cog = client.get_cog(COG_NAME) if isinstance(client, commands.Bot) else None
            if not isinstance(cog, Write):
                raise RuntimeError(f"no {COG_NAME} cog to handle {self.custom_id}")
            await cog.on_button(interaction, self.action, self.job_id)
        except Exception as exc:
            await report_interaction_error(interaction, exc)


def _view(*buttons: discord.ui.Item[Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


# -- the cog ---------------------------------------------------------------------------------------


class Write(commands.Cog, name=COG_NAME):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.models = ModelsCache(self._fetch_models, ttl_s=bot.settings.horde.models_cache_ttl_s)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(WriteButton)
        self.bot.jobs.set_listener_factory("text", self.listener_for)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(WriteButton)
        await self.models.close()

    async def _fetch_models(self) -> Sequence[ActiveModel]:
        return await fetch_models(self.bot.horde, MODEL_TYPE.text)

    @app_commands.command(description="Write text with the AI Horde's language models.")
    @app_commands.describe(
        prompt="The text to continue, or an instruction.",
        model="The text model (start typing to see what workers serve).",
        max_length="How many tokens to write.",
        max_context_length="How many tokens of the prompt the model reads.",
        temperature="Randomness: higher is more surprising.",
        top_p="Nucleus sampling: consider only the most likely tokens up to this probability.",
        repetition_penalty="Discourage repeating the same words.",
        stop_sequences="Stop writing at any of these, separated by | (\\n for a new line).",
        estimate="Only show what this would cost, without running it.",
    )
    async def write(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        model: app_commands.Range[str, 1, 100] | None = None,
        max_length: app_commands.Range[int, MIN_TEXT_TOKENS, MAX_TEXT_TOKENS] | None = None,
        max_context_length: app_commands.Range[int, MIN_CONTEXT, MAX_CONTEXT] | None = None,
        temperature: app_commands.Range[float, 0.0, MAX_TEMPERATURE] | None = None,
        top_p: app_commands.Range[float, MIN_TOP_P, 1.0] | None = None,
        repetition_penalty: app_commands.Range[float, MIN_REP_PEN, MAX_REP_PEN] | None = None,
        stop_sequences: app_commands.Range[str, 1, 2000] | None = None,
        estimate: bool = False,
    ) -> None:
        options = TextOptions(
            prompt=prompt,
            model=model,
            max_length=max_length,
            max_context_length=max_context_length,
            temperature=temperature,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            stop_sequences=stop_sequences,
        )
        # Built before admission (like /imagine), so that invalid options take no slot and start no
        # cooldown; the server's config is the one the policy then checks against.
        config = await self.bot.guild_settings.get(interaction.guild_id)
        text = build_text_request(options, config.generation)
        if estimate:
            # Nothing is queued, so (like /imagine's) the estimate needs no admission.
            await interaction.response.defer(ephemeral=True, thinking=True)
            key = await self.bot.accounts.resolve_key(interaction.user.id, interaction.guild_id)
            try:
                kudos = await estimate_text_cost(self.bot.horde, text.request, key=key.apikey)
            except AIHordeRequestError as exc:
                raise UserInputError(describe_horde_error(exc, anonymous=key.is_anonymous)) from None
            await interaction.followup.send(
                f"This would cost about **{format_kudos(kudos)} kudos**.", ephemeral=True
            )
            return
        await self._admit_and_launch(interaction, text)

    @write.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            suggestions = await self.models.suggest(current)
        except AIHordeRequestError:
            return []
        return [app_commands.Choice(name=choice.name, value=choice.value) for choice in suggestions]

    async def _admit_and_launch(self, interaction: discord.Interaction[Any], text: TextRequest) -> None:
        """Through the server's policy, then (publicly, or privately where the server says so): the
        progress message, then the job."""
        context = job_context(self.bot, interaction, "write", text.params.prompt, model=text.params.model)
        async with self.bot.policy.admit(context) as decision:
            await interaction.response.defer(thinking=True, ephemeral=decision.ephemeral)
            await self._launch(interaction, text, decision.key, private=decision.ephemeral)

    async def _launch(
        self, interaction: discord.Interaction[Any], text: TextRequest, key: ResolvedKey, *, private: bool
    ) -> None:
        anonymous = key.is_anonymous
        first = render_text_progress(
            text.params, None, bar_width=self.bot.settings.progress.bar_width, anonymous=anonymous
        )
        placed = await self.bot.delivery.open(interaction, first, private=private)
        await self.bot.jobs.start_text_job(
            request=text.request,
            key=key.apikey,
            key_owner=key.owner,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=placed.channel_id,
            message_id=placed.message_id,
            params=text.params.model_dump(mode="json"),
            listener=self._listener(placed.target, text.params, anonymous=anonymous),
        )

    def _listener(self, target: MessageTarget, params: TextParams, *, anonymous: bool) -> JobListener:
        bar_width = self.bot.settings.progress.bar_width

        def finish(job: JobRecord, outcome: JobOutcome) -> dict[str, Any]:
            result = text_result(job.result_json)
            rendered = render_text_result(params, outcome, result, anonymous=anonymous)
            fields: dict[str, Any] = {"content": rendered.content, "embed": rendered.embed}
            fields["attachments"] = [text_file(rendered.attachment)] if rendered.attachment else []
            done = outcome.state is JobState.DONE and result is not None
            fields["view"] = _view(WriteButton(Action.cont, job.id)) if done else None
            return fields

        return MessageJobListener(
            self.bot.delivery,
            target,
            progress_text=lambda progress: render_text_progress(
                params, progress, bar_width=bar_width, anonymous=anonymous
            ),
            finish=finish,
            progress_view=lambda job: _view(WriteButton(Action.cancel, job.id)),
        )

    def listener_for(self, job: JobRecord) -> JobListener:
        """The listener of a journalled text job (after a restart)."""
        params = journalled_params(job, TextParams.from_json)
        return self._listener(self.bot.delivery.resumed(job), params, anonymous=job.key_owner == "anonymous")

    async def on_button(self, interaction: discord.Interaction[Any], action: Action, job_id: str) -> None:
        job = await self.bot.storage.jobs.get(job_id)
        if job is None or job.kind != "text":
            raise UserInputError(UNKNOWN_JOB)
        if action is Action.cancel:
            require_manager(interaction, job)
            if not await self.bot.jobs.cancel(job_id):
                raise UserInputError(ALREADY_FINISHED)
            await interaction.response.defer()
            return
        previous = text_result(job.result_json)
        if job.state is not JobState.DONE or previous is None:
            raise UserInputError(NOTHING_TO_CONTINUE)
        try:
            params = TextParams.from_json(job.params_json)
        except ValidationError:
            raise UserInputError(UNKNOWN_JOB) from None
        await self._admit_and_launch(interaction, continuation(params, previous, job.id))


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.write needs a HordeBot")
    await bot.add_cog(Write(bot))
