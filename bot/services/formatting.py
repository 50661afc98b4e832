"""Plain text every kind and every reply shares: durations, kudos, numbers and lengths of time as
the messages write them, clipping, and whether a prompt shows anything."""

from __future__ import annotations

from typing import Final

import discord

ELLIPSIS: Final = "…"
UNKNOWN: Final = "—"
"""What a value the Horde left out shows as."""


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis when it is longer."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 5 s``, ``1 h 2 min``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_kudos(kudos: float) -> str:
    return f"{kudos:,.1f}".removesuffix(".0")


def has_visible_text(text: str) -> bool:
    """Whether ``text`` shows anything: a prompt of only spaces or zero-width characters (format
    characters such as U+200B, which ``str.strip`` keeps) is as good as empty."""
    return any(char.isprintable() and not char.isspace() for char in text)


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
