"""The command tree: one place that turns any command failure into a short, private reply.

Expected failures (a :class:`~bot.errors.BotError`, a failed check, a value that does not convert)
become an ephemeral message saying what is allowed; they are not logged as errors. Anything else is
a bug: the user gets :data:`GENERIC_ERROR_MESSAGE` and the traceback goes to the log.

Views and modals do not go through the tree; their ``on_error`` should call
:func:`report_interaction_error` so they behave the same.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import discord
from discord import app_commands

from bot.errors import BotError

log = logging.getLogger(__name__)

T = TypeVar("T")

GENERIC_ERROR_MESSAGE: Final = "Something went wrong on our side; it has been logged."
OUTDATED_COMMAND_MESSAGE: Final = (
    "This command is out of date. A bot admin needs to sync the bot's commands again."
)
FORBIDDEN_MESSAGE: Final = (
    "I don't have permission to do that here. "
    "A server admin can check my role and this channel's permissions."
)
_NO_MENTIONS: Final = discord.AllowedMentions.none()
# The tree and Discord disagree about a command: a deployment problem, not a bug in the command.
_OUTDATED: Final = (app_commands.CommandSignatureMismatch, app_commands.CommandNotFound)


def unwrap_error(error: BaseException) -> BaseException:
    """The exception that actually explains ``error``.

    discord.py wraps a command body's exception in ``CommandInvokeError`` and a transformer's in
    ``TransformerError`` (as ``__cause__``); a ``BotError`` raised anywhere must still reach the user.
    """
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    if isinstance(error.__cause__, BotError):
        return error.__cause__
    return error


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _permission_phrase(permissions: Sequence[str]) -> str:
    # Discord's UI calls the "guild" permissions "server" permissions.
    names = [name.replace("_", " ").replace("guild", "server").title() for name in permissions]
    noun = "permission" if len(names) == 1 else "permissions"
    return f"the {_join(names)} {noun}"


def _role_phrase(role: str | int) -> str:
    return f"<@&{role}>" if isinstance(role, int) else discord.utils.escape_markdown(role)


def user_message_for(error: BaseException) -> str | None:
    """The text to show for an expected failure, or ``None`` when ``error`` is a bug."""
    error = unwrap_error(error)
    if isinstance(error, BotError):
        return error.user_message
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need {_permission_phrase(error.missing_permissions)} to use this command."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need {_permission_phrase(error.missing_permissions)} in this channel to do that."
    if isinstance(error, app_commands.CommandOnCooldown):
        seconds = max(1, math.ceil(error.retry_after))
        unit = "second" if seconds == 1 else "seconds"
        return f"You're using this command too often. Try again in {seconds} {unit}."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server, not in direct messages."
    if isinstance(error, app_commands.MissingRole):
        return f"You need the {_role_phrase(error.missing_role)} role to use this command."
    if isinstance(error, app_commands.MissingAnyRole):
        roles = _join([_role_phrase(role) for role in error.missing_roles])
        return f"You need one of these roles to use this command: {roles}."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        value = discord.utils.escape_markdown(str(error.value)[:100])
        return f"“{value}” isn't a valid {error.type.name} for this command."
    if isinstance(error, _OUTDATED):
        return OUTDATED_COMMAND_MESSAGE
    if isinstance(error, discord.Forbidden):
        # Discord refused something the bot tried (post, edit, react): the server's permissions.
        return FORBIDDEN_MESSAGE
    return None


def check(predicate: Callable[[discord.Interaction], bool | Awaitable[bool]]) -> Callable[[T], T]:
    """Like ``app_commands.check``, but the predicate may raise a :class:`BotError` to explain itself.

    discord.py only routes ``AppCommandError`` from checks to the tree; any other exception would
    escape as an unhandled task error. This turns a ``BotError`` into a ``CheckFailure`` caused by it,
    which the tree answers with the ``BotError``'s message.
    """

    async def guarded(interaction: discord.Interaction) -> bool:
        try:
            return await discord.utils.maybe_coroutine(predicate, interaction)
        except BotError as exc:
            raise app_commands.CheckFailure(exc.user_message) from exc

    return app_commands.check(guarded)


def is_expected_error(error: BaseException) -> bool:
    """Whether the tree answers ``error`` with a specific message rather than treating it as a bug."""
    return user_message_for(error) is not None


async def reply_ephemeral(interaction: discord.Interaction, content: str) -> None:
    """Answer privately, whether or not the interaction was already responded to or deferred.

    After a public ``defer(thinking=True)`` Discord turns the first followup into the "thinking"
    message, which stays public: commands whose errors must stay private defer ephemerally.
    Delivery failures (an expired token, a deleted channel) are logged, never raised.
    """
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=True, allowed_mentions=_NO_MENTIONS)
        else:
            await interaction.response.send_message(content, ephemeral=True, allowed_mentions=_NO_MENTIONS)
    except discord.HTTPException as exc:
        log.warning(
            "Could not tell user %s about a failed interaction %s: HTTP %s (code %s)",
            interaction.user.id,
            interaction.id,
            exc.status,
            exc.code,
        )


def _describe(interaction: discord.Interaction) -> str:
    command = interaction.command
    what = f"/{command.qualified_name}" if command is not None else f"{interaction.type.name} interaction"
    where = f"user {interaction.user.id}, guild {interaction.guild_id}, channel {interaction.channel_id}"
    return f"{what} ({where})"


async def report_interaction_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what went wrong; log a traceback when it is a bug."""
    message = user_message_for(error)
    cause = unwrap_error(error)
    if message is None:
        log.error("Unhandled error in %s", _describe(interaction), exc_info=cause)
        message = GENERIC_ERROR_MESSAGE
    elif isinstance(cause, _OUTDATED):
        log.warning("%s: %s; run `python -m bot sync`", _describe(interaction), cause)
    elif isinstance(cause, discord.Forbidden):
        log.warning("%s: Discord refused: %s", _describe(interaction), cause)
    else:
        log.debug("%s failed: %r", _describe(interaction), cause)
    await reply_ephemeral(interaction, message)


class HordeCommandTree(app_commands.CommandTree[discord.Client]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await report_interaction_error(interaction, error)
