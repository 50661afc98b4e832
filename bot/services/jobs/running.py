"""Running jobs: one task per job, from the Horde's answers to a journalled end and its delivery."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from bot.horde import AIHordeAPIAsyncSimpleClient, AIHordeRequestError, BaseGenerationProgressResponse, Wakeup
from bot.services.jobs import messages
from bot.services.jobs.ends import EndDelivery
from bot.services.jobs.kinds import JobContext, JobRun, RunEnd
from bot.services.jobs.models import (
    ActiveJob,
    CancelReason,
    DeliveredImage,
    JobAbandoned,
    JobListener,
    JobOutcome,
    JobProgress,
)
from bot.services.jobs.turns import SubmitTurns
from bot.storage import DeliveryState, InvalidTransitionError, JobRecord, JobState, Storage

log = logging.getLogger(__name__)


class RunningJob:
    """One job the engine follows: its journal row, its listener and what it has seen so far."""

    def __init__(self, record: JobRecord, listener: JobListener, *, n: int, timeout_s: float) -> None:
        self.record = record
        self.listener = listener
        self.n = n
        self.timeout_s = timeout_s
        # A Wakeup, not a plain Event: the poll waits then sleep on timers (see bot.horde Wakeup).
        self.cancel_event = Wakeup()
        self.cancel_reason: CancelReason | None = None
        # Set while the job waits for its turn in the bot's queue (it has no task yet): a cancel
        # takes it out of the queue and starts it, to end at once.
        self.withdraw: Callable[[], None] | None = None
        self.started = Wakeup()  # set once the job has its task
        self.progress: JobProgress | None = None
        self.kudos = 0.0
        self.images_delivered = 0
        self.poll_started: float | None = None
        self.unserved_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.outcome: JobOutcome | None = None
        self.journalled = False
        # Shut down while the Horde still runs its request (the DELETE did not go through): left
        # unfinished in the journal, so the next start follows it and delivers its result.
        self.left_running = False

    @property
    def id(self) -> str:
        return self.record.id

    def request_cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_event.set()
        if self.withdraw is not None:
            self.withdraw()

    def snapshot(self) -> ActiveJob:
        return ActiveJob(
            record=self.record,
            progress=self.progress,
            images_delivered=self.images_delivered,
            cancel_reason=self.cancel_reason,
        )


class _JobContext:
    """The :class:`JobContext` a kind gets for one job."""

    def __init__(self, runner: JobRunner, job: RunningJob) -> None:
        self._runner = runner
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def horde_id(self) -> str | None:
        return self._job.record.horde_id

    @property
    def n(self) -> int:
        return self._job.n

    @property
    def horde(self) -> AIHordeAPIAsyncSimpleClient:
        return self._runner.horde

    @property
    def cancel_event(self) -> asyncio.Event:
        return self._job.cancel_event

    @property
    def timeout_s(self) -> float:
        return self._job.timeout_s

    async def submitted(self, horde_id: str) -> None:
        job = self._job
        job.record = await self._runner.storage.jobs.update(
            job.id, state=JobState.SUBMITTED, horde_id=horde_id
        )
        job.poll_started = asyncio.get_running_loop().time()

    async def progress(self, response: BaseGenerationProgressResponse) -> None:
        job = self._job
        progress = JobProgress.from_response(
            job.id, response, n=job.n, elapsed_s=self._runner.elapsed(job.record)
        )
        job.progress, job.kudos = progress, response.kudos
        self._runner.watch_unserved(job, progress)
        await self._runner.notify(job, "on_progress", lambda: job.listener.on_progress(job.record, progress))

    async def deliver_images(self, images: Sequence[DeliveredImage]) -> None:
        job = self._job
        job.images_delivered += len(images)
        await self._runner.notify(job, "on_images", lambda: job.listener.on_images(job.record, images))


class JobRunner:
    """Owns the task of every running job: runs it, journals its end, hands it to :class:`EndDelivery`."""

    def __init__(
        self,
        storage: Storage,
        horde: AIHordeAPIAsyncSimpleClient,
        ends: EndDelivery,
        *,
        clock: Callable[[], datetime],
        listener_timeout_s: float,
        no_worker_timeout_s: float,
        turns: SubmitTurns | None = None,
    ) -> None:
        self.storage = storage
        self.turns = turns
        self.horde = horde
        self.ends = ends
        self.clock = clock
        self.listener_timeout_s = listener_timeout_s
        self.no_worker_timeout_s = no_worker_timeout_s
        self.jobs: dict[str, RunningJob] = {}

    def context(self, job: RunningJob) -> JobContext:
        return _JobContext(self, job)

    def launch(self, job: RunningJob, make_run: Callable[[JobContext], JobRun]) -> None:
        """Start ``job``'s task: ``make_run`` submits or resumes it."""
        run = make_run(self.context(job))
        self.spawn(job, self._run(job, run), f"horde-job-{job.id}")

    async def launch_in_turn(self, job: RunningJob, make_run: Callable[[JobContext], JobRun]) -> None:
        """Start a new ``job`` on its turn in the bot's fair queue (at once without one).

        Until then it is listed, with no task, and its listener is shown its place in the queue.
        """
        turns = self.turns
        if turns is None:
            self.launch(job, make_run)
            return
        run = make_run(self.context(job))

        async def show_place(place: int) -> None:
            progress = JobProgress.in_bot_queue(job.id, place, n=job.n, elapsed_s=self.elapsed(job.record))
            job.progress = progress
            await self.notify(job, "on_progress", lambda: job.listener.on_progress(job.record, progress))

        def start() -> None:
            job.withdraw = None
            self.spawn(job, self._run(job, run), f"horde-job-{job.id}")

        self.jobs[job.id] = job
        try:
            await turns.enqueue(
                job.id,
                user_id=job.record.user_id,
                guild_id=job.record.guild_id,
                start=start,
                show_place=show_place,
            )
        except Exception:
            # Without the queue (its database failing) the job still goes: the Horde's answer, a
            # 429 the transport waits out at worst, beats dropping it.
            log.exception("Job %s: could not join the bot's submit queue; sending it now", job.id)
            start()
            return
        job.withdraw = lambda: turns.withdraw(job.id)
        if job.cancel_reason is not None:  # cancelled while it was being queued
            turns.withdraw(job.id)

    def spawn(self, job: RunningJob, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as ``job``'s task; the job is listed until it ends."""
        job.task = asyncio.create_task(work, name=name)
        job.started.set()
        self.jobs[job.id] = job
        job.task.add_done_callback(functools.partial(self._forget, job.id))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        self.jobs.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("Job %s: its task failed", job_id, exc_info=task.exception())

    async def _run(self, job: RunningJob, run: JobRun) -> None:
        try:
            if job.cancel_reason is not None and job.record.horde_id is None:
                # Cancelled before it was sent: nothing to ask the Horde.
                outcome = self._outcome(job, run, JobState.CANCELLED)
            else:
                if job.record.horde_id is not None:
                    job.poll_started = asyncio.get_running_loop().time()
                outcome = self._classify(job, run, await run.run())
        except asyncio.CancelledError:
            # Only shutdown cancels a job's task; the client has DELETEd the request by now.
            job.request_cancel(CancelReason.SHUTDOWN)
            await self._finish(job, run, self._outcome(job, run, JobState.CANCELLED))
            raise
        except AIHordeRequestError as exc:
            log.info("Job %s failed: %s", job.id, exc)
            anonymous = job.record.key_owner == "anonymous"
            error = messages.describe_horde_error(exc, anonymous=anonymous)
            outcome = self._outcome(job, run, JobState.FAILED, error=error)
        except Exception:
            log.exception("Job %s failed unexpectedly", job.id)
            outcome = self._outcome(job, run, JobState.FAILED, error=messages.UNEXPECTED)
        await self._finish(job, run, outcome)

    def _classify(self, job: RunningJob, run: JobRun, end: RunEnd) -> JobOutcome:
        if end.faulted:
            return self._outcome(
                job, run, JobState.FAILED, error=messages.FAULTED, faulted=True, kudos=end.kudos
            )
        if end.complete and run.received and run.lost >= run.received:
            # Paid for and finished, yet nothing reached the member: that is a failure to them.
            return self._outcome(job, run, JobState.FAILED, error=messages.ALL_LOST, kudos=end.kudos)
        if end.complete:
            return self._outcome(job, run, JobState.DONE, kudos=end.kudos)
        if job.cancel_reason is None and self._timed_out(job):
            job.cancel_reason = CancelReason.TIMEOUT
        if job.cancel_reason is not None:
            return self._outcome(job, run, JobState.CANCELLED, kudos=end.kudos)
        if run.received == 0:
            return self._outcome(job, run, JobState.FAILED, error=messages.NOTHING_RETURNED, kudos=end.kudos)
        note = messages.fewer_images(run.received, job.n)
        return self._outcome(job, run, JobState.DONE, kudos=end.kudos, note=note)

    def watch_unserved(self, job: RunningJob, progress: JobProgress) -> None:
        """Cancel a request no worker can run once that has lasted ``no_worker_timeout_s``.

        The Horde accepts a request for a model nobody serves (202, ``NoAvailableWorker``) and
        keeps it waiting until it expires, 20 minutes on; the member is told now instead."""
        if progress.is_possible or progress.processing or progress.finished:
            job.unserved_since = None
            return
        now = asyncio.get_running_loop().time()
        if job.unserved_since is None:
            job.unserved_since = now
        elif now - job.unserved_since >= self.no_worker_timeout_s:
            log.info("Job %s: no worker can run it; cancelling", job.id)
            job.request_cancel(CancelReason.NO_WORKER)

    def _timed_out(self, job: RunningJob) -> bool:
        if job.poll_started is None:
            return False
        return asyncio.get_running_loop().time() - job.poll_started >= job.timeout_s

    def _outcome(
        self,
        job: RunningJob,
        run: JobRun,
        state: JobState,
        *,
        error: str | None = None,
        faulted: bool = False,
        kudos: float | None = None,
        note: str | None = None,
    ) -> JobOutcome:
        reason = job.cancel_reason if state is JobState.CANCELLED else None
        if reason is not None and error is None:
            error = (
                messages.timed_out(job.timeout_s)
                if reason is CancelReason.TIMEOUT
                else messages.CANCELLED[reason]
            )
        images = tuple(run.images)
        return JobOutcome(
            state=state,
            images=images,
            kudos=job.kudos if kudos is None else kudos,
            workers=tuple(dict.fromkeys(image.worker_name for image in images if image.worker_name)),
            error=error,
            faulted=faulted,
            cancel_reason=reason,
            notes=run.notes() + ((note,) if note else ()),
        )

    def still_on_horde(self, job: RunningJob) -> bool:
        """Whether the Horde still runs ``job``'s request as far as this process knows: its
        session tracks the id until a DELETE, a final status or a 404 answers for it."""
        horde_id = job.record.horde_id
        session = self.horde.horde_client_session
        return horde_id is not None and session.pending_follow_up(horde_id) is not None

    def leave_running(self, job: RunningJob) -> bool:
        """At shutdown, leave a job whose request the Horde still runs unfinished in the journal.

        Journalling it CANCELLED would be untrue (its kudos are being spent) and would lose the
        result; left SUBMITTED, the next start polls it by its id and delivers. The session stops
        tracking it, so its own close does not DELETE it either."""
        if job.cancel_reason is not CancelReason.SHUTDOWN or job.journalled or not self.still_on_horde(job):
            return False
        assert job.record.horde_id is not None
        self.horde.horde_client_session.release(job.record.horde_id)
        job.left_running = True
        log.warning(
            "Job %s: AI Horde request %s could not be cancelled before the shutdown deadline; "
            "left running, the next start will deliver it",
            job.id,
            job.record.horde_id,
        )
        return True

    async def _finish(self, job: RunningJob, run: JobRun, outcome: JobOutcome) -> None:
        if outcome.state is not JobState.DONE and self.leave_running(job):
            return
        job.outcome = outcome
        result = run.result_json()
        if outcome.notes:
            result["notes"] = list(outcome.notes)
        record = await self.journal(
            job.id, outcome.state, error=outcome.error, kudos=outcome.kudos, result_json=json.dumps(result)
        )
        if record is not None:
            job.record, job.journalled = record, True
        await self.ends.deliver(job.id, job.listener, lambda: job.record, outcome)

    async def journal(
        self,
        job_id: str,
        state: JobState,
        *,
        error: str | None,
        kudos: float | None = None,
        result_json: str | None = None,
    ) -> JobRecord | None:
        """Record a job's end, its delivery pending; ``None`` if that failed (logged)."""
        try:
            return await self.storage.jobs.update(
                job_id,
                state=state,
                error=error,
                kudos=kudos,
                result_json=result_json,
                delivery=DeliveryState.PENDING,
            )
        except InvalidTransitionError as exc:
            log.warning("Job %s already ended: %s", job_id, exc)
        except Exception:
            log.exception("Job %s: could not journal its end (%s)", job_id, state)
        return None

    async def notify(self, job: RunningJob, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Await a listener call; its failures never reach the job (``JobAbandoned`` cancels it).

        A call is given ``listener_timeout_s``: polling waits for it, and a hung Discord call
        must not hold the job forever.
        """
        try:
            async with asyncio.timeout(self.listener_timeout_s):
                await call()
        except TimeoutError:
            log.warning(
                "Job %s: the listener's %s took over %gs; skipped", job.id, what, self.listener_timeout_s
            )
        except JobAbandoned:
            if job.outcome is None:
                log.info("Job %s: its message is gone; cancelling it", job.id)
                job.request_cancel(CancelReason.MESSAGE_GONE)
        except Exception:
            log.exception("Job %s: the listener's %s failed", job.id, what)

    def elapsed(self, record: JobRecord) -> float:
        return max(0.0, (self.clock() - record.created_at).total_seconds())
