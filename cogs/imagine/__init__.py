"""/imagine: generate images with the AI Horde, with live progress, Cancel and result buttons."""

from __future__ import annotations

from discord.ext import commands

from bot.app import HordeBot
from cogs.imagine._commands import Imagine


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.imagine needs a HordeBot")
    await bot.add_cog(Imagine(bot))
