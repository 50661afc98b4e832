"""/imagine: generate images with the AI Horde, with live progress, Cancel and result buttons."""

from __future__ import annotations

from discord.ext import commands

from bot.app import HordeBot
from cogs.imagine._commands import Imagine
from cogs.imagine._delivery import is_age_restricted, launch_in_channel

__all__ = ["Imagine", "is_age_restricted", "launch_in_channel", "setup"]


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.imagine needs a HordeBot")
    await bot.add_cog(Imagine(bot))
