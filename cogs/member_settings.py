"""/settings: a member's own defaults for /imagine, and whether their results are private or come by
DM, shown and changed in one private panel (selects, and a modal for what is typed). /settings reset
forgets them (so does `/logout forget:True`)."""

from __future__ import annotations

from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import UserInputError
from bot.generation_limits import MAX_N, MAX_STEPS
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.delivery.limits import fit_embed
from bot.services.formatting import clip
from bot.services.image.aspect import AspectPreset
from bot.services.member_settings import (
    MAX_MODEL_CHARS,
    MAX_STYLE_CHARS,
    MemberSettings,
    MemberSettingsService,
    check_here,
)
from bot.services.settings.config import GuildConfig
from bot.tree import report_interaction_error

PANEL_TIMEOUT_S: Final = 600.0
DEFAULT: Final = "default"
SIZES: Final[tuple[tuple[int, int], ...]] = ((512, 512), (768, 768), (1024, 1024), (832, 1216), (1216, 832))
"""The sizes offered besides the aspect presets (any other is an /imagine option)."""
MAX_MODAL_TEXT: Final = 4000
"""Discord's longest modal text input."""
RESET_DONE: Final = "Your /settings were reset: this server's defaults apply again."
NOTHING_TO_RESET: Final = "You had no saved /settings: this server's defaults apply."
BAD_STEPS: Final = (
    f"Steps must be a whole number between 1 and {MAX_STEPS}, or empty for the server's default."
)
PANEL_HELP: Final = (
    "Your defaults for /imagine, in every server (an option you give wins; each server's limits still "
    "apply). Only you see this."
)
MODEL_ID: Final = "member-settings:model"
STEPS_ID: Final = "member-settings:steps"
NEGATIVE_ID: Final = "member-settings:negative"
STYLE_ID: Final = "member-settings:style"


def panel_embed(settings: MemberSettings, config: GuildConfig) -> discord.Embed:
    server = config.generation

    def shown(value: object, server_value: object) -> str:
        return f"server default ({server_value})" if value is None else str(value)

    if settings.aspect is not None:
        size = settings.aspect.label
    elif settings.width is not None:
        size = f"{settings.width}×{settings.height}"
    else:
        size = f"server default ({server.width}×{server.height})"
    embed = discord.Embed(title="Your settings", description=PANEL_HELP)
    embed.add_field(name="Model", value=discord.utils.escape_markdown(shown(settings.model, server.model)))
    embed.add_field(name="Size", value=size)
    embed.add_field(name="Steps", value=shown(settings.steps, server.steps))
    embed.add_field(
        name="Sampler", value=shown(settings.sampler and settings.sampler.value, server.sampler.value)
    )
    embed.add_field(name="Count", value=shown(settings.n, server.n))
    embed.add_field(
        name="Style", value=discord.utils.escape_markdown(shown(settings.style, config.style or "none"))
    )
    embed.add_field(name="Private results", value="yes" if settings.private else "no")
    embed.add_field(name="Results by DM", value="yes" if settings.dm else "no")
    negative = settings.negative_prompt
    embed.add_field(
        name="Negative prompt",
        value=clip(discord.utils.escape_markdown(negative), 1000) if negative else "server default",
        inline=False,
    )
    return fit_embed(embed)


def _size_value(settings: MemberSettings) -> str:
    if settings.aspect is not None:
        return f"aspect:{settings.aspect.value}"
    if settings.width is not None:
        return f"size:{settings.width}x{settings.height}"
    return DEFAULT


def _size_changes(value: str) -> dict[str, object]:
    kind, _, rest = value.partition(":")
    if kind == "aspect":
        return {"aspect": AspectPreset(rest), "width": None, "height": None}
    if kind == "size":
        width, _, height = rest.partition("x")
        return {"aspect": None, "width": int(width), "height": int(height)}
    return {"aspect": None, "width": None, "height": None}


def _default_or_one_of(
    name: str, row: int, choices: list[tuple[str, str]], current: object
) -> discord.ui.Select[SettingsPanel]:
    """A select of "server default" or one of ``choices`` (label, value), ``current`` picked."""
    picked = DEFAULT if current is None else str(current)
    title = name.capitalize()
    return discord.ui.Select(
        custom_id=f"member-settings:{name}",
        placeholder=title,
        row=row,
        options=[
            discord.SelectOption(label=f"{title}: {label}", value=value, default=value == picked)
            for label, value in [("server default", DEFAULT), *choices]
        ],
    )


class SettingsPanel(discord.ui.View):
    """One member's panel (an ephemeral message, so only they can use it). Every change is saved
    at once, checked against this server's limits, and the panel redrawn."""

    def __init__(self, service: MemberSettingsService, settings: MemberSettings, config: GuildConfig) -> None:
        super().__init__(timeout=PANEL_TIMEOUT_S)
        self._service = service
        self.settings = settings
        self._config = config
        size: discord.ui.Select[SettingsPanel] = discord.ui.Select(
            custom_id="member-settings:size", placeholder="Size", row=0, options=self._size_options()
        )
        sampler = _default_or_one_of(
            "sampler", 1, [(name.value, name.value) for name in KNOWN_IMAGE_SAMPLERS], settings.sampler
        )
        count = _default_or_one_of("count", 2, [(str(n), str(n)) for n in range(1, MAX_N + 1)], settings.n)
        delivery: discord.ui.Select[SettingsPanel] = discord.ui.Select(
            custom_id="member-settings:delivery",
            placeholder="Results: public, in the channel",
            row=3,
            min_values=0,
            max_values=2,
            options=[
                discord.SelectOption(
                    label="Private results",
                    value="private",
                    description="Only you see them",
                    default=settings.private,
                ),
                discord.SelectOption(
                    label="Results by DM", value="dm", description="Sent to your DMs", default=settings.dm
                ),
            ],
        )
        size.callback = self._on_size  # type: ignore[method-assign]
        sampler.callback = self._on_sampler  # type: ignore[method-assign]
        count.callback = self._on_count  # type: ignore[method-assign]
        delivery.callback = self._on_delivery  # type: ignore[method-assign]
        self._selects = {"size": size, "sampler": sampler, "count": count, "delivery": delivery}
        for select in self._selects.values():
            self.add_item(select)

    def _size_options(self) -> list[discord.SelectOption]:
        current = _size_value(self.settings)
        options = [discord.SelectOption(label="Size: server default", value=DEFAULT)]
        options += [
            discord.SelectOption(label=f"Aspect {preset.label}", value=f"aspect:{preset.value}")
            for preset in AspectPreset
        ]
        options += [
            discord.SelectOption(label=f"Size {width}×{height}", value=f"size:{width}x{height}")
            for width, height in SIZES
        ]
        for option in options:
            option.default = option.value == current
        return options

    def _picked(self, name: str) -> list[str]:
        return list(self._selects[name].values)

    async def _on_size(self, interaction: discord.Interaction[Any]) -> None:
        await self.change(interaction, **_size_changes(self._picked("size")[0]))

    async def _on_sampler(self, interaction: discord.Interaction[Any]) -> None:
        value = self._picked("sampler")[0]
        await self.change(interaction, sampler=None if value == DEFAULT else KNOWN_IMAGE_SAMPLERS(value))

    async def _on_count(self, interaction: discord.Interaction[Any]) -> None:
        value = self._picked("count")[0]
        await self.change(interaction, n=None if value == DEFAULT else int(value))

    async def _on_delivery(self, interaction: discord.Interaction[Any]) -> None:
        picked = self._picked("delivery")
        await self.change(interaction, private="private" in picked, dm="dm" in picked)

    @discord.ui.button(label="Model, steps, style, negative prompt…", emoji="✏️", row=4)
    async def _edit_text(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[SettingsPanel]
    ) -> None:
        await interaction.response.send_modal(TextSettingsModal(self))

    @discord.ui.button(label="Reset", style=discord.ButtonStyle.danger, row=4)
    async def _reset(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[SettingsPanel]
    ) -> None:
        await self._service.reset(interaction.user.id)
        await self._redraw(interaction, MemberSettings())

    async def change(self, interaction: discord.Interaction[Any], **changes: object) -> None:
        """Save ``changes`` (refused, with nothing saved, when invalid or above this server's
        limits) and redraw the panel."""
        check_here(MemberSettings().changed(**changes), self._config)
        updated = self.settings.changed(**changes)
        await self._service.save(interaction.user.id, updated)
        await self._redraw(interaction, updated)

    async def _redraw(self, interaction: discord.Interaction[Any], settings: MemberSettings) -> None:
        self.stop()
        panel = SettingsPanel(self._service, settings, self._config)
        await interaction.response.edit_message(embed=panel_embed(settings, self._config), view=panel)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        await report_interaction_error(interaction, error)


class TextSettingsModal(discord.ui.Modal, title="Your defaults"):
    """What is typed rather than picked; an empty field means the server's default."""

    model: discord.ui.TextInput[TextSettingsModal] = discord.ui.TextInput(
        label="Model", custom_id=MODEL_ID, required=False, max_length=MAX_MODEL_CHARS
    )
    steps: discord.ui.TextInput[TextSettingsModal] = discord.ui.TextInput(
        label=f"Steps (1–{MAX_STEPS})", custom_id=STEPS_ID, required=False, max_length=3
    )
    style: discord.ui.TextInput[TextSettingsModal] = discord.ui.TextInput(
        label="Style (an AI Horde style; none: no style)",
        custom_id=STYLE_ID,
        required=False,
        max_length=MAX_STYLE_CHARS,
    )
    negative: discord.ui.TextInput[TextSettingsModal] = discord.ui.TextInput(
        label="Negative prompt",
        style=discord.TextStyle.paragraph,
        custom_id=NEGATIVE_ID,
        required=False,
        max_length=MAX_MODAL_TEXT,
    )

    def __init__(self, panel: SettingsPanel) -> None:
        super().__init__()
        self._panel = panel
        settings = panel.settings
        self.model.default = settings.model
        self.steps.default = str(settings.steps) if settings.steps is not None else None
        self.style.default = settings.style
        self.negative.default = (settings.negative_prompt or "")[:MAX_MODAL_TEXT] or None

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        steps_text = self.steps.value.strip()
        if steps_text and not steps_text.isdigit():
            raise UserInputError(BAD_STEPS)
        await self._panel.change(
            interaction,
            model=self.model.value.strip() or None,
            steps=int(steps_text) if steps_text else None,
            style=self.style.value.strip() or None,
            negative_prompt=self.negative.value.strip() or None,
        )

    # discord.py's Modal.on_error drops BaseView's `item` argument; mypy sees the base signature.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction_error(interaction, error)


class MemberSettingsCog(
    commands.GroupCog, name="MemberSettings", group_name="settings", group_description="Your own defaults."
):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.service = MemberSettingsService(bot.storage)

    @app_commands.command(description="Show and change your defaults for /imagine, and where results go.")
    async def show(self, interaction: discord.Interaction) -> None:
        settings = await self.service.get(interaction.user.id)
        config = await self.bot.guild_settings.get(interaction.guild_id)
        await interaction.response.send_message(
            embed=panel_embed(settings, config),
            view=SettingsPanel(self.service, settings, config),
            ephemeral=True,
        )

    @app_commands.command(description="Forget your defaults: the server's apply again.")
    async def reset(self, interaction: discord.Interaction) -> None:
        had = await self.service.reset(interaction.user.id)
        await interaction.response.send_message(RESET_DONE if had else NOTHING_TO_RESET, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.member_settings needs a HordeBot")
    await bot.add_cog(MemberSettingsCog(bot))
