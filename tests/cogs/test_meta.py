from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from simcord import InteractionResult
from test_horde_workers import assert_within_embed_limits

from bot.app import app_version
from bot.services.controls import BUTTONS, MESSAGE_MENUS, reactions
from cogs.meta import NO_REACTIONS_IN_DMS, _leaves, format_duration
from horde_simulator import Fault, Simulator

if TYPE_CHECKING:
    from conftest import Server


class Extra(commands.Cog):
    """Commands of other shapes, to see how /help lists them."""

    settings = app_commands.Group(
        name="server",
        description="Server settings",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @settings.command(name="show", description="Show this server's settings.")
    async def settings_show(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("settings", ephemeral=True)

    @app_commands.command(description="Say hello.")
    async def hello(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello")


def _fields(embed: discord.Embed) -> dict[str | None, str | None]:
    return {field.name: field.value for field in embed.fields}


def _help_lines(result: InteractionResult) -> list[str]:
    assert result.ephemeral
    assert result.response is not None
    [embed] = result.response.embeds
    assert embed.title == "Commands"
    return (embed.description or "").splitlines()


def _help_embed(result: InteractionResult) -> discord.Embed:
    assert result.ephemeral
    assert result.response is not None
    [embed] = result.response.embeds
    return embed


def _names(lines: list[str]) -> set[str]:
    return {line.split("`")[1].removeprefix("/") for line in lines}


async def test_help_lists_the_commands_with_their_descriptions(server: Server) -> None:
    lines = _help_lines(await server.alice.slash(server.channel, "help"))

    assert "`/about` — Version, uptime and the AI Horde's status." in lines
    assert "`/help` — List this bot's commands." in lines
    assert lines == sorted(lines)
    # Exactly what Discord's command picker offers this member here.
    assert _names(lines) == set(server.alice.available_commands(server.channel))


async def test_help_shows_what_each_member_may_use(server: Server) -> None:
    await server.bot.add_cog(Extra())
    await server.bot.tree.sync()

    member_lines = _help_lines(await server.alice.slash(server.channel, "help"))
    admin_lines = _help_lines(await server.admin.slash(server.channel, "help"))
    dm_lines = _help_lines(await server.alice.user.slash("help"))

    assert "`/hello` — Say hello." in member_lines
    assert "`/server show` — Show this server's settings." in admin_lines
    # /config is for members with Manage Server only.
    config_lines = [line for line in admin_lines if line.startswith("`/config ")]
    assert config_lines
    assert not any(line.startswith("`/config ") for line in member_lines)
    extra = "`/server show` — Show this server's settings."
    assert sorted([*member_lines, *config_lines, extra]) == admin_lines
    assert _names(member_lines) == set(server.alice.available_commands(server.channel))
    assert _names(admin_lines) == set(server.admin.available_commands(server.channel))
    # The guild-only group is not offered in DMs.
    assert _names(dm_lines) == set(server.alice.user.available_commands())
    assert "server show" not in _names(dm_lines)


async def test_help_explains_every_button_and_this_servers_reactions(server: Server) -> None:
    default = _help_embed(await server.alice.slash(server.channel, "help"))
    buttons = _fields(default)["Buttons on an image result"] or ""
    assert [line.split(" ")[0] for line in buttons.splitlines()] == ["🔁", "🌱", "✏️", "ℹ️", "🗑️"]
    per_image = _fields(default)["Buttons under the images"] or ""
    assert [line.split(" ")[0] for line in per_image.splitlines()] == ["🔍", "🎨"]
    upscaled = _fields(default)["Buttons on an upscaled image"] or ""
    assert "**Zoom out 2×**" in upscaled
    assert "⬅️ **Pan**" in upscaled
    assert "**Vary (Subtle)**" in upscaled
    assert "✖️ **Cancel**" in (_fields(default)["Buttons while it runs"] or "")
    assert "➡️ **Continue**" in (_fields(default)["Buttons on a text result"] or "")
    assert "**Describe image**" in (_fields(default)["Message menus"] or "")
    reactions = _fields(default)["Reactions on an image result (this server)"] or ""
    # Gifting is off by default, so ⭐ is not offered.
    assert [line.split(" ")[0] for line in reactions.splitlines()] == ["🔁", "🎲", "❌", "✉️"]

    for name, value in (("rerun_emoji", "🔄"), ("kudos_reactions", "on"), ("kudos_amount", "25")):
        await server.bot.guild_settings.set(server.guild.id, name, value, server.admin.id)
    configured = _help_embed(await server.alice.slash(server.channel, "help"))
    reactions = _fields(configured)["Reactions on an image result (this server)"] or ""
    assert [line.split(" ")[0] for line in reactions.splitlines()] == ["🔄", "🎲", "❌", "⭐", "✉️"]
    assert reactions.splitlines()[-2] == "⭐ **Gift kudos**: sends the asker 25 of your kudos"

    await server.bot.guild_settings.set(server.guild.id, "rerun_reactions", "off", server.admin.id)
    off = _fields(_help_embed(await server.alice.slash(server.channel, "help")))
    assert [
        line.split(" ")[0] for line in (off["Reactions on an image result (this server)"] or "").splitlines()
    ] == ["❌", "⭐", "✉️"]


async def test_the_message_menus_help_lists_are_the_bots(server: Server) -> None:
    menus = server.bot.tree.get_commands(type=discord.AppCommandType.message)

    assert sorted(menu.name for menu in menus) == sorted(control.name for control in MESSAGE_MENUS)


async def test_help_in_a_dm_says_where_reactions_work(server: Server) -> None:
    embed = _help_embed(await server.alice.user.slash("help"))

    assert _fields(embed)["Reactions on an image result"] == NO_REACTIONS_IN_DMS
    assert "Buttons on an image result" in _fields(embed)


async def test_help_fits_in_one_embed_for_the_member_who_sees_the_most(server: Server) -> None:
    assert_within_embed_limits(_help_embed(await server.admin.slash(server.channel, "help")))


def _readme_for_users() -> str:
    """The README's "What users see" section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    return readme.split("## What users see", 1)[1].split("\n## ", 1)[0]


def test_the_readme_shows_every_command_button_and_reaction() -> None:
    table = _readme_for_users()

    for command in ("workers", "team", "horde news", "horde modes", "user", "privacy", "me", "kudos give"):
        assert f"`/{command}" in table, command
    for control in (*BUTTONS, *MESSAGE_MENUS, *reactions(None)):
        assert control.emoji in table or f"**{control.name}**" in table, control
    for control in BUTTONS:
        assert f"{control.emoji} **{control.name}**" in table, control


async def test_every_command_is_in_the_readmes_table(server: Server) -> None:
    table = _readme_for_users()
    commands = [
        command.qualified_name
        for top in server.bot.tree.get_commands(type=discord.AppCommandType.chat_input)
        if isinstance(top, app_commands.Command | app_commands.Group)
        for command in _leaves(top)
    ]

    missing = [name for name in commands if f"`/{name}" not in table and f"`/{name.split()[0]}" not in table]
    assert missing == []


async def test_about_shows_version_uptime_servers_and_the_horde(server: Server) -> None:
    server.env.create_guild("Second Server")
    await server.env.advance_time(3_725)

    result = await server.alice.slash(server.channel, "about")

    assert result.ephemeral
    assert result.response is not None
    [embed] = result.response.embeds
    assert embed.title == "About"
    assert embed.description == server.settings.bot.description
    assert _fields(embed) == {
        "Version": app_version(),
        "Uptime": "1h 2m 5s",
        "Servers": "2",
        "AI Horde": "OK (v5.1.5)",
    }


async def test_about_reports_what_the_horde_says_about_itself(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.heartbeat_message = "OVERLOADED"

    result = await server.alice.slash(server.channel, "about")

    assert result.response is not None
    assert _fields(result.response.embeds[0])["AI Horde"] == "OVERLOADED (v5.1.5)"
    assert horde_sim.counters.calls("heartbeat") == 1


async def test_about_still_answers_when_the_horde_is_unreachable(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    horde_sim.state.faults.script("heartbeat", Fault.http(500))

    with caplog.at_level(logging.WARNING, logger="cogs.meta"):
        result = await server.alice.slash(server.channel, "about")

    assert result.response is not None
    assert _fields(result.response.embeds[0])["AI Horde"] == "unreachable"
    assert "AI Horde heartbeat failed" in caplog.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m 0s"),
        (3_600, "1h 0m 0s"),
        (90_061, "1d 1h 1m 1s"),
        (86_400, "1d 0h 0m 0s"),
    ],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
