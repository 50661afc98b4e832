"""How the bot writes numbers and lengths of time in embeds, the same everywhere."""

from __future__ import annotations

from typing import Final

import discord

from bot.services.limits import clip

UNKNOWN: Final = "—"
"""What a value the Horde left out shows as."""


def format_number(value: float | None) -> str:
    """``1,234`` (rounded), or :data:`UNKNOWN`."""
    return UNKNOWN if value is None else f"{value:,.0f}"


def plural(count: int | None, noun: str) -> str:
    """``1 worker``, ``3 workers`` (``— workers`` when not known)."""
    if count is None:
        return f"{UNKNOWN} {noun}s"
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def format_uptime(seconds: float | None) -> str:
    """``1d 2h 3m 4s``, leaving out leading zero units; :data:`UNKNOWN` when not known."""
    if seconds is None:
        return UNKNOWN
    remaining = max(0, int(seconds))
    days, remaining = divmod(remaining, 86_400)
    hours, remaining = divmod(remaining, 3_600)
    minutes, remaining = divmod(remaining, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{value}{unit}" for value, unit in [*parts, (remaining, "s")])


def plain_line(text: str, limit: int) -> str:
    """Text someone else chose (a name, an owner's note) as a reply may show it: on one line, at
    most ``limit`` characters, markdown escaped so it shows as written."""
    return discord.utils.escape_markdown(clip(" ".join(text.split()), limit))
