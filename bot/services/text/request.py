"""/write: what the user typed → a validated AI Horde text request and the parameters to journal.

Bounds are the Horde's (the options enforce them too) plus this server's ``max_prompt_length``
(characters typed) and ``max_text_tokens`` (the length to write). The
parameters are journalled with the job, so Continue can send the same request again with the prompt
extended by the text generated so far, also after a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.horde import TextGenerateAsyncRequest
from bot.horde.consts import MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES
from bot.services.formatting import has_visible_text

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
