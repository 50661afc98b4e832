"""/kudos give: send kudos from your AI Horde account to another member's."""

from __future__ import annotations

from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.services.formatting import format_kudos
from bot.services.kudos import HORDE_USER_CACHE_S, MAX_GIFT

BALANCE_LAG_NOTE: Final = (
    f"-# The AI Horde updates balances within {HORDE_USER_CACHE_S:.0f} seconds; "
    "until then /me lists this transfer under the balance."
)


class Kudos(commands.Cog, name="Kudos"):
    kudos = app_commands.Group(name="kudos", description="AI Horde kudos.", guild_only=True)

    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        self.service = bot.kudos

    @kudos.command(
        name="give", description="Give some of your kudos to another member (both must be logged in)."
    )
    @app_commands.describe(member="Who gets the kudos.", amount="How many kudos.")
    async def give(
        self,
        interaction: discord.Interaction[Any],
        member: discord.Member,
        amount: app_commands.Range[int, 1, MAX_GIFT],
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        # The interaction is this one gift: a retry of it is paid once.
        gift = await self.service.give(
            giver_id=interaction.user.id,
            receiver_id=member.id,
            receiver_name=member.display_name,
            amount=amount,
            context_id=interaction.id,
        )
        await interaction.followup.send(
            f"Sent **{format_kudos(gift.transferred)} kudos** to {member.mention} "
            f"({discord.utils.escape_markdown(gift.receiver_username)}).\n{BALANCE_LAG_NOTE}",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.kudos needs a HordeBot")
    await bot.add_cog(Kudos(bot))
