"""/alchemy and the image context menus: an operation on an uploaded image → an alchemy request.

Source images go through the same checks as /imagine's (``bot.services.image.source``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

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
from bot.services.image.source import SourceImage

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
NO_IMAGE: Final = "That message has no image attached. Use it on a message with a PNG, JPEG or WebP image."

_LABELS: Final[dict[str, str]] = {
    KNOWN_ALCHEMY_TYPES.caption: "Caption",
    KNOWN_ALCHEMY_TYPES.interrogation: "Tags (interrogation)",
    KNOWN_ALCHEMY_TYPES.nsfw: "NSFW check",
    KNOWN_MISC_POST_PROCESSORS.strip_background: "Strip background",
    **{upscaler.value: f"Upscale: {upscaler.value}" for upscaler in KNOWN_UPSCALERS},
    **{fixer.value: f"Face fix: {fixer.value}" for fixer in KNOWN_FACEFIXERS},
}


def alchemy_choices() -> list[tuple[str, str]]:
    """``(label, form)`` for every operation /alchemy offers (at most 25, Discord's limit)."""
    return [(_LABELS[form], form) for form in (*ANALYSES, *IMAGE_OPERATIONS)]


def operation_label(form: str) -> str:
    return _LABELS.get(form, form)


class ImageOrigin(BaseModel):
    """The /imagine image an alchemy job works on (Upscale #n): its job and number (1-based)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    number: int


class AlchemyParams(BaseModel):
    """An alchemy job's options as journalled (``params_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    form: str
    filename: str
    origin: ImageOrigin | None = None
    """Set for Upscale #n of an /imagine result: its reply gets that image's buttons."""

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
