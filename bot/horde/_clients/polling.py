"""When to poll next, and the poll loop itself, with no HTTP in sight."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from bot.horde._clients.wakeup import sleep_or_until_set

if TYPE_CHECKING:
    from bot.horde._clients.scheduler import PollScheduler

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The next poll follows the Horde's own estimate instead of a fixed sleep.

    While some job still waits in the queue, ``delay = wait_time * wait_fraction``: the queue
    estimate is rough, and a worker may pick the job up early. Once every job is with a worker
    (``queue_position == 0`` and ``processing > 0``), ``wait_time`` is the worker's own estimate
    of the time left, so the next poll is aimed at that moment
    (``wait_time * processing_wait_fraction``, at most ``processing_max_interval``). A job still
    running when its estimate ran out (``wait_time == 0``) is *overdue*: it is polled after
    ``min_interval``, backing off by ``overdue_backoff`` per further overdue poll up to
    ``overdue_max_interval``. Without an estimate (alchemy) ``unknown_wait_interval`` is used.
    Every delay ends up within ``[min_interval, max_interval]``; ``min_interval`` of one second
    matches the server's 1 s cache on ``generate/check``, and the rate limiter keeps the
    per-endpoint budgets (e.g. 60/min for text status) whatever the policy says.

    A poll of an accepted request that fails transiently (a 5xx, no answer, a 429, an answer
    that is not the Horde's; see :attr:`AIHordeRequestError.is_transient
    <bot.horde.errors.AIHordeRequestError.is_transient>`) does not end the generation: the
    Horde most likely goes on with it, and its kudos are spent. It is polled again after
    ``min_interval``, doubling (``error_backoff``) per further failure in a row up to
    ``max_interval``, until the failures have lasted ``error_grace_s`` seconds (counted from
    the end of the first one); the failure after that is raised. Any answer resets the count.
    The grace is in time rather than failures because one failed poll may take milliseconds
    (a 500) or minutes (the transport's four attempts, each under a request timeout): two
    minutes without an answer is long past a blip, yet short next to a generation's life, and
    with the default backoff (1, 2, 4, 8, 15, 15 … s) it is about ten more polls. ``0`` turns
    the tolerance off.
    """

    min_interval: float = 1.0
    max_interval: float = 15.0
    wait_fraction: float = 0.5
    processing_max_interval: float = 15.0
    unknown_wait_interval: float = 1.0
    processing_wait_fraction: float = 1.0
    overdue_backoff: float = 1.5
    overdue_max_interval: float = 4.0
    error_grace_s: float = 120.0
    error_backoff: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.overdue_backoff < 1 or self.error_backoff < 1:
            raise ValueError("overdue_backoff and error_backoff must be at least 1")
        if self.error_grace_s < 0:
            raise ValueError("error_grace_s must not be negative")

    def error_delay(self, failures: int, failing_for: float) -> float | None:
        """The delay before polling again after ``failures`` transient failures in a row, the
        first of them ``failing_for`` seconds ago; ``None`` once the grace is used up."""
        if failing_for >= self.error_grace_s:
            return None
        backoff = self.min_interval * self.error_backoff ** max(0, failures - 1)
        return min(backoff, self.max_interval)

    def next_delay(
        self,
        wait_time: float | None,
        *,
        queue_position: int | None = None,
        processing: int = 0,
        overdue_polls: int = 0,
    ) -> float:
        if wait_time is None:
            delay = self.unknown_wait_interval
        elif queue_position == 0 and processing > 0:
            if wait_time > 0:
                delay = min(wait_time * self.processing_wait_fraction, self.processing_max_interval)
            else:
                backoff = self.min_interval * self.overdue_backoff ** max(0, overdue_polls)
                delay = min(backoff, self.overdue_max_interval)
        else:
            delay = max(0.0, wait_time) * self.wait_fraction
        return min(max(delay, self.min_interval), self.max_interval)


class Progress(Protocol):
    """What :class:`ProgressDelay` reads from a check or status response."""

    @property
    def wait_time(self) -> int: ...
    @property
    def queue_position(self) -> int: ...
    @property
    def processing(self) -> int: ...


class ProgressDelay:
    """The policy's delays for one generation, counting the polls in a row that found it overdue."""

    __slots__ = ("overdue_polls", "policy")

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.overdue_polls = 0

    def __call__(self, progress: Progress) -> float:
        delay = self.policy.next_delay(
            progress.wait_time,
            queue_position=progress.queue_position,
            processing=progress.processing,
            overdue_polls=self.overdue_polls,
        )
        overdue = progress.queue_position == 0 and progress.processing > 0 and progress.wait_time <= 0
        self.overdue_polls = self.overdue_polls + 1 if overdue else 0
        return delay


class PollEnd(enum.Enum):
    FINAL = "final"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class PollOutcome(Generic[S]):
    end: PollEnd
    last: S | None


async def poll_until(
    fetch: Callable[[], Awaitable[S]],
    *,
    is_final: Callable[[S], bool],
    next_delay: Callable[[S], float],
    time_limit: float,
    progress_callback: Callable[[S], Awaitable[object]] | None = None,
    cancel_event: asyncio.Event | None = None,
    clock: Callable[[], float] | None = None,
    scheduler: PollScheduler | None = None,
    error_delay: Callable[[Exception, int, float], float | None] | None = None,
) -> PollOutcome[S]:
    """Fetch until ``is_final``, ``cancel_event`` is set, or ``time_limit`` seconds pass.

    The first fetch is made at once; after the deadline one more fetch is made, so a job
    finishing right at the end still counts. Runs on ``scheduler`` (see
    :class:`~bot.horde._clients.scheduler.PollScheduler`), else on a private one;
    ``error_delay`` is :meth:`PollScheduler.poll`'s.
    """
    from bot.horde._clients.scheduler import PollScheduler  # the scheduler imports this module

    runner = scheduler or PollScheduler(clock=clock)
    try:
        return await runner.poll(
            fetch,
            is_final=is_final,
            next_delay=next_delay,
            time_limit=time_limit,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
            error_delay=error_delay,
        )
    finally:
        if scheduler is None:
            await runner.close()


async def pause(delay: float, cancel_event: asyncio.Event | None) -> None:
    """Sleep ``delay`` seconds, waking early when ``cancel_event`` is set."""
    await sleep_or_until_set(delay, cancel_event)


DEFAULT_POLL_POLICY = PollPolicy()
