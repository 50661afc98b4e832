"""When to poll next, and the poll loop itself, with no HTTP in sight."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The next poll follows the Horde's own estimate instead of a fixed sleep.

    ``delay = clamp(wait_time * wait_fraction, min_interval, max_interval)``; once every job is
    with a worker (``queue_position == 0`` and ``processing > 0``) the delay is further capped
    at ``processing_max_interval`` because the estimate then only covers the generation itself.
    Without an estimate (alchemy) ``unknown_wait_interval`` is used. ``min_interval`` of one
    second matches the server's 1 s cache on ``generate/check``; the rate limiter keeps the
    per-endpoint budgets (e.g. 60/min for text status) whatever the policy says.
    """

    min_interval: float = 1.0
    max_interval: float = 15.0
    wait_fraction: float = 0.5
    processing_max_interval: float = 3.0
    unknown_wait_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")

    def next_delay(
        self, wait_time: float | None, *, queue_position: int | None = None, processing: int = 0
    ) -> float:
        delay = self.unknown_wait_interval if wait_time is None else max(0.0, wait_time) * self.wait_fraction
        if queue_position == 0 and processing > 0:
            delay = min(delay, self.processing_max_interval)
        return min(max(delay, self.min_interval), self.max_interval)


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
) -> PollOutcome[S]:
    """Fetch until ``is_final``, ``cancel_event`` is set, or ``time_limit`` seconds pass.

    After the deadline one more fetch is made, so a job finishing right at the end still counts.
    """
    now = clock or asyncio.get_running_loop().time
    deadline = now() + time_limit
    last: S | None = None
    while True:
        if cancel_event is not None and cancel_event.is_set():
            return PollOutcome(PollEnd.CANCELLED, last)
        last = await fetch()
        if progress_callback is not None:
            await progress_callback(last)
        if is_final(last):
            return PollOutcome(PollEnd.FINAL, last)
        remaining = deadline - now()
        if remaining <= 0:
            return PollOutcome(PollEnd.TIMED_OUT, last)
        await pause(min(next_delay(last), remaining), cancel_event)


async def pause(delay: float, cancel_event: asyncio.Event | None) -> None:
    """Sleep ``delay`` seconds, waking early when ``cancel_event`` is set."""
    if cancel_event is None:
        await asyncio.sleep(delay)
        return
    try:
        async with asyncio.timeout(delay):
            await cancel_event.wait()
    except TimeoutError:
        pass


DEFAULT_POLL_POLICY = PollPolicy()
