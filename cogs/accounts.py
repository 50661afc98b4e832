"""/login, /logout and /me: a Discord user's own AI Horde account. Every reply is private."""

from __future__ import annotations

from typing import Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.horde import UserDetailsResponse
from bot.services.accounts import REGISTER_URL, AccountService
from bot.tree import report_interaction_error

APIKEY_INPUT_ID: Final = "accounts:login:apikey"
LOGIN_MODAL_TITLE: Final = "Log in to the AI Horde"
# 10 lets the anonymous key through to a clear refusal; 64 leaves room around a 36-character shared-key
# UUID for pasted whitespace, which the service strips.
APIKEY_MIN_LENGTH: Final = 10
APIKEY_MAX_LENGTH: Final = 64

LOGGED_OUT_MESSAGE: Final = "Logged out: your API key was deleted. You now generate anonymously."
NOT_LOGGED_IN_LOGOUT_MESSAGE: Final = "You weren't logged in, so there was no API key to delete."

_NO_MENTIONS: Final = discord.AllowedMentions.none()
_UNKNOWN: Final = "—"


def logged_in_message(horde_username: str) -> str:
    return f"Logged in as **{discord.utils.escape_markdown(horde_username)}**"


def _number(value: float | None) -> str:
    return _UNKNOWN if value is None else f"{value:,.0f}"


def profile_embed(details: UserDetailsResponse) -> discord.Embed:
    embed = discord.Embed(title="Your AI Horde account")
    embed.add_field(name="Username", value=discord.utils.escape_markdown(details.username or _UNKNOWN))
    embed.add_field(name="Kudos", value=_number(details.kudos))
    embed.add_field(name="Concurrency", value=_number(details.concurrency))
    embed.add_field(name="Workers", value=_number(details.worker_count))
    embed.add_field(name="API key", value="Saved (encrypted). /logout deletes it.", inline=False)
    return embed


class LoginModal(discord.ui.Modal, title=LOGIN_MODAL_TITLE):
    """Asks for the key in a modal, so it never shows up as a visible slash-command option."""

    apikey: discord.ui.TextInput[LoginModal] = discord.ui.TextInput(
        label="AI Horde API key",
        style=discord.TextStyle.short,
        custom_id=APIKEY_INPUT_ID,
        placeholder=f"Paste your key (get one at {REGISTER_URL.removeprefix('https://')})",
        min_length=APIKEY_MIN_LENGTH,
        max_length=APIKEY_MAX_LENGTH,
    )

    def __init__(self, accounts: AccountService) -> None:
        super().__init__()
        self._accounts = accounts

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        record = await self._accounts.login(interaction.user.id, self.apikey.value)
        await interaction.followup.send(
            logged_in_message(record.horde_username), ephemeral=True, allowed_mentions=_NO_MENTIONS
        )

    # discord.py's Modal.on_error drops BaseView's `item` argument; mypy sees the base signature.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        # Modals bypass the command tree's handler; answer like the tree does.
        await report_interaction_error(interaction, error)


class Accounts(commands.Cog):
    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts

    @app_commands.command(description="Link your AI Horde API key, so your generations use your kudos.")
    async def login(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(LoginModal(self.accounts))

    @app_commands.command(description="Delete your saved AI Horde API key.")
    async def logout(self, interaction: discord.Interaction) -> None:
        deleted = await self.accounts.logout(interaction.user.id)
        await interaction.response.send_message(
            LOGGED_OUT_MESSAGE if deleted else NOT_LOGGED_IN_LOGOUT_MESSAGE, ephemeral=True
        )

    @app_commands.command(description="Your AI Horde account: kudos, concurrency and workers.")
    async def me(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        details = await self.accounts.profile(interaction.user.id)
        await interaction.followup.send(embed=profile_embed(details), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.accounts needs a HordeBot")
    await bot.add_cog(Accounts(bot.accounts))
