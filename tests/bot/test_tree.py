"""The command tree answers every failure privately, through the real bot in SimCord."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot import tree
from bot.errors import HordeUnavailableError, NotLoggedInError, UserInputError
from bot.tree import GENERIC_ERROR_MESSAGE, OUTDATED_COMMAND_MESSAGE

if TYPE_CHECKING:
    from conftest import Server


class Even(app_commands.Transformer):
    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.integer

    async def transform(self, interaction: discord.Interaction, value: int) -> int:
        if value % 2:
            raise ValueError(f"{value} is odd")
        return value


class EvenOrExplain(Even):
    async def transform(self, interaction: discord.Interaction, value: int) -> int:
        if value % 2:
            raise UserInputError("Pick an even number.")
        return value


def _not_logged_in(interaction: discord.Interaction) -> bool:
    raise NotLoggedInError()


class Failing(commands.Cog):
    """Commands that fail in every way the tree distinguishes."""

    @app_commands.command(description="raises a BotError")
    async def bad_input(self, interaction: discord.Interaction) -> None:
        raise UserInputError("Steps must be between 1 and 50.")

    @app_commands.command(description="defers privately, then raises")
    async def after_defer(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        raise NotLoggedInError()

    @app_commands.command(description="defers publicly, then raises")
    async def after_public_defer(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        raise UserInputError("That model doesn't exist.")

    @app_commands.command(description="replies, then raises")
    async def after_reply(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Working on it…")
        raise HordeUnavailableError()

    @app_commands.command(description="has a bug")
    async def buggy(self, interaction: discord.Interaction) -> None:
        raise ZeroDivisionError("division by zero")

    @app_commands.command(description="needs Manage Messages")
    @app_commands.checks.has_permissions(manage_messages=True)
    async def moderate(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("moderated", ephemeral=True)

    @app_commands.command(description="needs Manage Server and Manage Messages")
    @app_commands.checks.has_permissions(manage_guild=True, manage_messages=True)
    async def configure(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("configured", ephemeral=True)

    @app_commands.command(description="for admins")
    @app_commands.checks.has_role("Admins")
    async def admins_only(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello admin", ephemeral=True)

    @app_commands.command(description="once a minute")
    @app_commands.checks.cooldown(1, 60)
    async def limited(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("done", ephemeral=True)

    @app_commands.command(description="a check that says no")
    @app_commands.check(lambda interaction: False)
    async def refused(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("unreachable")

    @app_commands.command(description="a check that explains itself")
    @tree.check(_not_logged_in)
    async def members_only(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("unreachable")

    @app_commands.command(description="takes an even number")
    async def even(self, interaction: discord.Interaction, value: app_commands.Transform[int, Even]) -> None:
        await interaction.response.send_message(f"{value} is even")

    @app_commands.command(description="takes an even number, politely")
    async def polite_even(
        self, interaction: discord.Interaction, value: app_commands.Transform[int, EvenOrExplain]
    ) -> None:
        await interaction.response.send_message(f"{value} is even")

    @app_commands.command(description="posts a message in the channel")
    async def posts(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send("hello")

    @app_commands.command(description="replies after 15 minutes")
    async def too_slow(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await asyncio.sleep(16 * 60)
        raise UserInputError("too late to say this")


@pytest.fixture
async def failing(server: Server) -> Server:
    await server.bot.add_cog(Failing())
    await server.bot.tree.sync()
    return server


async def test_a_bot_error_becomes_its_user_message_privately(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "bad_input")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == "Steps must be between 1 and 50."


async def test_after_a_private_defer_the_message_replaces_the_thinking_state(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "after_defer")

    assert result.response is not None
    assert result.response.ephemeral
    assert result.response.content == NotLoggedInError.default_message


async def test_after_a_public_defer_the_message_replaces_the_public_thinking_state(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "after_public_defer")

    # Discord keeps the deferred message's visibility: documented in reply_ephemeral.
    assert result.response is not None
    assert (result.response.content, result.response.ephemeral) == ("That model doesn't exist.", False)
    assert result.followups == []


async def test_after_a_reply_the_message_is_a_private_followup(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "after_reply")

    assert result.response is not None
    assert result.response.content == "Working on it…"
    assert [(f.content, f.ephemeral) for f in result.followups] == [
        (HordeUnavailableError.default_message, True)
    ]


@pytest.mark.allow_unhandled_errors
async def test_a_bug_gets_the_generic_line_and_its_traceback_is_logged(
    failing: Server, error_logs: list[logging.LogRecord]
) -> None:
    result = await failing.alice.slash(failing.channel, "buggy")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == GENERIC_ERROR_MESSAGE
    [record] = error_logs
    assert record.name == "bot.tree"
    assert record.getMessage().startswith("Unhandled error in /buggy (user ")
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)
    assert failing.env.errors  # SimCord saw it too; the fixture lets it pass because of the marker


async def test_missing_permissions_say_which(failing: Server) -> None:
    denied = await failing.alice.slash(failing.channel, "moderate")
    allowed = await failing.moderator.slash(failing.channel, "moderate")
    both = await failing.moderator.slash(failing.channel, "configure")

    assert denied.ephemeral
    assert denied.response is not None
    assert denied.response.content == "You need the Manage Messages permission to use this command."
    assert allowed.response is not None
    assert allowed.response.content == "moderated"
    assert both.response is not None
    assert both.response.content == "You need the Manage Server permission to use this command."


async def test_a_cooldown_says_when_to_come_back(failing: Server) -> None:
    first = await failing.alice.slash(failing.channel, "limited")
    second = await failing.alice.slash(failing.channel, "limited")

    assert first.response is not None
    assert first.response.content == "done"
    assert second.ephemeral
    assert second.response is not None
    assert second.response.content == "You're using this command too often. Try again in 60 seconds."


async def test_missing_role_and_role_checks_in_direct_messages(failing: Server) -> None:
    admin = await failing.admin.slash(failing.channel, "admins_only")
    member = await failing.alice.slash(failing.channel, "admins_only")
    in_dm = await failing.alice.user.slash("admins_only")

    assert admin.response is not None
    assert admin.response.content == "hello admin"
    assert member.ephemeral
    assert member.response is not None
    assert member.response.content == "You need the Admins role to use this command."
    assert in_dm.ephemeral
    assert in_dm.response.content == "This command only works in a server, not in direct messages."


async def test_a_failed_check(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "refused")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == "You can't use this command here."


async def test_a_check_raising_a_bot_error_shows_its_message(failing: Server) -> None:
    result = await failing.alice.slash(failing.channel, "members_only")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == NotLoggedInError.default_message


async def test_a_value_that_does_not_convert(failing: Server) -> None:
    ok = await failing.alice.slash(failing.channel, "even", value=4)
    bad = await failing.alice.slash(failing.channel, "even", value=3)
    explained = await failing.alice.slash(failing.channel, "polite_even", value=3)

    assert ok.response is not None
    assert ok.response.content == "4 is even"
    assert bad.ephemeral
    assert bad.response is not None
    assert bad.response.content == "“3” isn't a valid integer for this command."
    assert explained.response is not None
    assert explained.response.content == "Pick an even number."


async def test_a_command_discord_knows_but_the_bot_does_not(
    failing: Server, caplog: pytest.LogCaptureFixture
) -> None:
    failing.bot.tree.remove_command("refused")  # as if the bot was updated without a sync

    result = await failing.alice.slash(failing.channel, "refused")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == OUTDATED_COMMAND_MESSAGE
    assert "run `python -m bot sync`" in caplog.text


async def test_an_expired_interaction_is_logged_not_raised(
    failing: Server, caplog: pytest.LogCaptureFixture
) -> None:
    result = await failing.alice.slash(failing.channel, "too_slow")
    assert result.deferred

    await failing.env.advance_time(16 * 60)  # the sleep ends, the token expired at 15 minutes

    assert result.followups == []
    assert "Could not tell user" in caplog.text
    assert "HTTP 404 (code 10015)" in caplog.text


async def test_error_replies_never_ping(failing: Server) -> None:
    await failing.alice.slash(failing.channel, "bad_input")

    callback = [entry for entry in failing.env.http_requests if entry.path.endswith("/callback")][-1]
    assert callback.json["data"]["allowed_mentions"] == {"parse": []}


async def test_discord_refusing_the_bot_is_explained(
    failing: Server, caplog: pytest.LogCaptureFixture
) -> None:
    failing.env.inject_error(
        "POST", "/channels/*/messages", status=403, code=50013, message="Missing Permissions"
    )

    result = await failing.alice.slash(failing.channel, "posts")

    assert result.response is not None
    assert (result.response.content, result.response.ephemeral) == (tree.FORBIDDEN_MESSAGE, True)
    assert "Discord refused: 403 Forbidden (error code: 50013)" in caplog.text
