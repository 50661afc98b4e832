"""What /imagine's message says: progress, result and details. Pure functions.

The progress text carries the user's prompt, so whoever sends it must disable mentions
(``AllowedMentions.none()``); markdown in the prompt is escaped so it shows as typed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import discord

from bot.services.controls import details_legend
from bot.services.delivery.limits import fit_content, fit_embed
from bot.services.delivery.render import (
    END_LABELS,
    LOGIN_HINT,
    end_reason,
    progress_bar,
    progress_fraction,
    progress_status_lines,
    prompt_preview,
)
from bot.services.formatting import clip, format_kudos, plural
from bot.services.image.request import ImagineParams, NamedStrength
from bot.services.jobs import DeliveredImage, JobOutcome, JobProgress
from bot.storage import JobRecord

EMBED_DESCRIPTION_CHARS: Final = 4096
EMBED_FIELD_CHARS: Final = 1024
NO_ATTACH_PERMISSION: Final = (
    "⚠️ I can't attach the images here: I need the Attach Files permission in this channel."
)
CENSORED_NOTE: Final = "censored by the AI Horde's safety filter"

_STATE_LABELS: Final = {
    "in_bot_queue": "🕒 Waiting for its turn to be sent to the AI Horde",
    "queued": "⏳ Waiting for a worker",
    "processing": "🎨 Generating",
    "finishing": "📥 Collecting the images",
}


def headline(params: ImagineParams) -> str:
    count = f" · {params.n} images" if params.n > 1 else ""
    return f"**{prompt_preview(params.prompt)}**\n-# {discord.utils.escape_markdown(params.model)}{count}"


def restarted_note(count: int) -> str:
    """The Horde's ``restarted``: jobs a worker dropped or failed, handed to another worker."""
    return f"{plural(count, 'image')} restarted on another worker (the first one failed)"


def render_progress(
    params: ImagineParams,
    progress: JobProgress | None,
    *,
    bar_width: int,
    anonymous: bool,
    notes: Sequence[str] = (),
) -> str:
    """The progress message: prompt, state, bar, counts, queue, ETA, kudos and elapsed time."""
    lines = [headline(params)]
    if progress is None:
        lines.append("📨 Sending the request to the AI Horde…")
        lines.append(f"`{progress_bar(0.0, bar_width)}` 0/{params.n}")
    else:
        lines.append(_STATE_LABELS.get(progress.state, progress.state))
        lines.append(
            f"`{progress_bar(progress_fraction(progress), bar_width)}` {progress.finished}/{progress.n}"
        )
        counts = (
            f"{progress.finished} finished · {progress.processing} processing · {progress.waiting} waiting"
        )
        if progress.restarted:
            counts += f" · {restarted_note(progress.restarted)}"
        lines.append(counts)
        lines += progress_status_lines(progress)
    lines += notes
    if anonymous:
        lines.append(LOGIN_HINT)
    return fit_content("\n".join(lines))


@dataclass(frozen=True, slots=True)
class RenderedResult:
    content: str
    embed: discord.Embed


def render_result(
    params: ImagineParams,
    outcome: JobOutcome,
    *,
    anonymous: bool,
    notes: Sequence[str] = (),
) -> RenderedResult:
    """The final message: how it ended (text) and the parameters, seeds, kudos and workers (embed)."""
    images = outcome.images
    label = END_LABELS.get(outcome.state, f"**{outcome.state.value}**")
    summary = [f"{len(images)} of {params.n} images" if len(images) < params.n else _images(len(images))]
    summary.append(f"{format_kudos(outcome.kudos)} kudos")
    lines = [f"{label} — {' · '.join(summary)}"]
    if reason := end_reason(outcome):
        lines.append(reason)
    lines += [
        f"Image {image.index + 1} (seed {image.seed}) was {CENSORED_NOTE}."
        for image in images
        if image.censored
    ]
    lines += outcome.notes
    lines += notes
    if anonymous:
        lines.append(LOGIN_HINT)
    return RenderedResult(content=fit_content("\n".join(lines)), embed=result_embed(params, outcome))


def result_embed(params: ImagineParams, outcome: JobOutcome) -> discord.Embed:
    embed = discord.Embed(description=clip(params.prompt, EMBED_DESCRIPTION_CHARS))
    if params.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=clip(params.negative_prompt, EMBED_FIELD_CHARS), inline=False
        )
    models = sorted({image.model for image in outcome.images if image.model}) or [params.model]
    embed.add_field(name="Model", value=clip(", ".join(models), EMBED_FIELD_CHARS))
    if params.style is not None:
        embed.add_field(
            name="Style", value=clip(discord.utils.escape_markdown(params.style.name), EMBED_FIELD_CHARS)
        )
    embed.add_field(name="Size", value=f"{params.width}×{params.height}")
    embed.add_field(name="Steps", value=str(params.steps))
    if outcome.images:
        embed.add_field(name="Seeds", value=clip(seed_lines(outcome.images), EMBED_FIELD_CHARS), inline=False)
    embed.add_field(name="Kudos", value=format_kudos(outcome.kudos))
    if outcome.workers:
        workers = ", ".join(discord.utils.escape_markdown(name) for name in outcome.workers)
        embed.add_field(name="Workers", value=clip(workers, EMBED_FIELD_CHARS))
    return fit_embed(embed)


def seed_lines(images: Sequence[DeliveredImage]) -> str:
    return "\n".join(
        f"#{image.index + 1} `{image.seed}`" + (f" — {CENSORED_NOTE}" if image.censored else "")
        for image in images
    )


def render_details(job: JobRecord) -> discord.Embed:
    """Every parameter of a journalled /imagine, and how it went, for the Details button."""
    params = ImagineParams.from_json(job.params_json)
    embed = discord.Embed(
        title="Generation details", description=clip(params.prompt, EMBED_DESCRIPTION_CHARS)
    )
    if params.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=clip(params.negative_prompt, EMBED_FIELD_CHARS), inline=False
        )
    for name, value in _parameter_fields(params):
        embed.add_field(name=name, value=clip(value, EMBED_FIELD_CHARS))
    result = _result_summary(job.result_json)
    if result:
        embed.add_field(name="Seeds", value=clip(result, EMBED_FIELD_CHARS), inline=False)
    embed.add_field(name="State", value=job.state.value)
    if job.kudos is not None:
        embed.add_field(name="Kudos", value=format_kudos(job.kudos))
    if job.error:
        embed.add_field(name="Error", value=clip(job.error, EMBED_FIELD_CHARS), inline=False)
    embed.add_field(name="Buttons and reactions", value=details_legend(), inline=False)
    embed.set_footer(text=f"Job {job.id}")
    return fit_embed(embed)


def _parameter_fields(params: ImagineParams) -> list[tuple[str, str]]:
    fields = [("Style", discord.utils.escape_markdown(params.style.name))] if params.style is not None else []
    fields += [
        ("Model", discord.utils.escape_markdown(params.model)),
        ("Size", f"{params.width}×{params.height}"),
        ("Steps", str(params.steps)),
        ("Sampler", params.sampler.value),
        ("CFG scale", f"{params.cfg_scale:g}"),
        ("Seed", params.seed if params.seed is not None else "random"),
        ("Count", str(params.n)),
        ("Karras", _yes_no(params.karras)),
        ("Hires fix", _yes_no(params.hires_fix)),
        ("Tiling", _yes_no(params.tiling)),
        ("NSFW", "allowed" if params.nsfw else "censored"),
    ]
    if params.clip_skip is not None:
        fields.append(("CLIP skip", str(params.clip_skip)))
    if params.seed_variation is not None:
        fields.append(("Seed variation", str(params.seed_variation)))
    if params.shared:
        fields.append(("Shared with LAION", "asked"))
    if params.upscaler is not None:
        fields.append(("Upscaler", params.upscaler.value))
    if params.facefixer is not None:
        fields.append(("Face fixer", params.facefixer.value))
    if params.loras:
        fields.append(("LoRAs", _networks(params.loras)))
    if params.tis:
        fields.append(("Textual inversions", _networks(params.tis)))
    if params.source_image is not None:
        strength = (
            f" (strength {params.denoising_strength:g})" if params.denoising_strength is not None else ""
        )
        fields.append(("Source image", discord.utils.escape_markdown(params.source_image) + strength))
    return fields


def _result_summary(result_json: str | None) -> str:
    if result_json is None:
        return ""
    result: Any = json.loads(result_json)
    images = result.get("images") if isinstance(result, dict) else None
    if not isinstance(images, list):
        return ""
    lines = []
    for position, image in enumerate(images):
        if not isinstance(image, dict):
            continue
        index = image.get("index", position)
        note = f" — {CENSORED_NOTE}" if image.get("censored") else ""
        worker = (
            f" · {discord.utils.escape_markdown(str(image['worker_name']))}"
            if image.get("worker_name")
            else ""
        )
        lines.append(f"#{int(index) + 1} `{image.get('seed')}`{worker}{note}")
    return "\n".join(lines)


def _networks(entries: Sequence[NamedStrength]) -> str:
    return ", ".join(f"{discord.utils.escape_markdown(entry.name)}:{entry.strength:g}" for entry in entries)


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"
