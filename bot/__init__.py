"""A Discord bot for the AI Horde.

``create_bot`` and ``HordeBot`` are imported lazily, so that importing a lower layer such as
``bot.horde`` (which must not depend on discord) does not pull in the whole bot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app import HordeBot, create_bot

__all__ = ["HordeBot", "create_bot"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bot import app

        return getattr(app, name)
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
