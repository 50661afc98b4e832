"""Discord's size limits for what the bot posts, and the helpers that keep a message inside them.

Discord refuses (HTTP 400) a message whose content is over 2,000 characters or whose embed breaks
any of its limits, the 6,000 characters of an embed's text in all included: a refused result is a
lost result. Every job message edit goes through :func:`fit_fields` (``targets.edit_job_message``);
what is posted elsewhere from user-controlled text (Details) through :func:`fit_embed`. Files
too: at most :data:`MAX_FILES` and :data:`UPLOAD_BYTES` per message (:func:`fit_uploads`); over
them Discord refuses the edit (HTTP 413) and the whole result with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import discord

from bot.services.formatting import clip

if TYPE_CHECKING:
    from bot.services.jobs import DeliveredImage

CONTENT: Final = 2000
EMBED_TOTAL: Final = 6000
EMBED_TITLE: Final = 256
EMBED_DESCRIPTION: Final = 4096
EMBED_FIELDS: Final = 25
EMBED_FIELD_NAME: Final = 256
EMBED_FIELD_VALUE: Final = 1024
EMBED_FOOTER: Final = 2048
EMBED_AUTHOR: Final = 256
MAX_FILES: Final = 10
"""Discord allows this many files on one message."""
UPLOAD_BYTES: Final = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
"""The files one message may carry, in bytes, in any channel (10 MiB; a boosted server takes
more, a DM no more)."""


def fit_content(content: str) -> str:
    return clip(content, CONTENT)


def embed_size(embed: discord.Embed) -> int:
    """The characters Discord counts towards an embed's 6,000."""
    return (
        len(embed.title or "")
        + len(embed.description or "")
        + sum(len(field.name or "") + len(field.value or "") for field in embed.fields)
        + len(embed.footer.text or "")
        + len(embed.author.name or "")
    )


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """``embed`` (changed in place) within every limit: each part clipped to its own, fields past
    25 dropped, then the description and the longest field values shortened until the whole is
    within 6,000."""
    if embed.title:
        embed.title = clip(embed.title, EMBED_TITLE)
    if embed.description:
        embed.description = clip(embed.description, EMBED_DESCRIPTION)
    if embed.footer.text:
        embed.set_footer(text=clip(embed.footer.text, EMBED_FOOTER), icon_url=embed.footer.icon_url)
    if embed.author.name:
        embed.set_author(name=clip(embed.author.name, EMBED_AUTHOR), url=embed.author.url)
    fields = [
        (clip(field.name or "—", EMBED_FIELD_NAME), clip(field.value or "—", EMBED_FIELD_VALUE), field.inline)
        for field in embed.fields[:EMBED_FIELDS]
    ]
    embed.clear_fields()
    for name, value, inline in fields:
        embed.add_field(name=name, value=value, inline=inline)
    excess = embed_size(embed) - EMBED_TOTAL
    if excess > 0 and embed.description:
        embed.description = clip(embed.description, max(1, len(embed.description) - excess))
        excess = embed_size(embed) - EMBED_TOTAL
    while excess > 0:
        index, field = max(enumerate(embed.fields), key=lambda pair: len(pair[1].value or ""))
        value = field.value or ""
        if len(value) <= 1:
            break  # only names and one-character values left: cannot happen within 25 fields
        embed.set_field_at(
            index, name=field.name, value=clip(value, max(1, len(value) - excess)), inline=field.inline
        )
        excess = embed_size(embed) - EMBED_TOTAL
    return embed


def fit_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``message.edit``/``send`` keyword arguments within Discord's limits (changed in place)."""
    content = fields.get("content")
    if isinstance(content, str):
        fields["content"] = fit_content(content)
    embed = fields.get("embed")
    if isinstance(embed, discord.Embed):
        fit_embed(embed)
    for item in fields.get("embeds") or ():
        if isinstance(item, discord.Embed):
            fit_embed(item)
    return fields


def fit_uploads(sizes: Sequence[int], *, limit: int = UPLOAD_BYTES, max_files: int = MAX_FILES) -> list[int]:
    """The indexes of the files (of ``sizes`` bytes, in order) one message carries: each that fits
    in what is left of ``limit``, at most ``max_files``. Files that come later never change what
    was chosen before them, so a message that gains files keeps the ones it has."""
    chosen: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        if len(chosen) == max_files:
            break
        if total + size <= limit:
            chosen.append(index)
            total += size
    return chosen


def split_images(images: Sequence[DeliveredImage]) -> tuple[list[DeliveredImage], list[int]]:
    """The images one message carries (:func:`fit_uploads`, in order), and the numbers (#1 …) of
    those it can't."""
    fitting = set(fit_uploads([len(image.data) for image in images]))
    kept = [image for position, image in enumerate(images) if position in fitting]
    left = [image.index + 1 for position, image in enumerate(images) if position not in fitting]
    return kept, left


def files_left_out(numbers: Sequence[int], *, noun: str = "image") -> str:
    """The line saying which files (their 1-based ``numbers``) a message could not carry, and why."""
    names = ", ".join(f"#{number}" for number in numbers)
    many = len(numbers) != 1
    return (
        f"⚠️ Discord takes at most {MAX_FILES} files and {UPLOAD_BYTES // (1024 * 1024)} MB per message, "
        f"so {noun}{'s' if many else ''} {names} {'are' if many else 'is'} not attached."
    )
