"""What every kind's message shares: the progress bar, the queue line, the prompt preview, how an
end is labelled, and the hint to log in. Pure functions.

The texts carry the member's prompt, so whoever sends them must disable mentions
(``AllowedMentions.none()``); markdown in the prompt is escaped so it shows as typed.
"""

from __future__ import annotations

from typing import Final

import discord

from bot.services.formatting import clip, format_duration, format_kudos
from bot.services.jobs import CancelReason, JobOutcome, JobProgress
from bot.storage import JobState

BAR_FILLED: Final = "█"
BAR_EMPTY: Final = "░"
PROMPT_PREVIEW_CHARS: Final = 300
LOGIN_HINT: Final = (
    "-# You aren't logged in, so this runs on the shared anonymous key (lowest priority). "
    "Use /login with your own AI Horde API key to generate faster with your kudos."
)
END_LABELS: Final = {
    JobState.DONE: "✅ **Done**",
    JobState.CANCELLED: "🛑 **Cancelled**",
    JobState.FAILED: "❌ **Failed**",
}
"""How a job's final message says it ended."""


def end_reason(outcome: JobOutcome) -> str | None:
    """The line under the end label saying why, or None when the label says it all: a member's
    own cancel ("Cancelled.") would only repeat "🛑 Cancelled"."""
    if outcome.cancel_reason is CancelReason.USER:
        return None
    return outcome.error


def progress_bar(fraction: float, width: int) -> str:
    """``█████░░░░░``: ``fraction`` (clamped to 0..1) of ``width`` cells filled."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return BAR_FILLED * filled + BAR_EMPTY * (width - filled)


def progress_fraction(progress: JobProgress) -> float:
    """Finished results count fully, results being generated half."""
    if progress.n <= 0:
        return 0.0
    return min(1.0, (progress.finished + 0.5 * progress.processing) / progress.n)


def prompt_preview(prompt: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """The prompt on one line, clipped, markdown escaped."""
    flat = " ".join(prompt.split())
    return discord.utils.escape_markdown(clip(flat, limit))


def progress_status_lines(progress: JobProgress) -> list[str]:
    """Queue position, ETA, kudos and elapsed time; and a warning while no worker can serve it."""
    if progress.state == "in_bot_queue":
        place = f"Place in the bot's queue: {progress.queue_position}"
        return [f"{place} · {format_duration(progress.elapsed_s)} elapsed"]
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
