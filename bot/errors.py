"""Domain errors that carry a message which is safe to show to the Discord user.

Services raise these; the command tree (``bot.tree``) turns them into an ephemeral reply. The
``user_message`` must never contain secrets or internal detail; ``str(error)`` may carry more
detail for the logs, but it too must never contain an API key or token. Errors never log themselves.
"""

from __future__ import annotations

from typing import ClassVar


class BotError(Exception):
    """An expected failure whose ``user_message`` can be shown as is."""

    default_message: ClassVar[str] = "That didn't work."

    def __init__(self, user_message: str | None = None, *, detail: str | None = None) -> None:
        self.user_message: str = user_message if user_message is not None else self.default_message
        super().__init__(detail if detail is not None else self.user_message)


class UserInputError(BotError):
    """The user gave a value we cannot use; the message says what is allowed."""

    default_message = "That input isn't valid."


class NotLoggedInError(BotError):
    default_message = "You aren't logged in. Use /login with your AI Horde API key first."


class PermissionDeniedError(BotError):
    default_message = "You aren't allowed to do that here."


class HordeUnavailableError(BotError):
    default_message = "The AI Horde can't be reached right now. Please try again in a few minutes."


class ConfigurationError(BotError):
    """The bot or this server is set up in a way that prevents the action."""

    default_message = "This bot isn't set up to do that here. Please tell a server admin."
