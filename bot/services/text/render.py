"""What /write's message says: the progress while the text is written, then the text (in an embed, or
a .txt file when it is long). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import discord

from bot.services.delivery.render import (
    END_LABELS,
    LOGIN_HINT,
    end_reason,
    progress_bar,
    progress_fraction,
    progress_status_lines,
    prompt_preview,
)
from bot.services.formatting import format_kudos
from bot.services.jobs import JobOutcome, JobProgress
from bot.services.styles import style_model
from bot.services.text.request import TextParams, TextResult

EMBED_TEXT_CHARS: Final = 4000
"""Longer results go in a .txt file (an embed description holds at most 4096 characters)."""
TEXT_FILENAME: Final = "horde_text.txt"
CENSORED_NOTE: Final = "⚠️ The AI Horde's filter censored this text."
CONTINUE_HINT: Final = "Continue extends this text with the same settings."

_STATE_LABELS: Final = {
    "in_bot_queue": "🕒 Waiting for its turn to be sent to the AI Horde",
    "queued": "⏳ Waiting for a worker",
    "processing": "✍️ Writing",
    "finishing": "📥 Collecting the text",
}


def headline(params: TextParams) -> str:
    prompt = params.prompt[-300:] if params.continued_from else params.prompt
    prefix = "Continuing: …" if params.continued_from else ""
    chosen = params.model or style_model(params.style)
    model = discord.utils.escape_markdown(chosen) if chosen else "any text model"
    style = f" · style {discord.utils.escape_markdown(params.style.name)}" if params.style is not None else ""
    return f"**{prefix}{prompt_preview(prompt)}**\n-# {model}{style}"


def render_text_progress(
    params: TextParams, progress: JobProgress | None, *, bar_width: int, anonymous: bool
) -> str:
    lines = [headline(params)]
    if progress is None:
        lines.append("📨 Sending the request to the AI Horde…")
        lines.append(f"`{progress_bar(0.0, bar_width)}`")
    else:
        lines.append(_STATE_LABELS.get(progress.state, progress.state))
        lines.append(f"`{progress_bar(progress_fraction(progress), bar_width)}`")
        lines += progress_status_lines(progress)
    if anonymous:
        lines.append(LOGIN_HINT)
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class RenderedText:
    content: str
    embed: discord.Embed | None
    attachment: bytes | None
    """The whole text as a UTF-8 .txt file, when it is too long for the embed."""


def render_text_result(
    params: TextParams, outcome: JobOutcome, result: TextResult | None, *, anonymous: bool
) -> RenderedText:
    """The final message. A continuation shows the whole text so far, not only the new part."""
    lines = [headline(params), END_LABELS.get(outcome.state, str(outcome.state))]
    if reason := end_reason(outcome):
        lines.append(reason)
    lines += outcome.notes
    if result is None:
        if anonymous:
            lines.append(LOGIN_HINT)
        return RenderedText(content="\n".join(lines), embed=None, attachment=None)
    full = (params.prompt + result.text) if params.continued_from else result.text
    if result.censored:
        lines.append(CENSORED_NOTE)
    embed = discord.Embed(colour=discord.Colour.blurple())
    attachment = None
    if len(full) > EMBED_TEXT_CHARS:
        attachment = full.encode("utf-8")
        embed.description = f"The text is {len(full):,} characters long, so it is attached as a file."
    else:
        embed.description = full.strip() or "*(the worker returned no text)*"
    footer = [part for part in (result.model, result.worker_name and f"by {result.worker_name}") if part]
    footer.append(f"{format_kudos(outcome.kudos)} kudos")
    embed.set_footer(text=" · ".join(footer))
    if anonymous:
        lines.append(LOGIN_HINT)
    return RenderedText(content="\n".join(lines), embed=embed, attachment=attachment)
