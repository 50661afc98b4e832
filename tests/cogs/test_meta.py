from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from simcord import InteractionResult

from bot.app import app_version
from bot.horde.simulator import Fault, Simulator
from cogs.meta import format_duration

if TYPE_CHECKING:
    from conftest import Server


class Extra(commands.Cog):
    """Commands of other shapes, to see how /help lists them."""

    settings = app_commands.Group(
        name="settings",
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
    assert "`/settings show` — Show this server's settings." in admin_lines
    # /config is for members with Manage Server only.
    config_lines = [line for line in admin_lines if line.startswith("`/config ")]
    assert config_lines
    assert not any(line.startswith("`/config ") for line in member_lines)
    extra = "`/settings show` — Show this server's settings."
    assert sorted([*member_lines, *config_lines, extra]) == admin_lines
    assert _names(member_lines) == set(server.alice.available_commands(server.channel))
    assert _names(admin_lines) == set(server.admin.available_commands(server.channel))
    # The guild-only group is not offered in DMs.
    assert _names(dm_lines) == set(server.alice.user.available_commands())
    assert "settings show" not in _names(dm_lines)


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
