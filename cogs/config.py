"""/config: server admins read and change this server's settings. Thin: the service validates and stores.

Only members with Manage Server see the commands (``default_permissions``) and the bot checks again
when they run, since server admins can change who sees a command. Every answer is private; a change
is also posted to the server's log channel, if it has one.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.services.delivery.limits import EMBED_DESCRIPTION, EMBED_FIELD_VALUE
from bot.services.delivery.targets import may_post_in
from bot.services.formatting import clip
from bot.services.settings.registry import SettingGroup, SettingValueError, get_setting, setting_names
from bot.services.settings.service import SettingChange, ShownSetting

log = logging.getLogger(__name__)

NO_MENTIONS: Final = discord.AllowedMentions.none()
MAX_SHOWN_VALUE: Final = 200
MAX_AUTOCOMPLETE: Final = 25
AUDIT_ENTRIES: Final = 15
LOG_CHANNEL_FAILED: Final = "⚠️ I couldn't post this change to the log channel; check my permissions there."
LOG_CHANNEL_ELSEWHERE: Final = (
    "⚠️ The log channel isn't a channel of this server any more, so this change wasn't posted there. "
    "Set log_channel again."
)
LOG_CHANNEL_NOT_HERE: Final = (
    "`log_channel` must be a text channel of this server (a mention such as #bot-log, or its id), or none."
)
LOG_CHANNEL_NO_ACCESS: Final = (
    "I can't post in {channel}: give me View Channel and Send Messages there, or choose another channel."
)


def _shown(text: str, limit: int = MAX_SHOWN_VALUE) -> str:
    """An admin's value as plain text: no markdown, masked link or mention of theirs takes effect."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(clip(text, limit)))


PostableChannel = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread


def _log_channel_in(guild: discord.Guild | None, channel_id: int) -> PostableChannel | None:
    """The channel ``channel_id`` if it is one of ``guild``'s own channels that take messages."""
    channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
    return channel if isinstance(channel, PostableChannel) else None


def _group_lines(shown: list[ShownSetting], group: SettingGroup, *, detailed: bool) -> str:
    lines = []
    for entry in shown:
        if entry.group is not group:
            continue
        marker = "" if entry.overridden else " *(default)*"
        value = _shown(entry.value)
        line = f"**{entry.name}**: {value}{marker}"
        if detailed:
            line += f"\n-# {entry.description}"
        lines.append(line)
    return clip("\n".join(lines), EMBED_FIELD_VALUE) or "—"


def _change_line(change: SettingChange, actor: discord.abc.User | None = None) -> str:
    where = f" in <#{change.channel_id}>" if change.channel_id is not None else ""
    if not change.changed:
        return f"`{change.name}`{where} is already {_shown(change.new)}."
    old, new = _shown(change.old), _shown(change.new)
    who = f"{actor.mention} changed" if actor is not None else "Changed"
    return f"{who} `{change.name}`{where}: {old} → {new}"


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Config(commands.GroupCog, group_name="config", group_description="This server's settings for the bot."):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(description="Show this server's settings.")
    @app_commands.describe(group="Only this group, with a line about each setting.")
    @app_commands.choices(group=[app_commands.Choice(name=g.value, value=g.value) for g in SettingGroup])
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(self, interaction: discord.Interaction, group: str | None = None) -> None:
        guild_id = _guild_id(interaction)
        service = self.bot.guild_settings
        shown = service.show(await service.get(guild_id))
        embed = discord.Embed(title="Server settings", colour=discord.Colour.blurple())
        groups = [SettingGroup(group)] if group else list(SettingGroup)
        for each in groups:
            embed.add_field(
                name=each.value, value=_group_lines(shown, each, detailed=bool(group)), inline=False
            )
        embed.set_footer(text="Change one with /config set, go back to the default with /config reset.")
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(description="Change one of this server's settings.")
    @app_commands.describe(
        setting="The setting to change (see /config show).",
        value="The new value; an invalid one is refused with what is allowed.",
        channel="Only in this channel (for per-channel settings such as nsfw_policy).",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set(
        self,
        interaction: discord.Interaction,
        setting: app_commands.Range[str, 1, 64],
        value: app_commands.Range[str, 1, 4000],
        channel: discord.TextChannel | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        # Private from the start: the sponsor key is checked with the AI Horde, and errors stay private.
        await interaction.response.defer(ephemeral=True, thinking=True)
        if get_setting(setting).name == "log_channel":
            _check_log_channel(interaction.guild, value)
        change = await self.bot.guild_settings.set(
            guild_id, setting, value, interaction.user.id, channel_id=channel.id if channel else None
        )
        await self._report(interaction, change)

    @app_commands.command(description="Put one of this server's settings back to its default.")
    @app_commands.describe(
        setting="The setting to reset.",
        channel="Only remove this channel's override.",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def reset(
        self,
        interaction: discord.Interaction,
        setting: app_commands.Range[str, 1, 64],
        channel: discord.TextChannel | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        change = await self.bot.guild_settings.reset(
            guild_id, setting, interaction.user.id, channel_id=channel.id if channel else None
        )
        await self._report(interaction, change)

    @app_commands.command(description="Who changed which setting, newest first.")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def audit(self, interaction: discord.Interaction) -> None:
        entries = await self.bot.guild_settings.audit(_guild_id(interaction), AUDIT_ENTRIES)
        lines = [
            f"{discord.utils.format_dt(entry.at, 'R')} <@{entry.actor_id}> `{entry.key}`: "
            f"{_audit_value(entry.old_value_json)} → {_audit_value(entry.new_value_json)}"
            for entry in entries
        ]
        embed = discord.Embed(
            title="Settings changes",
            description=clip("\n".join(lines), EMBED_DESCRIPTION) or "No setting was changed yet.",
            colour=discord.Colour.blurple(),
        )
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @set.autocomplete("setting")
    @reset.autocomplete("setting")
    async def _setting_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=name, value=name) for name in setting_names(current)][
            :MAX_AUTOCOMPLETE
        ]

    async def _report(self, interaction: discord.Interaction, change: SettingChange) -> None:
        lines = [_change_line(change)]
        if change.changed and (problem := await self._post_to_log_channel(interaction, change)):
            lines.append(problem)
        await interaction.followup.send("\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _post_to_log_channel(
        self, interaction: discord.Interaction, change: SettingChange
    ) -> str | None:
        """Post ``change`` to the log channel, if the server has one; what went wrong, if anything."""
        config = await self.bot.guild_settings.get(interaction.guild_id)
        if config.log_channel is None:
            return None
        # Only this server's own channels: one stored before this was checked may be anywhere.
        channel = _log_channel_in(interaction.guild, config.log_channel)
        if channel is None:
            log.warning(
                "Guild %s: log channel %s is not one of its channels; not posting there",
                interaction.guild_id,
                config.log_channel,
            )
            return LOG_CHANNEL_ELSEWHERE
        try:
            await channel.send(
                _change_line(change, interaction.user), allowed_mentions=NO_MENTIONS, suppress_embeds=True
            )
        except discord.HTTPException as exc:
            log.warning(
                "Could not post a settings change to log channel %s of guild %s: HTTP %s (code %s)",
                config.log_channel,
                interaction.guild_id,
                exc.status,
                exc.code,
            )
            return LOG_CHANNEL_FAILED
        return None


def _audit_value(value_json: str | None) -> str:
    if value_json is None:
        return "default"
    value = json.loads(value_json)
    text = value if isinstance(value, str) else json.dumps(value)
    return _shown(text, 80)


def _check_log_channel(guild: discord.Guild | None, value: str) -> None:
    """Refuse a log channel of another server, or one the bot cannot post in, before it is stored."""
    channel_id = get_setting("log_channel").read(value)
    if channel_id is None:
        return
    channel = _log_channel_in(guild, channel_id)
    if channel is None:
        raise SettingValueError(LOG_CHANNEL_NOT_HERE)
    if not may_post_in(channel):
        raise SettingValueError(LOG_CHANNEL_NO_ACCESS.format(channel=channel.mention))


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.config needs a HordeBot")
    await bot.add_cog(Config(bot))
