"""What /alchemy's message says: the progress, then captions and tags as text and the first image
in the embed. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import discord

from bot.horde.consts import KNOWN_ALCHEMY_TYPES
from bot.services.alchemy.request import AlchemyParams, operation_label
from bot.services.delivery.render import END_LABELS, LOGIN_HINT, end_reason, progress_bar, progress_fraction
from bot.services.formatting import format_duration, format_kudos
from bot.services.jobs import JobOutcome, JobProgress

MAX_TAGS: Final = 25


def _headline(params: AlchemyParams) -> str:
    return f"**{operation_label(params.form)}** · {discord.utils.escape_markdown(params.filename)}"


def render_alchemy_progress(
    params: AlchemyParams, progress: JobProgress | None, *, bar_width: int, anonymous: bool
) -> str:
    lines = [_headline(params)]
    if progress is None:
        lines.append("📨 Sending the image to the AI Horde…")
        lines.append(f"`{progress_bar(0.0, bar_width)}`")
    else:
        working = progress.processing > 0 or progress.finished > 0
        lines.append("⚗️ Working on it" if working else "⏳ Waiting for a worker")
        lines.append(f"`{progress_bar(progress_fraction(progress), bar_width)}`")
        lines.append(f"{format_duration(progress.elapsed_s)} elapsed")
    if anonymous:
        lines.append(LOGIN_HINT)
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class AlchemyResult:
    """What a finished form returned, read from the journal's ``result_json``."""

    form: str
    value: Any


def _results(result_json: str | None) -> list[AlchemyResult]:
    if not result_json:
        return []
    try:
        forms = json.loads(result_json).get("forms")
    except (ValueError, AttributeError):
        return []
    if not isinstance(forms, list):
        return []
    return [
        AlchemyResult(form=str(form.get("form")), value=form.get("result"))
        for form in forms
        if isinstance(form, dict) and form.get("state") == "done" and form.get("result") is not None
    ]


def render_alchemy_result(
    params: AlchemyParams,
    outcome: JobOutcome,
    result_json: str | None,
    *,
    image_filenames: Sequence[str],
    anonymous: bool,
) -> tuple[str, discord.Embed | None]:
    """The final content and embed: captions and tags as text, the first image shown in the embed."""
    # What it cost, as /imagine says it (alchemy is free: 0).
    kudos = f"{format_kudos(outcome.kudos)} kudos"
    lines = [_headline(params), END_LABELS.get(outcome.state, str(outcome.state)), kudos]
    if reason := end_reason(outcome):
        lines.append(reason)
    lines += outcome.notes
    if anonymous:
        lines.append(LOGIN_HINT)
    embed = discord.Embed(colour=discord.Colour.dark_teal())
    for result in _results(result_json):
        if result.form == KNOWN_ALCHEMY_TYPES.caption and isinstance(result.value, str):
            embed.description = discord.utils.escape_markdown(result.value)
        elif result.form == KNOWN_ALCHEMY_TYPES.nsfw and isinstance(result.value, bool):
            embed.description = "🔞 Looks NSFW." if result.value else "✅ Looks safe for work."
        elif result.form == KNOWN_ALCHEMY_TYPES.interrogation and isinstance(result.value, dict):
            _add_tags(embed, result.value)
    if image_filenames:
        embed.set_image(url=f"attachment://{image_filenames[0]}")
    shown = embed.description or embed.fields or embed.image
    return "\n".join(lines), embed if shown else None


def _add_tags(embed: discord.Embed, interrogation: dict[str, Any]) -> None:
    for category, items in interrogation.items():
        if not isinstance(items, list) or not items:
            continue
        scored = [
            (str(item["text"]), float(item.get("confidence", 0.0)))
            for item in items
            if isinstance(item, dict) and "text" in item
        ]
        scored.sort(key=lambda pair: -pair[1])
        text = ", ".join(
            f"{discord.utils.escape_markdown(name)} ({score:.0%})" for name, score in scored[:MAX_TAGS]
        )
        embed.add_field(name=category.capitalize(), value=text[:1024] or "—", inline=False)
