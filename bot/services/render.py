"""What /imagine's message says: progress, result and details. Pure functions (plus the edit throttle).

The progress text carries the user's prompt, so whoever sends it must disable mentions
(``AllowedMentions.none()``); markdown in the prompt is escaped so it shows as typed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import discord

from bot.services.controls import details_legend
from bot.services.imagine import ImagineParams, NamedStrength
from bot.services.jobs import DeliveredImage, JobOutcome, JobProgress
from bot.services.limits import fit_content, fit_embed
from bot.storage import JobRecord, JobState

BAR_FILLED: Final = "█"
BAR_EMPTY: Final = "░"
PROMPT_PREVIEW_CHARS: Final = 300
EMBED_DESCRIPTION_CHARS: Final = 4096
EMBED_FIELD_CHARS: Final = 1024
LOGIN_HINT: Final = (
    "-# You aren't logged in, so this runs on the shared anonymous key (lowest priority). "
    "Use /login with your own AI Horde API key to generate faster with your kudos."
)
NO_ATTACH_PERMISSION: Final = (
    "⚠️ I can't attach the images here: I need the Attach Files permission in this channel."
)
CENSORED_NOTE: Final = "censored by the AI Horde's safety filter"

_STATE_LABELS: Final = {
    "queued": "⏳ Waiting for a worker",
    "processing": "🎨 Generating",
    "finishing": "📥 Collecting the images",
}
_END_LABELS: Final = {
    JobState.DONE: "✅ **Done**",
    JobState.CANCELLED: "🛑 **Cancelled**",
    JobState.FAILED: "❌ **Failed**",
}


def progress_bar(fraction: float, width: int) -> str:
    """``█████░░░░░``: ``fraction`` (clamped to 0..1) of ``width`` cells filled."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return BAR_FILLED * filled + BAR_EMPTY * (width - filled)


def progress_fraction(progress: JobProgress) -> float:
    """Finished images count fully, images being generated half."""
    if progress.n <= 0:
        return 0.0
    return min(1.0, (progress.finished + 0.5 * progress.processing) / progress.n)


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


def prompt_preview(prompt: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """The prompt on one line, clipped, markdown escaped."""
    flat = " ".join(prompt.split())
    return discord.utils.escape_markdown(_clip(flat, limit))


def headline(params: ImagineParams) -> str:
    count = f" · {params.n} images" if params.n > 1 else ""
    return f"**{prompt_preview(params.prompt)}**\n-# {discord.utils.escape_markdown(params.model)}{count}"


def progress_status_lines(progress: JobProgress) -> list[str]:
    """Queue position, ETA, kudos and elapsed time; and a warning while no worker can serve it."""
    status = []
    if progress.state == "queued":
        status.append(f"Queue position {progress.queue_position}")
    status += [
        f"ETA {format_duration(progress.wait_time)}",
        f"{format_kudos(progress.kudos)} kudos",
        f"{format_duration(progress.elapsed_s)} elapsed",
    ]
    lines = [" · ".join(status)]
    if not progress.is_possible:
        lines.append("⚠️ No worker can run this request right now; unless one can soon, it is cancelled.")
    return lines


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
            f"{progress.finished} finished · {progress.processing} processing · "
            f"{progress.waiting} waiting · {progress.restarted} restarted"
        )
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
    label = _END_LABELS.get(outcome.state, f"**{outcome.state.value}**")
    summary = [f"{len(images)} of {params.n} images" if len(images) < params.n else _images(len(images))]
    summary.append(f"{format_kudos(outcome.kudos)} kudos")
    lines = [f"{label} — {' · '.join(summary)}"]
    if outcome.error:
        lines.append(outcome.error)
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
    embed = discord.Embed(description=_clip(params.prompt, EMBED_DESCRIPTION_CHARS))
    if params.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=_clip(params.negative_prompt, EMBED_FIELD_CHARS), inline=False
        )
    models = sorted({image.model for image in outcome.images if image.model}) or [params.model]
    embed.add_field(name="Model", value=_clip(", ".join(models), EMBED_FIELD_CHARS))
    embed.add_field(name="Size", value=f"{params.width}×{params.height}")
    embed.add_field(name="Steps", value=str(params.steps))
    if outcome.images:
        embed.add_field(
            name="Seeds", value=_clip(seed_lines(outcome.images), EMBED_FIELD_CHARS), inline=False
        )
    embed.add_field(name="Kudos", value=format_kudos(outcome.kudos))
    if outcome.workers:
        workers = ", ".join(discord.utils.escape_markdown(name) for name in outcome.workers)
        embed.add_field(name="Workers", value=_clip(workers, EMBED_FIELD_CHARS))
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
        title="Generation details", description=_clip(params.prompt, EMBED_DESCRIPTION_CHARS)
    )
    if params.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=_clip(params.negative_prompt, EMBED_FIELD_CHARS), inline=False
        )
    for name, value in _parameter_fields(params):
        embed.add_field(name=name, value=_clip(value, EMBED_FIELD_CHARS))
    result = _result_summary(job.result_json)
    if result:
        embed.add_field(name="Seeds", value=_clip(result, EMBED_FIELD_CHARS), inline=False)
    embed.add_field(name="State", value=job.state.value)
    if job.kudos is not None:
        embed.add_field(name="Kudos", value=format_kudos(job.kudos))
    if job.error:
        embed.add_field(name="Error", value=_clip(job.error, EMBED_FIELD_CHARS), inline=False)
    embed.add_field(name="Buttons and reactions", value=details_legend(), inline=False)
    embed.set_footer(text=f"Job {job.id}")
    return fit_embed(embed)


def _parameter_fields(params: ImagineParams) -> list[tuple[str, str]]:
    fields = [
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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EditThrottle:
    """Decides when a message edit may go out: only when what it shows changed, and at most once
    every ``interval_s`` seconds. A forced edit (the final one) always goes out."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] | None = None) -> None:
        self._interval_s = interval_s
        # Looked up at each call, not bound at import, so a patched clock (SimCord's virtual one) applies.
        self._clock = clock or (lambda: time.monotonic())
        self._last_at: float | None = None
        self._last_shown: Hashable | None = None

    def changed(self, shown: Hashable) -> bool:
        return self._last_at is None or shown != self._last_shown

    def ready(self) -> bool:
        return self._last_at is None or self._clock() - self._last_at >= self._interval_s

    def should_edit(self, shown: Hashable, *, force: bool = False) -> bool:
        return force or (self.changed(shown) and self.ready())

    def sent(self, shown: Hashable) -> None:
        self._last_at = self._clock()
        self._last_shown = shown
