"""/write: text generation with the AI Horde, with live progress, Cancel and Continue.

What its messages say is in ``bot.services.text.render``; this cog holds the command and buttons.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar, Final

import discord
from discord import app_commands
from discord.ext import commands
from pydantic import ValidationError

from bot.app import HordeBot
from bot.errors import UserInputError
from bot.generation_limits import MAX_PROMPT_CHARS, MAX_TEXT_TOKENS, MIN_TEXT_TOKENS
from bot.horde import ActiveModel
from bot.horde.consts import MODEL_TYPE
from bot.services.delivery.targets import MessageTarget
from bot.services.estimates import estimate_text_cost
from bot.services.horde_info import fetch_models
from bot.services.jobs import JobListener
from bot.services.models_cache import ModelsCache
from bot.services.text.listener import text_listener
from bot.services.text.render import render_text_progress
from bot.services.text.request import (
    MAX_CONTEXT,
    MAX_REP_PEN,
    MAX_TEMPERATURE,
    MIN_CONTEXT,
    MIN_REP_PEN,
    MIN_TOP_P,
    TextOptions,
    TextParams,
    TextRequest,
    build_text_request,
    continuation,
    text_result,
)
from bot.storage import JobKind, JobRecord, JobState
from cogs._jobs import (
    CANCEL,
    CANCEL_LOOK,
    UNKNOWN_JOB,
    JobButton,
    JobUI,
    Launch,
    admit_and_launch,
    answer_estimate,
    job_context,
    job_view,
    model_choices,
)

log = logging.getLogger(__name__)

COG_NAME: Final = "Write"
NOTHING_TO_CONTINUE: Final = "This generation has no finished text to continue."


class Action(StrEnum):
    cancel = CANCEL
    cont = "continue"


class WriteButton(JobButton, template=r"write:(?P<action>cancel|continue):(?P<job_id>[0-9a-f]{32})"):
    prefix: ClassVar[str] = "write"
    kind: ClassVar[JobKind] = "text"
    cog_name: ClassVar[str] = COG_NAME
    looks: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {
        Action.cancel: CANCEL_LOOK,
        Action.cont: ("Continue", discord.ButtonStyle.primary, "➡️"),
    }


class WriteViews:
    """Cancel while the text is written, Continue on a finished one."""

    def progress(self, job_id: str) -> discord.ui.View:
        return job_view(WriteButton(Action.cancel, job_id))

    def result(self, job_id: str, *, private: bool = False) -> discord.ui.View:
        return job_view(WriteButton(Action.cont, job_id))


VIEWS: Final = WriteViews()


def _listener(
    bot: HordeBot, target: MessageTarget, params: TextParams, *, anonymous: bool, private: bool
) -> JobListener:
    return text_listener(bot.delivery, target, params, anonymous=anonymous, views=VIEWS)


TEXT = JobUI("text", WriteButton, TextParams.from_json, render_text_progress, _listener)


class Write(commands.Cog, name=COG_NAME):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.models = ModelsCache(self._fetch_models, ttl_s=bot.settings.horde.models_cache_ttl_s)

    async def cog_load(self) -> None:
        TEXT.load(self.bot)

    async def cog_unload(self) -> None:
        TEXT.unload(self.bot)
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
            await answer_estimate(
                self.bot, interaction, lambda key: estimate_text_cost(self.bot.horde, text.request, key=key)
            )
            return
        await self._admit_and_launch(interaction, text)

    @write.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.models, current)

    async def _admit_and_launch(self, interaction: discord.Interaction[Any], text: TextRequest) -> None:
        context = job_context(self.bot, interaction, "write", text.params.prompt, model=text.params.model)

        async def prepare() -> Launch:
            return TEXT.launch(text.request, text.params)

        await admit_and_launch(self.bot, interaction, context, prepare)

    async def on_job_button(self, interaction: discord.Interaction[Any], action: str, job: JobRecord) -> None:
        """Continue (``cogs._jobs.JobButton`` handles Cancel)."""
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
