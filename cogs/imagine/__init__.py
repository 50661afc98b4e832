"""/imagine: generate images with the AI Horde, with live progress, Cancel and result buttons, and the
reactions on its results (rerun, new seed, delete, kudos)."""

from __future__ import annotations

from discord.ext import commands

from bot.app import HordeBot
from cogs.imagine._commands import Imagine
from cogs.imagine._reactions import Reactions

__all__ = ["Imagine", "Reactions", "setup"]


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.imagine needs a HordeBot")
    await bot.add_cog(Imagine(bot))
    await bot.add_cog(Reactions(bot))
