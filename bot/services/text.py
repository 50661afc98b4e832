"""/write: what the user typed → a validated AI Horde text request, the parameters to journal, and
what the result message shows.

Bounds are the Horde's (the options enforce them too) plus this server's ``max_prompt_length``
(characters typed) and ``max_text_tokens`` (the length to write). The
parameters are journalled with the job, so Continue can send the same request again with the prompt
extended by the text generated so far, also after a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import discord
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.horde import TextGenerateAsyncRequest
from bot.horde.consts import MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES
from bot.services.imagine import has_visible_text
from bot.services.jobs import JobOutcome, JobProgress
from bot.services.render import (
    LOGIN_HINT,
    format_kudos,
    progress_bar,
    progress_fraction,
    progress_status_lines,
    prompt_preview,
)
from bot.storage import JobState

# The Horde's bounds (``ModelPayloadRootKobold``); max_length's are in bot.generation_limits.
MIN_CONTEXT: Final = 80
MAX_CONTEXT: Final = 1_048_576
MAX_TEMPERATURE: Final = 5.0
MIN_TOP_P: Final = 0.001
MIN_REP_PEN: Final = 1.0
MAX_REP_PEN: Final = 3.0
HORDE_DEFAULT_LENGTH: Final = 80
"""What the Horde writes when ``max_length`` is left out."""

STOP_SEPARATOR: Final = "|"
EMBED_TEXT_CHARS: Final = 4000
"""Longer results go in a .txt file (an embed description holds at most 4096 characters)."""
TEXT_FILENAME: Final = "horde_text.txt"
CENSORED_NOTE: Final = "⚠️ The AI Horde's filter censored this text."
CONTINUE_HINT: Final = "Continue extends this text with the same settings."

_STATE_LABELS: Final = {
    "queued": "⏳ Waiting for a worker",
    "processing": "✍️ Writing",
    "finishing": "📥 Collecting the text",
}
_END_LABELS: Final = {
    JobState.DONE: "✅ **Done**",
    JobState.CANCELLED: "🛑 **Cancelled**",
    JobState.FAILED: "❌ **Failed**",
}


@dataclass(frozen=True, slots=True)
class TextOptions:
    """What the user typed; ``None`` means "the Horde's default"."""

    prompt: str
    model: str | None = None
    max_length: int | None = None
    max_context_length: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    stop_sequences: str | None = None


class TextParams(BaseModel):
    """The options of a text job as journalled (``params_json``): enough to show it and continue it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    model: str | None = None
    max_length: int | None = None
    max_context_length: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    stop_sequences: tuple[str, ...] = ()
    continued_from: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    """The job this one continues; its ``prompt`` then holds everything written so far."""

    @classmethod
    def from_json(cls, text: str) -> TextParams:
        return cls.model_validate_json(text)


@dataclass(frozen=True, slots=True)
class TextRequest:
    request: TextGenerateAsyncRequest
    params: TextParams


@dataclass(frozen=True, slots=True)
class TextResult:
    """The generated text of a journalled job (its ``result_json``)."""

    text: str
    model: str | None
    worker_name: str | None
    censored: bool


def parse_stop_sequences(text: str | None) -> tuple[str, ...]:
    """``"END | \\n\\n"`` → ``("END", "\\n\\n")``: ``|`` separates, ``\\n`` is a new line."""
    if text is None:
        return ()
    sequences = []
    for raw in text.split(STOP_SEPARATOR):
        item = raw.strip().replace("\\n", "\n")
        if item and item not in sequences:
            sequences.append(item)
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise UserInputError(f"At most {MAX_STOP_SEQUENCES} stop sequences; you gave {len(sequences)}.")
    if sum(len(item) for item in sequences) > MAX_STOP_SEQUENCE_CHARS:
        raise UserInputError(
            f"The stop sequences may hold at most {MAX_STOP_SEQUENCE_CHARS} characters in all."
        )
    return tuple(sequences)


def build_text_request(options: TextOptions, defaults: GenerationDefaults) -> TextRequest:
    """Check ``options`` against this server's limits and the Horde's; raises :class:`UserInputError`."""
    if not has_visible_text(options.prompt):
        raise UserInputError("The prompt can't be empty.")
    if len(options.prompt) > defaults.max_prompt_length:
        raise UserInputError(
            f"The prompt may have at most {defaults.max_prompt_length:,} characters on this server; "
            f"it has {len(options.prompt):,}."
        )
    if options.max_length is not None and options.max_length > defaults.max_text_tokens:
        raise UserInputError(f"Max length may be at most {defaults.max_text_tokens} tokens on this server.")
    max_length = options.max_length
    if max_length is None and defaults.max_text_tokens < HORDE_DEFAULT_LENGTH:
        # Left out, the Horde would write more than this server allows.
        max_length = defaults.max_text_tokens
    params = TextParams(
        prompt=options.prompt,
        model=options.model,
        max_length=max_length,
        max_context_length=options.max_context_length,
        temperature=options.temperature,
        top_p=options.top_p,
        repetition_penalty=options.repetition_penalty,
        stop_sequences=parse_stop_sequences(options.stop_sequences),
    )
    return TextRequest(request=request_for(params), params=params)


def continuation(params: TextParams, previous: TextResult, previous_job_id: str) -> TextRequest:
    """The same request again, its prompt extended by the text generated so far."""
    extended = params.model_copy(
        update={"prompt": params.prompt + previous.text, "continued_from": previous_job_id}
    )
    return TextRequest(request=request_for(extended), params=extended)


def request_for(params: TextParams, *, dry_run: bool = False) -> TextGenerateAsyncRequest:
    settings: dict[str, Any] = {
        "max_length": params.max_length,
        "max_context_length": params.max_context_length,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "rep_pen": params.repetition_penalty,
        "stop_sequence": list(params.stop_sequences) or None,
    }
    fields: dict[str, Any] = {"prompt": params.prompt}
    chosen = {name: value for name, value in settings.items() if value is not None}
    if chosen:
        fields["params"] = chosen
    if params.model:
        fields["models"] = [params.model]
    if dry_run:
        fields["dry_run"] = True
    try:
        return TextGenerateAsyncRequest.model_validate(fields)
    except ValidationError as exc:
        raise UserInputError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"] if part != "params")
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{_OPTION_NAMES.get(where, where)}: {message}" if where else message)
    return "These settings can't be used:\n" + "\n".join(f"• {line}" for line in lines)


_OPTION_NAMES: Final = {
    "rep_pen": "repetition_penalty",
    "stop_sequence": "stop_sequences",
}


def text_result(result_json: str | None) -> TextResult | None:
    """The first generated text of a journalled job, or ``None`` when it has none."""
    if not result_json:
        return None
    try:
        texts = json.loads(result_json).get("texts")
    except (ValueError, AttributeError):
        return None
    if not isinstance(texts, list) or not texts or not isinstance(texts[0], dict):
        return None
    first = texts[0]
    text = first.get("text")
    if not isinstance(text, str):
        return None
    return TextResult(
        text=text,
        model=first.get("model") if isinstance(first.get("model"), str) else None,
        worker_name=first.get("worker_name") if isinstance(first.get("worker_name"), str) else None,
        censored=bool(first.get("censored")),
    )


# -- what the message shows ------------------------------------------------------------------------


def headline(params: TextParams) -> str:
    prompt = params.prompt[-300:] if params.continued_from else params.prompt
    prefix = "Continuing: …" if params.continued_from else ""
    model = discord.utils.escape_markdown(params.model) if params.model else "any text model"
    return f"**{prefix}{prompt_preview(prompt)}**\n-# {model}"


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
    lines = [headline(params), _END_LABELS.get(outcome.state, str(outcome.state))]
    if outcome.error:
        lines.append(outcome.error)
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
