"""What `/jobs` says about a member's jobs: the running ones (queue position, elapsed time) and the
last finished ones (how they ended, a link to their message). Pure functions over the journal and
the engine's view of the jobs this process runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bot.services.delivery.render import prompt_preview
from bot.services.formatting import format_duration
from bot.services.jobs import ActiveJob
from bot.services.reposts import message_link
from bot.storage import JobRecord, JobState

FINISHED_SHOWN: Final = 10
RUNNING_SHOWN: Final = 10
"""At most this many running jobs get a line and a Cancel button (a member rarely has more)."""
PREVIEW_CHARS: Final = 60
SHORT_ID: Final = 8
KIND_ICONS: Final = {"image": "🎨", "text": "📝", "alchemy": "⚗️"}
STATE_ICONS: Final = {
    JobState.DONE: "✅ done",
    JobState.CANCELLED: "✖️ cancelled",
    JobState.FAILED: "⚠️ failed",
}
NO_JOBS: Final = "You have no generations yet."


def short_id(job: JobRecord) -> str:
    return job.id[:SHORT_ID]


def what(job: JobRecord) -> str:
    """The job's kind and prompt (or operation), on one short line."""
    return f"{KIND_ICONS.get(job.kind, '•')} {prompt_preview(_subject(job), PREVIEW_CHARS)}"


def _subject(job: JobRecord) -> str:
    params = _params(job)
    return str(params.get("prompt") or params.get("form") or job.kind)


@dataclass(frozen=True, slots=True)
class JobsOverview:
    running: list[JobRecord]
    finished: list[JobRecord]
    lines_running: list[str]
    lines_finished: list[str]


def running_of(recent: Sequence[JobRecord]) -> list[JobRecord]:
    """The running jobs ``/jobs`` lists, of the member's ``recent`` ones (newest first)."""
    return [job for job in recent if not job.state.is_terminal][:RUNNING_SHOWN]


def overview(
    recent: Sequence[JobRecord],
    active: Mapping[str, ActiveJob],
    *,
    now: datetime,
    places: Mapping[str, int] | None = None,
) -> JobsOverview:
    """``recent``: the member's jobs, newest first; ``active``: those this process runs, by id;
    ``places``: the place in the bot's own queue of those still waiting for their turn, whichever
    process runs them."""
    running = running_of(recent)
    finished = [job for job in recent if job.state.is_terminal][:FINISHED_SHOWN]
    places = places or {}
    return JobsOverview(
        running=running,
        finished=finished,
        lines_running=[
            _running_line(job, active.get(job.id), now=now, place=places.get(job.id)) for job in running
        ],
        lines_finished=[_finished_line(job) for job in finished],
    )


def _running_line(job: JobRecord, active: ActiveJob | None, *, now: datetime, place: int | None) -> str:
    progress = active.progress if active is not None else None
    if active is not None and active.cancelling:
        where = "cancelling"
    elif place is not None and job.state is JobState.PENDING:
        where = f"#{place} in the bot's queue"
    elif progress is None:
        where = "sent to the AI Horde" if job.state is JobState.SUBMITTED else "starting"
    elif progress.state == "queued":
        where = f"#{progress.queue_position} in the queue"
    else:
        where = f"{progress.finished}/{progress.n} done, {progress.processing} with a worker"
    elapsed = progress.elapsed_s if progress is not None else (now - job.created_at).total_seconds()
    return f"`{short_id(job)}` {what(job)} · {where} · {format_duration(elapsed)}"


def _finished_line(job: JobRecord) -> str:
    link = message_link(job)
    where = f"[message]({link})" if link else "private reply"
    when = f"<t:{int(job.updated_at.timestamp())}:R>"
    return f"`{short_id(job)}` {what(job)} · {STATE_ICONS.get(job.state, job.state.value)} {when} · {where}"


def choice_name(job: JobRecord) -> str:
    """How /jobs show's autocomplete names a job (at most 100 characters, no markdown)."""
    subject = " ".join(_subject(job).split())
    state = job.state.value
    name = f"{short_id(job)} · {job.kind} · {state} · {subject}"
    return name if len(name) <= 100 else name[:99] + "…"


def _params(job: JobRecord) -> dict[str, Any]:
    try:
        params = json.loads(job.params_json)
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}
