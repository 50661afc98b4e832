"""/login, /logout, /me, /privacy and /user: a member's own AI Horde account, and other members'
where they shared theirs. Every reply is private."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.horde import UserAmountRecords, UserDetailsResponse, UserThingRecords
from bot.services.accounts import REGISTER_URL, AccountService
from bot.services.delivery.limits import fit_embed
from bot.services.formatting import UNKNOWN, format_kudos, format_number, format_uptime
from bot.services.kudos import HORDE_USER_CACHE_S, RecentTransfer
from bot.services.profiles import MemberProfile, ProfileService
from bot.tree import report_interaction_error

APIKEY_INPUT_ID: Final = "accounts:login:apikey"
LOGIN_MODAL_TITLE: Final = "Log in to the AI Horde"
# 10 lets the anonymous key through to a clear refusal; 64 leaves room around a 36-character shared-key
# UUID for pasted whitespace, which the service strips.
APIKEY_MIN_LENGTH: Final = 10
APIKEY_MAX_LENGTH: Final = 64

LOGGED_OUT_MESSAGE: Final = "Logged out: your API key was deleted. You now generate anonymously."
NOT_LOGGED_IN_LOGOUT_MESSAGE: Final = "You weren't logged in, so there was no API key to delete."

SHARED_NOW: Final = (
    "Your AI Horde account is now shared: members of a server you are in can see its name, kudos "
    "and contributions with /user. `/privacy share_account:off` makes it private again."
)
PRIVATE_NOW: Final = "Your AI Horde account is private: /user shows it to no one but you."
SHARED_STATE: Final = (
    "Your AI Horde account is shared: members of a server you are in can see it with /user. "
    "`/privacy share_account:off` makes it private."
)
PRIVATE_STATE: Final = (
    "Your AI Horde account is private (the default): /user shows it to no one but you. "
    "`/privacy share_account:on` shares it."
)
NOT_LOGGED_IN_STATE: Final = (
    "You aren't logged in, so there is no AI Horde account to share. After /login it stays private "
    "until you turn sharing on here."
)
BALANCE_LAG: Final = (
    f"*The AI Horde updates balances within {HORDE_USER_CACHE_S:.0f} seconds, so the kudos above may "
    "not count these yet.*"
)

_NO_MENTIONS: Final = discord.AllowedMentions.none()
_SHARE_CHOICES: Final = [
    app_commands.Choice(name="on: members can see my AI Horde account with /user", value="on"),
    app_commands.Choice(name="off: keep it private", value="off"),
]


def logged_in_message(horde_username: str) -> str:
    return f"Logged in as **{discord.utils.escape_markdown(horde_username)}**"


def profile_embed(
    details: UserDetailsResponse, *, shared: bool = False, recent: Sequence[RecentTransfer] = ()
) -> discord.Embed:
    """/me: the member's own account, and transfers its balance may not count yet."""
    embed = discord.Embed(title="Your AI Horde account")
    embed.add_field(name="Username", value=discord.utils.escape_markdown(details.username or UNKNOWN))
    embed.add_field(name="Kudos", value=format_number(details.kudos))
    embed.add_field(name="Concurrency", value=format_number(details.concurrency))
    embed.add_field(name="Workers", value=format_number(details.worker_count))
    embed.add_field(name="Shown to members", value="yes, with /user" if shared else "no (/privacy shares it)")
    if recent:
        lines = [_transfer_line(transfer) for transfer in recent]
        embed.add_field(name="Just transferred", value="\n".join([*lines, BALANCE_LAG]), inline=False)
    embed.add_field(name="API key", value="Saved (encrypted). /logout deletes it.", inline=False)
    return embed


def _transfer_line(transfer: RecentTransfer) -> str:
    other = discord.utils.escape_markdown(transfer.other_username or "another member")
    direction = f"Sent to {other}" if transfer.sent else f"Received from {other}"
    when = "just now" if transfer.age_s < 1 else f"{format_uptime(transfer.age_s)} ago"
    return f"{direction}: {format_kudos(transfer.amount)} kudos, {when}"


def member_embed(member: discord.abc.User, profile: MemberProfile) -> discord.Embed:
    """/user: another member's account, as the Horde shows it to anyone."""
    details = profile.details
    name = discord.utils.escape_markdown(member.display_name)
    embed = discord.Embed(title=f"{name}'s AI Horde account", colour=discord.Colour.blurple())
    embed.add_field(name="Username", value=discord.utils.escape_markdown(details.username or UNKNOWN))
    embed.add_field(name="Kudos", value=UNKNOWN if details.kudos is None else format_kudos(details.kudos))
    embed.add_field(name="Workers", value=format_number(details.worker_count))
    embed.add_field(name="Account age", value=_age(details.account_age))
    roles = [role for role, on in (("trusted", details.trusted), ("moderator", details.moderator)) if on]
    embed.add_field(name="Standing", value=", ".join(roles) or "member")
    records = details.records
    if records is not None:
        embed.add_field(
            name="Contributed (their workers)",
            value=_records(records.fulfillment, records.contribution),
            inline=False,
        )
        embed.add_field(name="Requested", value=_records(records.request, records.usage), inline=False)
    if profile.own and not profile.shared:
        embed.set_footer(text="Only you can see this: your account is private. /privacy shares it.")
    elif profile.own:
        embed.set_footer(text="This is what members see with /user.")
    return embed


def _age(seconds: int | None) -> str:
    if seconds is None:
        return UNKNOWN
    days = seconds // 86_400
    return format_uptime(seconds) if days < 1 else f"{days:,} day{'' if days == 1 else 's'}"


def _records(amounts: UserAmountRecords | None, things: UserThingRecords | None) -> str:
    counts = [
        f"{format_number(value)} {noun}"
        for value, noun in (
            (amounts.image if amounts else None, "images"),
            (amounts.text if amounts else None, "texts"),
            (amounts.interrogation if amounts else None, "alchemy forms"),
        )
    ]
    sizes = [
        f"{format_number(value)} {noun}"
        for value, noun in (
            (things.megapixelsteps if things else None, "megapixelsteps"),
            (things.tokens if things else None, "tokens"),
        )
    ]
    return f"{', '.join(counts)}\n{', '.join(sizes)}"


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
    def __init__(self, bot: HordeBot) -> None:
        self.accounts: AccountService = bot.accounts
        self.kudos = bot.kudos
        self.profiles = ProfileService(bot.storage, bot.horde)

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
        embed = profile_embed(
            details,
            shared=bool(await self.profiles.is_shared(interaction.user.id)),
            recent=self.kudos.recent.involving(interaction.user.id),
        )
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=_NO_MENTIONS)

    @app_commands.command(description="Whether other members may see your AI Horde account with /user.")
    @app_commands.describe(share_account="Leave out to see what is set now (private by default).")
    @app_commands.choices(share_account=_SHARE_CHOICES)
    async def privacy(self, interaction: discord.Interaction, share_account: str | None = None) -> None:
        if share_account is None:
            shared = await self.profiles.is_shared(interaction.user.id)
            state = NOT_LOGGED_IN_STATE if shared is None else SHARED_STATE if shared else PRIVATE_STATE
            await interaction.response.send_message(state, ephemeral=True)
            return
        share = share_account == "on"
        await self.profiles.set_shared(interaction.user.id, share)
        await interaction.response.send_message(SHARED_NOW if share else PRIVATE_NOW, ephemeral=True)

    @app_commands.command(
        description="Another member's AI Horde account: name, kudos, contributions (if they share it)."
    )
    @app_commands.describe(member="Whose account.")
    @app_commands.guild_only()
    async def user(self, interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        profile = await self.profiles.profile(
            member_id=member.id,
            member_name=discord.utils.escape_markdown(member.display_name),
            asker_id=interaction.user.id,
        )
        await interaction.followup.send(
            embed=fit_embed(member_embed(member, profile)), ephemeral=True, allowed_mentions=_NO_MENTIONS
        )


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.accounts needs a HordeBot")
    await bot.add_cog(Accounts(bot))
