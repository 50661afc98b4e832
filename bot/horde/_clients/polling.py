"""When to poll next, with no HTTP in sight (the loop that polls is the scheduler's)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from bot.horde._clients.wakeup import sleep_or_until_set

if TYPE_CHECKING:
    from bot.horde._clients.estimate import QueueEstimate

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """When to look at a generation again, from what the Horde says about it.

    Designed on the real Horde's semantics (AI-Horde 5.1.5: ``waiting_prompt.get_status``):

    * *Unlisted*: just submitted, the request is not in the queue the Horde recomputes each
      second, so ``queue_position`` and ``wait_time`` are 0 with ``waiting`` > 0. The first poll
      after a submission comes at least ``first_poll_delay`` later, and later still when the
      session's requests wait long before a worker takes them (at most ``max_interval``; see
      :class:`~bot.horde._clients.estimate.QueueEstimate`); an unlisted answer is asked again
      after ``min_interval``.
    * *Queued* (``waiting`` > 0, ``queue_position`` ≥ 1): ``wait_time`` is a rough estimate from
      the workers' average speed, not from what happens. The next poll is aimed just after the
      moment the workers reach this request: ``queue_position / drain_rate * (1 + pop_fraction)
      + pop_margin``, where the drain rate (positions a second) is measured from the session's
      own polls (:class:`~bot.horde._clients.estimate.QueueEstimate`); late rather than early,
      because a poll that finds the request still queued costs a call, one that comes a little
      after the pop only shortens the countdown it reads. Without a rate yet: ``wait_time *
      wait_fraction``, at most ``probe_interval``, so that the next answer measures one.
    * *On a worker* (``processing`` > 0, nothing waiting): ``wait_time`` is the worker's own
      countdown from its average speed, rounded to whole seconds, so a job may end a little
      before or after it, the more so the longer it runs. The next poll is aimed just past its
      end, ``left * (1 + end_fraction) + end_margin`` with ``left = wait_time *
      processing_wait_fraction`` (the fraction is 1 but for tests whose estimates come in other
      units); that poll is expected to find the request done, so an image request fetches its
      ``status`` straight away (:attr:`ProgressDelay.expect_final`), which saves the separate
      fetch after a ``check``. A countdown longer than ``processing_max_interval`` is looked at
      again after that.
    * *Overdue* (on a worker, ``wait_time`` 0): after ``min_interval``, backing off by
      ``overdue_backoff`` per further poll up to ``overdue_max_interval``; the first
      ``final_status_polls`` polls expecting the end fetch the status, the later ones a ``check``
      (``generate/status`` allows 10 a minute per request).

    Every delay ends up within ``[min_interval, max_interval]``: ``max_interval`` (15 s) keeps a
    progress message fresh for people, ``min_interval`` (1 s) matches the Horde's one-second
    cache of ``generate/check``. Without any estimate (alchemy) ``unknown_wait_interval`` is
    used. The rate limiter keeps every endpoint's budget whatever the policy says. With
    ``is_possible`` false no worker can serve the request: it is looked at every
    ``max_interval``.

    A poll of an accepted request that fails transiently (a 5xx, no answer, a 429, an answer
    that is not the Horde's; see :attr:`AIHordeRequestError.is_transient
    <bot.horde.errors.AIHordeRequestError.is_transient>`) does not end the generation: the
    Horde most likely goes on with it, and its kudos are spent. It is polled again after
    ``min_interval``, doubling (``error_backoff``) per further failure in a row up to
    ``max_interval``, until the failures have lasted ``error_grace_s`` seconds (counted from
    the end of the first one); the failure after that is raised. Any answer resets the count.
    The grace is in time rather than failures because one failed poll may take milliseconds
    (a 500) or minutes (the transport's retries, each under a request timeout): two minutes
    without an answer is long past a blip, yet short next to a generation's life, and with the
    default backoff (1, 2, 4, 8, 15, 15 … s) it is about ten more polls. ``0`` turns the
    tolerance off.
    """

    min_interval: float = 1.0
    max_interval: float = 15.0
    wait_fraction: float = 0.5
    processing_max_interval: float = 15.0
    processing_wait_fraction: float = 1.0
    unknown_wait_interval: float = 1.0
    first_poll_delay: float = 2.5
    pop_margin: float = 0.5
    pop_fraction: float = 0.1
    probe_interval: float = 4.0
    end_margin: float = 0.3
    end_fraction: float = 0.06
    final_status_polls: int = 3
    overdue_backoff: float = 1.5
    overdue_max_interval: float = 4.0
    error_grace_s: float = 120.0
    error_backoff: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.overdue_backoff < 1 or self.error_backoff < 1:
            raise ValueError("overdue_backoff and error_backoff must be at least 1")
        if min(self.error_grace_s, self.first_poll_delay, self.final_status_polls) < 0:
            raise ValueError("error_grace_s, first_poll_delay and final_status_polls must not be negative")
        if min(self.pop_margin, self.pop_fraction, self.end_margin, self.end_fraction) < 0:
            raise ValueError("the pop and end margins and fractions must not be negative")

    @property
    def first_delay(self) -> float:
        """The wait before the first poll after a submission (never above ``max_interval``)."""
        return min(self.first_poll_delay, self.max_interval)

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
        waiting: int | None = None,
        overdue_polls: int = 0,
        drain_rate: float | None = None,
        is_possible: bool = True,
    ) -> float:
        """The seconds until the next poll (see the class docstring for the phases)."""
        if wait_time is None:
            delay = self.unknown_wait_interval
        elif not is_possible:
            delay = self.max_interval
        elif phase(queue_position, processing, waiting) is Phase.WITH_WORKER:
            if wait_time > 0:
                delay = min(self._aim_at_end(wait_time), self.processing_max_interval)
            else:
                backoff = self.min_interval * self.overdue_backoff ** max(0, overdue_polls)
                delay = min(backoff, self.overdue_max_interval)
        elif phase(queue_position, processing, waiting) is Phase.QUEUED:
            assert queue_position is not None
            if drain_rate:
                delay = queue_position / drain_rate * (1 + self.pop_fraction) + self.pop_margin
            else:
                delay = min(max(0.0, wait_time) * self.wait_fraction, self.probe_interval)
        elif phase(queue_position, processing, waiting) is Phase.UNLISTED:
            delay = self.min_interval
        else:
            delay = max(0.0, wait_time) * self.wait_fraction
        return min(max(delay, self.min_interval), self.max_interval)

    def expects_final(self, wait_time: int, *, queue_position: int, processing: int, waiting: int) -> bool:
        """Whether the poll after this answer is aimed at the end of the generation."""
        if phase(queue_position, processing, waiting) is not Phase.WITH_WORKER:
            return False
        return wait_time <= 0 or self._aim_at_end(wait_time) <= self.processing_max_interval

    def _aim_at_end(self, wait_time: float) -> float:
        return wait_time * self.processing_wait_fraction * (1 + self.end_fraction) + self.end_margin


class Phase(enum.Enum):
    UNLISTED = "unlisted"
    QUEUED = "queued"
    WITH_WORKER = "with_worker"
    OTHER = "other"


def phase(queue_position: int | None, processing: int, waiting: int | None) -> Phase:
    """Where a request stands, from a check's counts (``waiting`` ``None``: not given)."""
    if queue_position is not None and queue_position > 0 and waiting != 0:
        return Phase.QUEUED
    if processing > 0 and not waiting and queue_position == 0:
        return Phase.WITH_WORKER
    if waiting and waiting > 0 and queue_position == 0 and processing == 0:
        return Phase.UNLISTED
    return Phase.OTHER


class Progress(Protocol):
    """What :class:`ProgressDelay` reads from a check or status response."""

    @property
    def wait_time(self) -> int: ...
    @property
    def queue_position(self) -> int: ...
    @property
    def processing(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def is_possible(self) -> bool: ...


class ProgressDelay:
    """The policy's delays for one generation.

    Counts the overdue polls in a row, feeds the session's :class:`QueueEstimate` with this
    request's queue positions (under ``queue_key``) and reads its drain rate back, and says
    whether the next poll is aimed at the end (:attr:`expect_final`). ``clock`` must be the
    clock the scheduler runs on.
    """

    __slots__ = (
        "_clock",
        "_estimate",
        "_last_queued",
        "expect_final",
        "final_polls",
        "first_after_submit",
        "overdue_polls",
        "policy",
        "queue_key",
    )

    def __init__(
        self,
        policy: PollPolicy,
        *,
        estimate: QueueEstimate | None = None,
        queue_key: Hashable = None,
        clock: Callable[[], float] | None = None,
        first_after_submit: bool = False,
    ) -> None:
        self.policy = policy
        self._estimate = estimate
        self.queue_key = queue_key
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._last_queued: tuple[int, float] | None = None
        self.overdue_polls = 0
        self.expect_final = False
        self.final_polls = 0
        self.first_after_submit = first_after_submit
        """The next answer is the first after a submission: it steers the next first poll."""

    def first_delay(self) -> float:
        """When to look first at the request just submitted (see :class:`QueueEstimate`)."""
        least, most = self.policy.first_delay, self.policy.max_interval
        if self._estimate is None:
            return least
        return self._estimate.first_poll_delay(self.queue_key, least=least, most=most)

    @property
    def fetch_final(self) -> bool:
        """Whether the next poll should fetch the final status rather than a check: it is aimed
        at the end, and the status polls the policy allows are not used up."""
        return self.expect_final and self.final_polls < self.policy.final_status_polls

    def __call__(self, progress: Progress) -> float:
        where = phase(progress.queue_position, progress.processing, progress.waiting)
        if self.first_after_submit and self._estimate is not None:
            self.first_after_submit = False
            self._estimate.first_poll_was(
                self.queue_key,
                early=where in (Phase.QUEUED, Phase.UNLISTED),
                least=self.policy.first_delay,
                most=self.policy.max_interval,
            )
        rate = None
        if where is Phase.QUEUED and self._estimate is not None:
            now = self._clock()
            here = (progress.queue_position, now)
            if self._last_queued is not None:
                self._estimate.observe(self.queue_key, self._last_queued, here)
            rate = self._estimate.rate(self.queue_key, now)
            self._last_queued = here
        elif where is Phase.WITH_WORKER:
            if self._estimate is not None and self._last_queued is not None:
                self._estimate.observe(self.queue_key, self._last_queued, (0, self._clock()))
            self._last_queued = None
        delay = self.policy.next_delay(
            progress.wait_time,
            queue_position=progress.queue_position,
            processing=progress.processing,
            waiting=progress.waiting,
            overdue_polls=self.overdue_polls,
            drain_rate=rate,
            is_possible=progress.is_possible,
        )
        overdue = where is Phase.WITH_WORKER and progress.wait_time <= 0
        self.overdue_polls = self.overdue_polls + 1 if overdue else 0
        self.expect_final = progress.is_possible and self.policy.expects_final(
            progress.wait_time,
            queue_position=progress.queue_position,
            processing=progress.processing,
            waiting=progress.waiting,
        )
        return delay

    def fetched_final(self) -> None:
        """A status was fetched in place of a check (and the request was not done yet)."""
        self.final_polls += 1


class PollEnd(enum.Enum):
    FINAL = "final"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class PollOutcome(Generic[S]):
    end: PollEnd
    last: S | None


async def pause(delay: float, cancel_event: asyncio.Event | None) -> None:
    """Sleep ``delay`` seconds, waking early when ``cancel_event`` is set."""
    await sleep_or_until_set(delay, cancel_event)


DEFAULT_POLL_POLICY = PollPolicy()
