"""Picking the journal up after a restart: unfinished jobs followed again, unshown ends shown again."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from bot.services.jobs import messages
from bot.services.jobs.ends import recovered_outcome
from bot.services.jobs.kinds import JobKindHandler
from bot.services.jobs.models import (
    CancelReason,
    DeliveredImage,
    DeliveryFailed,
    JobAbandoned,
    JobListener,
    JobOutcome,
    JobProgress,
)
from bot.services.jobs.running import JobRunner, RunningJob
from bot.storage import JobKind, JobRecord, JobState

log = logging.getLogger(__name__)

ListenerFactory = Callable[[JobRecord], JobListener | Awaitable[JobListener]]

RESUME_MIN_TIMEOUT_S: Final = 60.0
"""A resumed job gets what is left of its time limit, but at least this long to be collected."""


class _SilentListener:
    """For a resumed job whose listener could not be built: it is cancelled, nobody to tell."""

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        return None

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        raise DeliveryFailed("its message could not be found after a restart")


class Resumption:
    """What :meth:`~bot.services.jobs.JobManager.resume_unfinished` does with the journal's rows."""

    def __init__(
        self,
        runner: JobRunner,
        kinds: Mapping[JobKind, JobKindHandler],
        factories: Mapping[JobKind, ListenerFactory],
        *,
        timeout_s: float,
        accepting: Callable[[], bool],
    ) -> None:
        self._runner = runner
        self._kinds = kinds
        self._factories = factories
        self._timeout_s = timeout_s
        self._accepting = accepting

    async def resume(self, records: Sequence[JobRecord], fallback: ListenerFactory | None) -> int:
        """Follow ``records`` again (see ``resume_unfinished``); returns how many."""
        resumed = 0
        skipped: set[JobKind] = set()
        for record in records:
            if not self._accepting():  # shutdown began meanwhile: leave the rest for the next start
                break
            if record.id in self._runner.jobs:
                continue
            factory = self._factories.get(record.kind, fallback)
            if factory is None:
                skipped.add(record.kind)
                continue
            listener, reachable = await _listener_for(record, factory)
            if record.state.is_terminal:  # ended, but its end was not shown
                self._redeliver(record, listener)
                resumed += 1
                continue
            handler = self._kinds.get(record.kind)
            if record.state is JobState.PENDING or record.horde_id is None:
                await self._end_unstarted(record, listener, messages.RESTARTED_BEFORE_ACCEPTED)
                continue
            if handler is None:
                await self._end_unstarted(record, listener, messages.CANNOT_RESUME)
                continue
            job = RunningJob(
                record,
                listener,
                n=handler.expected_results(json.loads(record.request_json)),
                timeout_s=self._resume_timeout(record),
            )
            if not reachable:
                job.request_cancel(CancelReason.MESSAGE_GONE)
            self._runner.launch(job, handler.resume)
            resumed += 1
        if skipped:
            log.warning(
                "Unfinished %s job(s) left in the journal: no listener for them (extension not loaded?)",
                "/".join(sorted(skipped)),
            )
        if resumed:
            log.info("Resumed %d unfinished job(s)", resumed)
        return resumed

    def _redeliver(self, record: JobRecord, listener: JobListener) -> None:
        """Show the end of a job that ended before a restart but was not shown (see ``ends.py``)."""
        handler = self._kinds.get(record.kind)
        n = handler.expected_results(json.loads(record.request_json)) if handler is not None else 0
        job = RunningJob(record, listener, n=n, timeout_s=self._timeout_s)
        ctx = self._runner.context(job)

        async def outcome() -> JobOutcome:
            run = handler.resume(ctx) if handler is not None else None
            job.outcome = await recovered_outcome(run, record, now=self._runner.clock())
            return job.outcome

        async def deliver() -> None:
            await self._runner.ends.deliver(job.id, listener, lambda: job.record, outcome)

        # Already ended: never "active"; the real outcome comes with the images (outcome()).
        job.outcome = JobOutcome(
            state=record.state, images=(), kudos=record.kudos or 0.0, workers=(), error=record.error
        )
        job.journalled = True
        self._runner.spawn(job, deliver(), f"horde-job-{job.id}-delivery")

    async def _end_unstarted(self, record: JobRecord, listener: JobListener, error: str) -> None:
        ended = await self._runner.journal(record.id, JobState.FAILED, error=error)
        outcome = JobOutcome(state=JobState.FAILED, images=(), kudos=0.0, workers=(), error=error)
        job = RunningJob(ended or record, listener, n=0, timeout_s=self._timeout_s)
        job.outcome = outcome
        await self._runner.ends.deliver(job.id, listener, lambda: job.record, outcome)

    def _resume_timeout(self, record: JobRecord) -> float:
        remaining = self._timeout_s - self._runner.elapsed(record)
        return max(remaining, min(self._timeout_s, RESUME_MIN_TIMEOUT_S))


async def _listener_for(record: JobRecord, factory: ListenerFactory) -> tuple[JobListener, bool]:
    try:
        made = factory(record)
        listener = await made if inspect.isawaitable(made) else made
    except JobAbandoned:
        return _SilentListener(), False
    except Exception:
        log.exception("Job %s: could not rebuild its listener", record.id)
        return _SilentListener(), False
    return listener, True
