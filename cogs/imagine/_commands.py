"""/imagine and its buttons. Thin: options → ``build_request`` → the shared launch path (``cogs._jobs``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import BotError, UserInputError
from bot.generation_limits import MAX_N, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS, MIN_SIDE
from bot.horde import ActiveModel
from bot.horde.consts import KNOWN_FACEFIXERS, KNOWN_IMAGE_SAMPLERS, KNOWN_UPSCALERS
from bot.services.alchemy.request import UPSCALE_FORM
from bot.services.estimates import estimate_image_cost
from bot.services.image.aspect import AspectPreset
from bot.services.image.render import render_details
from bot.services.image.request import (
    MAX_SEED_LENGTH,
    MIN_DENOISING,
    ImagineOptions,
    ImagineParams,
    ImagineRequest,
    build_request,
    generation_context,
)
from bot.services.image.rerun import edited_request, rerun_request, same_seed_reruns
from bot.services.image.source import SourceImage, check_source_attachment, prepare_source_image
from bot.services.member_settings import MemberSettingsService, imagine_options
from bot.services.models_cache import ModelsCache
from bot.services.policy import GenerationContext, Origin
from bot.services.settings.config import GuildConfig
from bot.services.styles import StylesCache
from bot.storage import JobRecord
from cogs._image_actions import DYNAMIC_ITEMS
from cogs._jobs import (
    ALCHEMY_COG,
    NO_MENTIONS,
    ImageOperations,
    Launch,
    admit_and_launch,
    answer_estimate,
    find_style,
    is_age_restricted,
    model_choices,
    require_manager,
    style_choices,
)
from cogs.imagine._advanced import AdvancedModal, AdvancedOptions
from cogs.imagine._launch import IMAGE, launch_admitted
from cogs.imagine._per_image import PerImageActions
from cogs.imagine._views import COG_NAME, Action, EditModal, UpscalePicker

log = logging.getLogger(__name__)

NO_IMAGES: Final = "This result has no images to upscale."
NO_ALCHEMY: Final = "Upscaling isn't available on this bot."
UPSCALE_PROMPT: Final = "Which image should I upscale?"
DOWNLOAD_FAILED: Final = "I couldn't download the source image from Discord. Please try again."
SAME_SEEDS_PRIVATE: Final = (
    "Each image of this result has its own seed, so Same seed runs one generation per image, posted "
    "in the channel; this server shows results privately here. Rerun it with one image's seed instead."
)
SAME_SEEDS_STOPPED: Final = "Image {position} of {total} was not run again: {why}"


def _choices(values: Sequence[str]) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=value, value=value) for value in values]


class Imagine(PerImageActions, commands.Cog, name=COG_NAME):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.models = ModelsCache(self._fetch_models, ttl_s=bot.settings.horde.models_cache_ttl_s)
        self.styles = StylesCache(bot.horde, ttl_s=bot.settings.horde.models_cache_ttl_s)

    async def cog_load(self) -> None:
        IMAGE.load(self.bot)
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)

    async def cog_unload(self) -> None:
        IMAGE.unload(self.bot)
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)
        await self.models.close()
        await self.styles.close()

    async def _fetch_models(self) -> Sequence[ActiveModel]:
        return (await self.bot.horde.get_models()).root

    # -- /imagine --------------------------------------------------------------------------------

    @app_commands.command(description="Generate images with the AI Horde.")
    @app_commands.describe(
        prompt="What to draw.",
        negative_prompt="What to keep out of the image.",
        model="The model to use (start typing to see what workers serve).",
        sampler="The sampler.",
        steps="Sampling steps.",
        cfg_scale="How closely to follow the prompt.",
        width="Width in pixels (a multiple of 64).",
        height="Height in pixels (a multiple of 64).",
        aspect="An aspect ratio at the default size, instead of width and height.",
        seed="A seed, to reproduce an image.",
        count="How many images.",
        karras="Use the Karras noise schedule.",
        hires_fix="Generate at low resolution first, then upscale (for large images).",
        upscaler="Upscale the result.",
        face_fixer="Fix faces in the result.",
        loras="LoRAs by name or CivitAI id, comma-separated; name:strength sets a strength.",
        textual_inversions="Textual inversions by name or id, comma-separated; name:strength too.",
        tiling="Make the image tile seamlessly.",
        source_image="An image to start from (img2img).",
        strength="How much the source image may change (0.01–1).",
        estimate="Only show what this would cost, without running it.",
        style="An AI Horde style (start typing; none: no style); what you set yourself wins over it.",
        advanced="Open a form for CLIP skip, seed variation and sharing with LAION.",
    )
    @app_commands.choices(
        sampler=_choices(list(KNOWN_IMAGE_SAMPLERS)),
        aspect=[app_commands.Choice(name=preset.label, value=preset.value) for preset in AspectPreset],
        upscaler=_choices(list(KNOWN_UPSCALERS)),
        face_fixer=_choices(list(KNOWN_FACEFIXERS)),
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        negative_prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        sampler: str | None = None,
        steps: app_commands.Range[int, 1, MAX_STEPS] | None = None,
        cfg_scale: app_commands.Range[float, 0.0, 100.0] | None = None,
        width: app_commands.Range[int, MIN_SIDE, MAX_SIDE] | None = None,
        height: app_commands.Range[int, MIN_SIDE, MAX_SIDE] | None = None,
        aspect: str | None = None,
        seed: app_commands.Range[str, 1, MAX_SEED_LENGTH] | None = None,
        count: app_commands.Range[int, 1, MAX_N] | None = None,
        karras: bool | None = None,
        hires_fix: bool | None = None,
        upscaler: str | None = None,
        face_fixer: str | None = None,
        loras: app_commands.Range[str, 1, 1000] | None = None,
        textual_inversions: app_commands.Range[str, 1, 2000] | None = None,
        tiling: bool | None = None,
        source_image: discord.Attachment | None = None,
        strength: app_commands.Range[float, MIN_DENOISING, 1.0] | None = None,
        estimate: bool = False,
        style: app_commands.Range[str, 1, 100] | None = None,
        advanced: bool = False,
    ) -> None:
        config = await self.bot.guild_settings.get(interaction.guild_id)
        member = await MemberSettingsService(self.bot.storage).get(interaction.user.id)
        options = ImagineOptions(
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            sampler=KNOWN_IMAGE_SAMPLERS(sampler) if sampler else None,
            steps=steps,
            cfg_scale=cfg_scale,
            width=width,
            height=height,
            aspect=AspectPreset(aspect) if aspect else None,
            seed=seed,
            n=count,
            karras=karras,
            hires_fix=hires_fix,
            upscaler=KNOWN_UPSCALERS(upscaler) if upscaler else None,
            facefixer=KNOWN_FACEFIXERS(face_fixer) if face_fixer else None,
            loras=loras,
            tis=textual_inversions,
            tiling=tiling,
            denoising_strength=strength,
        )
        options = imagine_options(options, member, config, style_given=bool(style))
        # The command's style, else the member's default, else the server's.
        chosen = style or member.style or config.style
        options = replace(options, style=await find_style(self.styles, "image", chosen, config))
        # Everything that can be checked without downloading is checked before answering publicly.
        if source_image is not None:
            check_source_attachment(source_image.filename, source_image.content_type, source_image.size)
        if not advanced:
            await self._imagine(interaction, options, config, source_image, estimate=estimate)
            return
        self._build(interaction, options, config, source_image)  # refused now, not after the form

        async def submitted(answer: discord.Interaction[Any], extra: AdvancedOptions) -> None:
            more = replace(
                options, clip_skip=extra.clip_skip, seed_variation=extra.seed_variation, shared=extra.shared
            )
            await self._imagine(answer, more, config, source_image, estimate=estimate)

        await interaction.response.send_modal(AdvancedModal(submitted))

    def _build(
        self,
        interaction: discord.Interaction[Any],
        options: ImagineOptions,
        config: GuildConfig,
        source_image: discord.Attachment | None,
    ) -> ImagineRequest:
        age_restricted = is_age_restricted(interaction.channel)
        allow_nsfw = config.nsfw_allowed(interaction.channel_id, age_restricted=age_restricted)
        return build_request(
            options,
            config.generation,
            allow_nsfw=allow_nsfw,
            source_image=source_image.filename if source_image is not None else None,
        )

    async def _imagine(
        self,
        interaction: discord.Interaction[Any],
        options: ImagineOptions,
        config: GuildConfig,
        source_image: discord.Attachment | None,
        *,
        estimate: bool,
    ) -> None:
        imagine = self._build(interaction, options, config, source_image)
        if estimate:
            await self._estimate(interaction, imagine)
            return
        age_restricted = is_age_restricted(interaction.channel)
        context = _policy_context(interaction, imagine.params, "command", age_restricted=age_restricted)

        async def prepare() -> Launch:
            if source_image is None:
                return IMAGE.launch(imagine.request, imagine.params)
            ready = imagine.with_source_image(await _read_source(source_image))
            return IMAGE.launch(ready.request, ready.params)

        await admit_and_launch(self.bot, interaction, context, prepare)

    async def _estimate(self, interaction: discord.Interaction[Any], imagine: ImagineRequest) -> None:
        """A source image is priced by its options only (it is not downloaded for an estimate)."""
        await answer_estimate(
            self.bot, interaction, lambda key: estimate_image_cost(self.bot.horde, imagine.request, key=key)
        )

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.models, current)

    @imagine.autocomplete("style")
    async def _style_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        config = await self.bot.guild_settings.get(interaction.guild_id)
        return await style_choices(self.styles, "image", current, config)

    # -- the buttons -----------------------------------------------------------------------------

    async def on_job_button(self, interaction: discord.Interaction[Any], action: str, job: JobRecord) -> None:
        """Every button but Cancel (``cogs._jobs.JobButton`` handles that)."""
        match Action(action):
            case Action.rerun | Action.same_seed:
                await self._rerun(interaction, job, same_seed=action == Action.same_seed)
            case Action.edit:
                params = ImagineParams.from_json(job.params_json)
                await interaction.response.send_modal(
                    EditModal(
                        params.prompt,
                        params.negative_prompt,
                        lambda submitted, prompt, negative: self._edit(submitted, job, prompt, negative),
                    )
                )
            case Action.upscale:
                images = [
                    attachment
                    for attachment in (interaction.message.attachments if interaction.message else [])
                    if (attachment.content_type or "").startswith("image/")
                ]
                if not images:
                    raise UserInputError(NO_IMAGES)
                await interaction.response.send_message(
                    UPSCALE_PROMPT, view=UpscalePicker(images, self._upscale), ephemeral=True
                )
            case Action.details:
                await interaction.response.send_message(embed=render_details(job), ephemeral=True)
            case Action.delete:
                require_manager(interaction, job, "delete")
                await interaction.response.defer()
                if interaction.message is not None:
                    await interaction.message.delete()

    async def _rerun(self, interaction: discord.Interaction[Any], job: JobRecord, *, same_seed: bool) -> None:
        """The same request for whoever clicked, with their own key; a new seed unless ``same_seed``,
        which makes the set again: one generation per image when the images' seeds differ (the
        first in the reply, the others in the channel, each admitted on its own)."""
        if not same_seed:
            await self._relaunch(
                interaction,
                lambda allow_nsfw: rerun_request(
                    job.request_json, job.params_json, seed=None, allow_nsfw=allow_nsfw
                ),
            )
            return
        config = await self.bot.guild_settings.get(interaction.guild_id)
        allow_nsfw = config.nsfw_allowed(
            interaction.channel_id, age_restricted=is_age_restricted(interaction.channel)
        )
        first, *others = same_seed_reruns(
            job.request_json, job.params_json, job.result_json, allow_nsfw=allow_nsfw
        )
        channel = interaction.channel if isinstance(interaction.channel, discord.abc.Messageable) else None
        if others and (channel is None or config.visibility_in(interaction.channel_id) == "private"):
            raise UserInputError(SAME_SEEDS_PRIVATE)
        await self._relaunch(interaction, lambda _: first)
        if channel is None:  # then there are no others (refused above)
            return
        for position, imagine in enumerate(others, start=2):
            context = _policy_context(
                interaction, imagine.params, "button", age_restricted=is_age_restricted(channel)
            )
            try:
                await launch_admitted(
                    self.bot,
                    channel,
                    imagine,
                    context,
                    user_id=interaction.user.id,
                    guild_id=interaction.guild_id,
                )
            except BotError as exc:
                note = SAME_SEEDS_STOPPED.format(
                    position=position, total=len(others) + 1, why=exc.user_message
                )
                await interaction.followup.send(note, ephemeral=True, allowed_mentions=NO_MENTIONS)
                return

    async def _edit(
        self, interaction: discord.Interaction[Any], job: JobRecord, prompt: str, negative_prompt: str
    ) -> None:
        """The Edit modal was submitted: the job again, for whoever submitted it, with the new prompts."""
        await self._relaunch(
            interaction,
            lambda allow_nsfw: edited_request(
                job.request_json,
                job.params_json,
                prompt=prompt,
                negative_prompt=negative_prompt,
                allow_nsfw=allow_nsfw,
            ),
        )

    async def _relaunch(
        self, interaction: discord.Interaction[Any], build: Callable[[bool], ImagineRequest]
    ) -> None:
        """Start ``build(allow_nsfw)`` from a button or modal, in a new public message."""
        config = await self.bot.guild_settings.get(interaction.guild_id)
        age_restricted = is_age_restricted(interaction.channel)
        imagine = build(config.nsfw_allowed(interaction.channel_id, age_restricted=age_restricted))
        context = _policy_context(interaction, imagine.params, "button", age_restricted=age_restricted)

        async def prepare() -> Launch:
            return IMAGE.launch(imagine.request, imagine.params)

        await admit_and_launch(self.bot, interaction, context, prepare)

    async def _upscale(self, interaction: discord.Interaction[Any], image: discord.Attachment) -> None:
        """An image was picked: upscale it with /alchemy's job, posted publicly."""
        # Typed as object: mypy finds no class that is both a Cog and a Protocol (their metaclasses).
        alchemy: object = self.bot.get_cog(ALCHEMY_COG)
        if not isinstance(alchemy, ImageOperations):
            raise UserInputError(NO_ALCHEMY)
        await alchemy.run(interaction, image, UPSCALE_FORM)


def _policy_context(
    interaction: discord.Interaction[Any], params: ImagineParams, origin: Origin, *, age_restricted: bool
) -> GenerationContext:
    return generation_context(
        params,
        origin,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        age_restricted=age_restricted,
    )


async def _read_source(attachment: discord.Attachment) -> SourceImage:
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise UserInputError(DOWNLOAD_FAILED) from None
    return await asyncio.to_thread(prepare_source_image, attachment.filename, data)
