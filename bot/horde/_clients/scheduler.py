"""One poller for every generation in flight, instead of a sleeping loop per generation.

A busy bot follows hundreds of generations at once. :class:`PollScheduler` keeps them in one
heap ordered by when each is next due; a single runner task sleeps until the earliest one,
then starts its fetch as a short task, and each caller is woken once, when its generation is
finished, cancelled or timed out.

Spreading: fetches start at most ``max_rate`` per second, with bursts of up to ``burst`` (a
token bucket), and at most ``max_in_flight`` run at once. A handful of jobs is polled exactly
when due; a herd (a thousand jobs submitted or resumed together) is spread out instead of
reaching the Horde in the same instant. Delays themselves are not jittered: they follow each
job's own ``wait_time``, which already differs from job to job.

Failures: a fetch that raises fails its caller, unless the caller's ``error_delay`` returns a
delay for it: then the job is fetched again after that delay, keeping its last good answer,
and a later answer resets the count (see :meth:`PollScheduler.poll`).

Budgets: a job has at most one fetch in flight and is never fetched twice within its
``min_gap``, whatever ``next_delay`` says. The transport's rate limiter still enforces every
endpoint's budget on top (check 10/s and status 10/min per id, async 2/s per key and IP).

Waiting callers are parked in :func:`~bot.horde._clients.polling.pause` until their deadline
(a watchdog, and how ``cancel_event`` is heard at once); resolving a job ends that pause. So
every wait is a sleep on a timer, which test harnesses with virtual time (SimCord) recognise as
idle: the runner's too, between due times and while every fetch slot is busy (a
:class:`~bot.horde._clients.wakeup.Wakeup`, whose ``wait`` sleeps). A bare ``Event.wait()``
there would look busy to them for as long as the fetches wait, e.g. in the rate limiter.

The runner task exists only while something is scheduled; :meth:`close` cancels the fetches in
flight and fails the callers still waiting with :class:`PollSchedulerClosedError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot.horde._clients import polling
from bot.horde._clients.polling import PollEnd, PollOutcome
from bot.horde._clients.wakeup import Wakeup
from bot.horde.errors import AIHordeError

S = TypeVar("S")

ErrorDelay = Callable[[Exception, int, float], float | None]
"""``(exc, failures, failing_for) -> delay or None``: see :meth:`PollScheduler.poll`."""

DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_MAX_RATE = 200.0
DEFAULT_BURST = 100
# A caller whose deadline passed while its last fetch is still queued or running looks again this often.
_PARK_SLACK = 5.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PollSchedulerClosedError(AIHordeError):
    """The scheduler (the client session owning it) was closed while a generation was followed."""


@dataclass(eq=False, slots=True)
class _Job(Generic[S]):
    fetch: Callable[[], Awaitable[S]]
    is_final: Callable[[S], bool]
    next_delay: Callable[[S], float]
    progress_callback: Callable[[S], Awaitable[object]] | None
    error_delay: ErrorDelay | None
    deadline: float
    min_gap: float
    future: asyncio.Future[PollOutcome[S]]
    context: contextvars.Context
    last: S | None = None
    last_fetch: float = float("-inf")
    failures: int = 0
    """Fetches in a row that raised, and when the first of them ended."""
    failing_since: float = 0.0
    check: asyncio.Task[None] | None = field(default=None, repr=False)
    park: asyncio.Future[None] | None = field(default=None, repr=False)
    stop_requested: bool = False

    def resolve(self, end: PollEnd) -> None:
        if not self.future.done():
            self.future.set_result(PollOutcome(end, self.last))
            self.wake()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.wake()

    def stop(self) -> None:
        """``cancel_event`` was set: end now, or right after the fetch that is running."""
        self.stop_requested = True
        if self.check is None:
            self.resolve(PollEnd.CANCELLED)

    def wake(self) -> None:
        if self.park is not None:
            self.park.cancel()


class _TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0: take it now)."""
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        self._tokens -= 1


class PollScheduler:
    """Polls many generations from one task; see the module docstring.

    ``clock`` (default: the event loop's) must run at the pace of real time: the runner sleeps
    for ``due - clock()``.
    """

    def __init__(
        self,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_rate: float = DEFAULT_MAX_RATE,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_in_flight < 1 or burst < 1 or max_rate <= 0:
            raise ValueError("max_in_flight and burst must be at least 1, max_rate positive")
        self.max_in_flight = max_in_flight
        self._bucket = _TokenBucket(max_rate, burst)
        self._clock = clock
        self._heap: list[tuple[float, int, _Job[Any]]] = []
        self._order = itertools.count()
        self._jobs: set[_Job[Any]] = set()
        self._checks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._wake = Wakeup()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(jobs={len(self._jobs)}, in_flight={self._in_flight})"

    def __len__(self) -> int:
        """Generations being followed."""
        return len(self._jobs)

    @property
    def max_rate(self) -> float:
        return self._bucket.rate

    @property
    def in_flight(self) -> int:
        """Fetches running right now."""
        return self._in_flight

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The runner and the fetches alive right now (none once idle or closed)."""
        runner = () if self._runner is None or self._runner.done() else (self._runner,)
        return (*runner, *self._checks)

    async def poll(
        self,
        fetch: Callable[[], Awaitable[S]],
        *,
        is_final: Callable[[S], bool],
        next_delay: Callable[[S], float],
        time_limit: float,
        progress_callback: Callable[[S], Awaitable[object]] | None = None,
        cancel_event: asyncio.Event | None = None,
        min_gap: float = 0.0,
        error_delay: ErrorDelay | None = None,
        first_delay: float = 0.0,
    ) -> PollOutcome[S]:
        """Fetch after ``first_delay`` (default: now) and then after every ``next_delay``, until
        ``is_final``, ``cancel_event`` is set, or ``time_limit`` seconds pass.

        ``progress_callback`` is awaited after every fetch, and an exception from it or from
        ``fetch`` is raised here. A set ``cancel_event`` is noticed at once, but a fetch already
        running is finished (callback included) first, so nothing it delivered is lost. After
        the deadline one more fetch is made. Cancelling the caller cancels its fetch.

        ``error_delay(exc, failures, failing_for)`` is asked when ``fetch`` raised ``exc`` (not
        when the callback did), with the fetches in a row that raised (this one included) and
        the seconds since the first of them ended. A delay means: fetch again after it (no
        callback, the outcome keeps the last answer); ``None`` (or no ``error_delay``) raises
        ``exc`` here. A cancel or the deadline during such failures ends the poll as usual.
        """
        if self._closed:
            raise PollSchedulerClosedError("the poll scheduler is closed")
        if cancel_event is not None and cancel_event.is_set():
            return PollOutcome(PollEnd.CANCELLED, None)
        now = self.now()
        job: _Job[S] = _Job(
            fetch=fetch,
            is_final=is_final,
            next_delay=next_delay,
            progress_callback=progress_callback,
            error_delay=error_delay,
            deadline=now + time_limit,
            min_gap=min_gap,
            future=asyncio.get_running_loop().create_future(),
            context=contextvars.copy_context(),
        )
        self._jobs.add(job)
        self._push(job, min(now + max(0.0, first_delay), job.deadline))
        try:
            while not job.future.done():
                if cancel_event is not None and cancel_event.is_set():
                    job.stop()
                    if job.check is not None:
                        await asyncio.wait((job.check,))
                    continue
                await self._park(job, cancel_event)
            return job.future.result()
        finally:
            self._forget(job)

    async def close(self) -> None:
        """Stop polling: the callers still waiting get :class:`PollSchedulerClosedError`."""
        self._closed = True
        for job in self._jobs:
            job.fail(PollSchedulerClosedError("the AI Horde client session was closed"))
        self._heap.clear()
        tasks = self.tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def now(self) -> float:
        """The clock the scheduler runs on (the event loop's unless one was given)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # -- internals -----------------------------------------------------------------------

    async def _park(self, job: _Job[Any], cancel_event: asyncio.Event | None) -> None:
        """Until the job is resolved, ``cancel_event`` is set, or the deadline (plus slack) passes."""
        timeout = max(0.0, job.deadline - self.now()) + _PARK_SLACK
        if cancel_event is None:
            await self._park_on_timer(job, timeout)
            return
        park = asyncio.ensure_future(polling.pause(timeout, cancel_event))
        job.park = park
        try:
            await asyncio.wait((park,))
        finally:
            job.park = None
            park.cancel()

    async def _park_on_timer(self, job: _Job[Any], seconds: float) -> None:
        """The park without a ``cancel_event`` to hear: the caller's own task waits on a future a
        timer resolves, as ``asyncio.sleep`` does (so it looks idle to virtual-time harnesses),
        without a task of its own; resolving the job cancels that future."""
        loop = asyncio.get_running_loop()
        park: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, park)
        job.park = park
        try:
            await park
        except asyncio.CancelledError:
            # A cancelled park is the job waking its caller; a cancelled caller must still see it.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            job.park = None
            timer.cancel()

    def _forget(self, job: _Job[Any]) -> None:
        self._jobs.discard(job)
        if not job.future.done():
            job.future.cancel()
        elif not job.future.cancelled():
            job.future.exception()  # seen, even when the caller left before reading it
        if job.check is not None:
            job.check.cancel()

    def _push(self, job: _Job[Any], due: float) -> None:
        if self._closed or job.future.done():
            return
        heapq.heappush(self._heap, (due, next(self._order), job))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="horde-poll-scheduler")
        elif self._heap[0][2] is job:
            self._wake.set()

    async def _run(self) -> None:
        heap = self._heap
        while True:
            while heap and heap[0][2].future.done():
                heapq.heappop(heap)
            if not heap:
                return
            now = self.now()
            delay = max(heap[0][0] - now, self._bucket.wait(now))
            if delay > 0:
                self._wake.clear()
                await polling.pause(delay, self._wake)
                continue
            if self._in_flight >= self.max_in_flight:
                self._wake.clear()
                await self._wake.wait()  # until _release_slot(); parked on a timer, not a bare future
                continue
            _, _, job = heapq.heappop(heap)
            self._bucket.take()
            self._start_check(job)

    def _start_check(self, job: _Job[Any]) -> None:
        self._in_flight += 1
        job.last_fetch = self.now()
        task = asyncio.create_task(self._check(job), context=job.context)
        job.check = task
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _release_slot(self) -> None:
        self._in_flight -= 1
        if self._in_flight == self.max_in_flight - 1:
            self._wake.set()

    async def _check(self, job: _Job[S]) -> None:
        try:
            try:
                result = await job.fetch()
            except Exception as exc:
                self._after_failure(job, exc)
                return
            finally:
                self._release_slot()
            job.last, job.failures = result, 0
            if job.progress_callback is not None:
                await job.progress_callback(result)
            if job.is_final(result):
                job.resolve(PollEnd.FINAL)
            elif job.stop_requested:
                job.resolve(PollEnd.CANCELLED)
            elif self.now() >= job.deadline:
                job.resolve(PollEnd.TIMED_OUT)
            else:
                self._push(job, self._next_due(job, job.next_delay(result)))
        except Exception as exc:
            job.fail(exc)
        finally:
            job.check = None

    def _after_failure(self, job: _Job[Any], exc: Exception) -> None:
        """Fetch again after the caller's ``error_delay``, or raise ``exc`` (see :meth:`poll`)."""
        now = self.now()
        job.failures += 1
        if job.failures == 1:
            job.failing_since = now
        failing_for = now - job.failing_since
        delay = None if job.error_delay is None else job.error_delay(exc, job.failures, failing_for)
        if delay is None:
            raise exc
        if job.stop_requested:
            job.resolve(PollEnd.CANCELLED)
        elif now >= job.deadline:
            job.resolve(PollEnd.TIMED_OUT)
        else:
            self._push(job, self._next_due(job, delay))

    def _next_due(self, job: _Job[Any], delay: float) -> float:
        due = min(self.now() + max(0.0, delay), job.deadline)
        return max(due, job.last_fetch + job.min_gap)


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
    :class:`PollScheduler`), else on a private one;
    ``error_delay`` is :meth:`PollScheduler.poll`'s.
    """
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
