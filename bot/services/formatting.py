"""Plain text every kind shares: durations and kudos as the messages write them, clipping, and
whether a prompt shows anything. No Discord here."""

from __future__ import annotations

from typing import Final

ELLIPSIS: Final = "…"


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
