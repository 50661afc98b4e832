"""/help (the commands this member may use here, every button and reaction) and /about."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.horde import AIHordeRequestError
from bot.services.controls import (
    IMAGE_BUTTONS,
    MESSAGE_MENUS,
    RESULT_BUTTONS,
    RUNNING_BUTTONS,
    TEXT_BUTTONS,
    UPSCALED_BUTTONS,
    Control,
    reactions,
)
from bot.services.formatting import format_uptime

log = logging.getLogger(__name__)

HORDE_UNREACHABLE = "unreachable"

AnyCommand = app_commands.Command[Any, ..., Any]


NO_REACTIONS_IN_DMS: Final = "Reactions work on /imagine results in a server, not in DMs."


def format_duration(delta: datetime.timedelta) -> str:
    """``1d 2h 3m 4s``, leaving out leading zero units."""
    return format_uptime(delta.total_seconds())


def _lines(controls: Sequence[Control]) -> str:
    return "\n".join(control.line() for control in controls)


def _leaves(
    command: AnyCommand | app_commands.Group,
) -> Iterator[AnyCommand]:
    if isinstance(command, app_commands.Group):
        for child in command.commands:
            yield from _leaves(child)
    else:
        yield command


def _visible_to(command: AnyCommand, interaction: discord.Interaction) -> bool:
    """What Discord would show this user here: guild-only commands vanish in DMs, and commands with
    default permissions are hidden from members who lack them."""
    root = command.root_parent or command
    if interaction.guild is None:
        return not root.guild_only
    required = root.default_permissions
    return required is None or interaction.permissions.is_superset(required)


class Meta(commands.Cog):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="List this bot's commands.")
    async def help_command(self, interaction: discord.Interaction) -> None:
        tree_commands = self.bot.tree.get_commands(type=discord.AppCommandType.chat_input)
        lines = sorted(
            f"`/{command.qualified_name}` — {command.description}"
            for top in tree_commands
            if isinstance(top, app_commands.Command | app_commands.Group)
            for command in _leaves(top)
            if _visible_to(command, interaction)
        )
        embed = discord.Embed(title="Commands", description="\n".join(lines))
        embed.add_field(name="Buttons while it runs", value=_lines(RUNNING_BUTTONS), inline=False)
        embed.add_field(name="Buttons under the images", value=_lines(IMAGE_BUTTONS), inline=False)
        embed.add_field(name="Buttons on an image result", value=_lines(RESULT_BUTTONS), inline=False)
        embed.add_field(name="Buttons on an upscaled image", value=_lines(UPSCALED_BUTTONS), inline=False)
        embed.add_field(name="Buttons on a text result", value=_lines(TEXT_BUTTONS), inline=False)
        if interaction.guild_id is None:
            embed.add_field(name="Reactions on an image result", value=NO_REACTIONS_IN_DMS, inline=False)
        else:
            config = await self.bot.guild_settings.get(interaction.guild_id)
            embed.add_field(
                name="Reactions on an image result (this server)",
                value=_lines(reactions(config)),
                inline=False,
            )
        embed.add_field(name="Message menus", value=_lines(MESSAGE_MENUS), inline=False)
        await interaction.response.send_message(
            embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(description="Version, uptime and the AI Horde's status.")
    async def about(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        embed = discord.Embed(title="About", description=self.bot.description)
        embed.add_field(name="Version", value=self.bot.version)
        embed.add_field(name="Uptime", value=format_duration(self.bot.uptime))
        embed.add_field(name="Servers", value=str(len(self.bot.guilds)))
        embed.add_field(name="AI Horde", value=await self._horde_status())
        await interaction.followup.send(embed=embed, ephemeral=True)

    async def _horde_status(self) -> str:
        try:
            heartbeat = await self.bot.horde.heartbeat()
        except AIHordeRequestError as exc:
            log.warning("AI Horde heartbeat failed: %s", exc)
            return HORDE_UNREACHABLE
        return f"{heartbeat.message} (v{heartbeat.version})"


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.meta needs a HordeBot")
    await bot.add_cog(Meta(bot))
