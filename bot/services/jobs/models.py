"""What the jobs engine hands to its listeners: progress, delivered images, the outcome."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from bot.errors import BotError
from bot.horde import BaseGenerationProgressResponse
from bot.storage import JobRecord, JobState

ProgressState = Literal["in_bot_queue", "queued", "processing", "finishing"]
"""``in_bot_queue``: waiting for its turn in the bot's own queue, not yet sent (``queue_position``
is its place there); the others are the Horde's view of it."""
"""``queued``: nothing is with a worker yet; ``processing``: workers are on it; ``finishing``:
every result is in (or the Horde says done) and the bot is collecting them."""


@dataclass(frozen=True, slots=True)
class JobProgress:
    """One poll's view of a job. Equality ignores ``elapsed_s``, which changes on every poll,
    so ``progress.changed_from(last_shown)`` tells whether a message edit would show anything new.
    """

    job_id: str
    state: ProgressState
    queue_position: int
    wait_time: int
    finished: int
    processing: int
    waiting: int
    restarted: int
    n: int
    kudos: float
    elapsed_s: float = field(compare=False)
    is_possible: bool

    def changed_from(self, other: JobProgress | None) -> bool:
        return other is None or self != other

    @classmethod
    def in_bot_queue(cls, job_id: str, place: int, *, n: int, elapsed_s: float) -> JobProgress:
        return cls(
            job_id=job_id,
            state="in_bot_queue",
            queue_position=place,
            wait_time=0,
            finished=0,
            processing=0,
            waiting=n,
            restarted=0,
            n=n,
            kudos=0.0,
            elapsed_s=elapsed_s,
            is_possible=True,
        )

    @classmethod
    def from_response(
        cls, job_id: str, response: BaseGenerationProgressResponse, *, n: int, elapsed_s: float
    ) -> JobProgress:
        state: ProgressState
        if response.is_final or response.finished >= n:
            state = "finishing"
        elif response.processing > 0:
            state = "processing"
        else:
            state = "queued"
        return cls(
            job_id=job_id,
            state=state,
            queue_position=response.queue_position,
            wait_time=response.wait_time,
            finished=response.finished,
            processing=response.processing,
            waiting=response.waiting,
            restarted=response.restarted,
            n=n,
            kudos=response.kudos,
            elapsed_s=elapsed_s,
            is_possible=response.is_possible,
        )


_MAGIC_EXTENSIONS: tuple[tuple[bytes, int, str], ...] = (
    (b"WEBP", 8, "webp"),
    (b"\x89PNG", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpg"),
)
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class DeliveredImage:
    """A finished image. ``data`` is the file exactly as the Horde served it (webp): re-post it
    as is, never re-encode it. ``index`` counts the job's images in the order they arrived."""

    generation_id: str
    index: int
    seed: str
    model: str | None
    worker_name: str | None
    worker_id: str | None
    censored: bool
    data: bytes = field(repr=False)

    @property
    def extension(self) -> str:
        for magic, offset, extension in _MAGIC_EXTENSIONS:
            if self.data[offset : offset + len(magic)] == magic:
                return extension
        return "webp"

    def filename(self, stem: str = "horde") -> str:
        """A Discord-safe, per-job unique file name such as ``horde_2_1234567.webp``."""
        seed = _UNSAFE_FILENAME_CHARS.sub("", self.seed)[:24]
        suffix = f"_{seed}" if seed else ""
        return f"{stem}_{self.index + 1}{suffix}.{self.extension}"

    def summary(self) -> dict[str, Any]:
        """What the journal keeps of this image (never the bytes)."""
        return {
            "id": self.generation_id,
            "index": self.index,
            "seed": self.seed,
            "model": self.model,
            "worker_name": self.worker_name,
            "worker_id": self.worker_id,
            "censored": self.censored,
        }


class CancelReason(StrEnum):
    USER = "user"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    MESSAGE_GONE = "message_gone"
    NO_WORKER = "no_worker"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended. ``error`` (user-safe) says why it failed or was cancelled; ``notes`` are
    user-safe remarks on a job that otherwise went fine (an image that could not be downloaded).
    ``images`` holds every image that was delivered, also for a cancelled or failed job."""

    state: JobState
    images: tuple[DeliveredImage, ...]
    kudos: float
    workers: tuple[str, ...]
    error: str | None
    faulted: bool = False
    cancel_reason: CancelReason | None = None
    notes: tuple[str, ...] = ()


class JobListener(Protocol):
    """The Discord side of one job (it edits the job's message). Exceptions are logged and
    ignored, except :class:`JobAbandoned`, which cancels the job. ``on_finished`` returning means
    the end was shown (journalled as delivered); it raises :class:`DeliveryDeferred` to be called
    again later and :class:`DeliveryFailed` (or :class:`JobAbandoned`) when it never can be."""

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None: ...

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None: ...

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None: ...


class JobAbandoned(Exception):
    """Raised by a listener whose message is gone (Discord 404 Unknown Message): nobody can see
    this job any more, so it is cancelled on the Horde."""


class DeliveryDeferred(Exception):
    """Raised by a listener's ``on_finished`` that could not show the end within its deadline
    (Discord kept failing or rate-limiting): the delivery stays journalled as pending and is tried
    again later, in this process or after a restart. Never a reason to drop the result."""


class DeliveryFailed(Exception):
    """Raised by a listener's ``on_finished`` when the end can never be shown (``str(exc)`` says
    why, for the journal); the member was told where that was possible."""


class JobsShuttingDownError(BotError):
    default_message = (
        "The bot is restarting, so it can't start new generations. Please try again in a minute."
    )


@dataclass(frozen=True, slots=True)
class ActiveJob:
    """A running job as the UI may show it."""

    record: JobRecord
    progress: JobProgress | None
    images_delivered: int
    cancel_reason: CancelReason | None

    @property
    def cancelling(self) -> bool:
        return self.cancel_reason is not None
