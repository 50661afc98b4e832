"""/alchemy and the image context menus: an operation on an uploaded image → an alchemy request,
and what its result message shows.

Source images go through the same checks as /imagine's (``bot.services.imagine``): an image
content type and at most 10 MB before downloading, then decoded with Pillow under a pixel limit
(so a decompression bomb is refused before it is expanded) and re-encoded as webp. 3072² pixels
is well inside the Horde's alchemy limit (255 tiles of 512²).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import discord
from pydantic import BaseModel, ConfigDict

from bot.errors import UserInputError
from bot.horde import AlchemyAsyncRequest
from bot.horde.consts import (
    KNOWN_ALCHEMY_TYPES,
    KNOWN_FACEFIXERS,
    KNOWN_MISC_POST_PROCESSORS,
    KNOWN_UPSCALERS,
)
from bot.services.imagine import SourceImage, check_source_attachment, prepare_source_image
from bot.services.jobs import JobOutcome, JobProgress
from bot.services.render import LOGIN_HINT, format_duration, progress_bar, progress_fraction
from bot.storage import JobState

__all__ = [
    "ANALYSES",
    "DESCRIBE_FORM",
    "UPSCALE_FORM",
    "AlchemyParams",
    "AlchemyResult",
    "SourceImage",
    "alchemy_choices",
    "build_alchemy_request",
    "check_source_attachment",
    "first_image",
    "is_image_form",
    "operation_label",
    "prepare_source_image",
    "render_alchemy_progress",
    "render_alchemy_result",
]

ANALYSES: Final[tuple[KNOWN_ALCHEMY_TYPES, ...]] = (
    KNOWN_ALCHEMY_TYPES.caption,
    KNOWN_ALCHEMY_TYPES.interrogation,
    KNOWN_ALCHEMY_TYPES.nsfw,
)
IMAGE_OPERATIONS: Final[tuple[str, ...]] = (
    *KNOWN_UPSCALERS,
    *KNOWN_FACEFIXERS,
    KNOWN_MISC_POST_PROCESSORS.strip_background,
)
DESCRIBE_FORM: Final = KNOWN_ALCHEMY_TYPES.caption.value
UPSCALE_FORM: Final = KNOWN_UPSCALERS.RealESRGAN_x2plus.value
MAX_TAGS: Final = 25
NO_IMAGE: Final = "That message has no image attached. Use it on a message with a PNG, JPEG or WebP image."

_LABELS: Final[dict[str, str]] = {
    KNOWN_ALCHEMY_TYPES.caption: "Caption",
    KNOWN_ALCHEMY_TYPES.interrogation: "Tags (interrogation)",
    KNOWN_ALCHEMY_TYPES.nsfw: "NSFW check",
    KNOWN_MISC_POST_PROCESSORS.strip_background: "Strip background",
    **{upscaler.value: f"Upscale: {upscaler.value}" for upscaler in KNOWN_UPSCALERS},
    **{fixer.value: f"Face fix: {fixer.value}" for fixer in KNOWN_FACEFIXERS},
}
_END_LABELS: Final = {
    JobState.DONE: "✅ **Done**",
    JobState.CANCELLED: "🛑 **Cancelled**",
    JobState.FAILED: "❌ **Failed**",
}


def alchemy_choices() -> list[tuple[str, str]]:
    """``(label, form)`` for every operation /alchemy offers (at most 25, Discord's limit)."""
    return [(_LABELS[form], form) for form in (*ANALYSES, *IMAGE_OPERATIONS)]


def operation_label(form: str) -> str:
    return _LABELS.get(form, form)


def is_image_form(form: str) -> bool:
    return form in IMAGE_OPERATIONS


class AlchemyParams(BaseModel):
    """An alchemy job's options as journalled (``params_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    form: str
    filename: str

    @classmethod
    def from_json(cls, text: str) -> AlchemyParams:
        return cls.model_validate_json(text)


def build_alchemy_request(form: str, source: SourceImage) -> AlchemyAsyncRequest:
    if form not in _LABELS:
        raise UserInputError(f"“{form}” isn't an operation I know.")
    return AlchemyAsyncRequest.model_validate({"forms": [{"name": form}], "source_image": source.webp_base64})


def first_image(attachments: Sequence[discord.Attachment]) -> discord.Attachment:
    """The first image attached to a message; :class:`UserInputError` when there is none."""
    for attachment in attachments:
        if (attachment.content_type or "").lower().startswith("image/"):
            return attachment
    raise UserInputError(NO_IMAGE)


# -- what the message shows ------------------------------------------------------------------------


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
    lines = [_headline(params), _END_LABELS.get(outcome.state, str(outcome.state))]
    if outcome.error:
        lines.append(outcome.error)
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
