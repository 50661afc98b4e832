"""The core of the jobs engine: journal, one task per job, cancellation, shutdown and resume."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypedDict, TypeVar, Unpack

from pydantic import ValidationError

from bot.config import Settings
from bot.horde import (
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    AlchemyAsyncRequest,
    BaseAsyncRequest,
    BaseGenerateAsyncRequest,
    BaseGenerationProgressResponse,
    ImageGenerateAsyncRequest,
    TextGenerateAsyncRequest,
    Wakeup,
)
from bot.services._jobs import messages
from bot.services._jobs.alchemy import AlchemyJobs
from bot.services._jobs.ends import (
    DEFAULT_DELIVERY_TIMEOUT_S,
    REDELIVERY_DELAYS_S,
    EndDelivery,
    recovered_outcome,
)
from bot.services._jobs.image import ImageDeliverySettings, ImageJobs
from bot.services._jobs.kinds import JobContext, JobKindHandler, JobRun, RunEnd
from bot.services._jobs.models import (
    ActiveJob,
    CancelReason,
    DeliveredImage,
    DeliveryFailed,
    JobAbandoned,
    JobListener,
    JobOutcome,
    JobProgress,
    JobsShuttingDownError,
)
from bot.services._jobs.text import TextJobs
from bot.storage import (
    DeliveryState,
    InvalidTransitionError,
    JobKind,
    JobRecord,
    JobState,
    KeyOwner,
    Storage,
    guild_shard,
)

log = logging.getLogger(__name__)

ListenerFactory = Callable[[JobRecord], JobListener | Awaitable[JobListener]]

# shutdown(): jobs get this share of the deadline to wind down by themselves (DELETE, deliver what
# is finished, journal, tell the listener); then their tasks are cancelled, again every
# _RECANCEL_SHARE (a cancellation can be absorbed by the client's shielded cleanup), until
# _FORCED_SHARE; the rest is for journalling whatever is still unrecorded.
_GRACEFUL_SHARE: Final = 0.6
_RECANCEL_SHARE: Final = 0.15
_FORCED_SHARE: Final = 0.9
# A resumed job gets what is left of its time limit, but at least this long to be collected.
_RESUME_MIN_TIMEOUT_S: Final = 60.0
DEFAULT_LISTENER_TIMEOUT_S: Final = 60.0
DEFAULT_NO_WORKER_TIMEOUT_S: Final = 120.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobPlacement(TypedDict):
    """Who started a job and where it is shown; the same for every kind of job."""

    key_owner: KeyOwner
    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int | None
    params: Mapping[str, Any]
    listener: JobListener


class _Job:
    def __init__(self, record: JobRecord, listener: JobListener, *, n: int, timeout_s: float) -> None:
        self.record = record
        self.listener = listener
        self.n = n
        self.timeout_s = timeout_s
        # A Wakeup, not a plain Event: the poll waits then sleep on timers (see bot.horde Wakeup).
        self.cancel_event = Wakeup()
        self.cancel_reason: CancelReason | None = None
        self.progress: JobProgress | None = None
        self.kudos = 0.0
        self.images_delivered = 0
        self.poll_started: float | None = None
        self.unserved_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.outcome: JobOutcome | None = None
        self.journalled = False

    @property
    def id(self) -> str:
        return self.record.id

    def request_cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_event.set()


class _SilentListener:
    """For a resumed job whose listener could not be built: it is cancelled, nobody to tell."""

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        return None

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        raise DeliveryFailed("its message could not be found after a restart")


class _JobContext:
    """The :class:`JobContext` a kind gets for one job."""

    def __init__(self, manager: JobManager, job: _Job) -> None:
        self._manager = manager
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
        return self._manager._horde

    @property
    def cancel_event(self) -> asyncio.Event:
        return self._job.cancel_event

    @property
    def timeout_s(self) -> float:
        return self._job.timeout_s

    async def submitted(self, horde_id: str) -> None:
        job = self._job
        job.record = await self._manager._storage.jobs.update(
            job.id, state=JobState.SUBMITTED, horde_id=horde_id
        )
        job.poll_started = asyncio.get_running_loop().time()

    async def progress(self, response: BaseGenerationProgressResponse) -> None:
        job = self._job
        progress = JobProgress.from_response(
            job.id, response, n=job.n, elapsed_s=self._manager._elapsed(job.record)
        )
        job.progress, job.kudos = progress, response.kudos
        self._manager._watch_unserved(job, progress)
        await self._manager._notify(
            job, "on_progress", lambda: job.listener.on_progress(job.record, progress)
        )

    async def deliver_images(self, images: Sequence[DeliveredImage]) -> None:
        job = self._job
        job.images_delivered += len(images)
        await self._manager._notify(job, "on_images", lambda: job.listener.on_images(job.record, images))


class JobManager:
    """Runs every generation of the bot; see :mod:`bot.services.jobs` for the contract."""

    def __init__(
        self,
        storage: Storage,
        horde: AIHordeAPIAsyncSimpleClient,
        *,
        generation_timeout_s: float,
        shard_count: int = 1,
        shard_ids: Collection[int] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        image_delivery: ImageDeliverySettings = ImageDeliverySettings(),  # noqa: B008 - frozen
        listener_timeout_s: float = DEFAULT_LISTENER_TIMEOUT_S,
        no_worker_timeout_s: float = DEFAULT_NO_WORKER_TIMEOUT_S,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        redelivery_delays_s: tuple[float, ...] = REDELIVERY_DELAYS_S,
    ) -> None:
        if generation_timeout_s <= 0 or listener_timeout_s <= 0 or no_worker_timeout_s <= 0:
            raise ValueError("the generation, listener and no-worker timeouts must be positive")
        self._storage = storage
        self._horde = horde
        self._timeout_s = generation_timeout_s
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if shard_ids is not None and not all(0 <= shard < shard_count for shard in shard_ids):
            raise ValueError(f"shard_ids must be between 0 and {shard_count - 1}")
        # Each job is journalled with its guild's shard; a restart resumes only the shards this
        # process runs (all of them, whatever their tag, when shard_ids is None).
        self._shard_count = shard_count
        self._resume_shards = None if shard_ids is None else frozenset(shard_ids)
        self._clock = clock
        self._listener_timeout_s = listener_timeout_s
        self._no_worker_timeout_s = no_worker_timeout_s
        # Ends are shown (and journalled as shown) apart from the generation; see _jobs/ends.py.
        self._ends = EndDelivery(storage, timeout_s=delivery_timeout_s, delays_s=redelivery_delays_s)
        self._image = ImageJobs(image_delivery)
        self._text = TextJobs()
        self._alchemy = AlchemyJobs(image_delivery)
        self._kinds: dict[JobKind, JobKindHandler] = {
            handler.kind: handler for handler in (self._image, self._text, self._alchemy)
        }
        self._listener_factories: dict[JobKind, ListenerFactory] = {}
        self._jobs: dict[str, _Job] = {}
        self._closing = False

    @classmethod
    def from_settings(
        cls,
        storage: Storage,
        horde: AIHordeAPIAsyncSimpleClient,
        settings: Settings,
    ) -> JobManager:
        return cls(
            storage,
            horde,
            generation_timeout_s=settings.horde.generation_timeout_s,
            no_worker_timeout_s=settings.horde.no_worker_timeout_s,
            shard_count=settings.bot.shard_count or 1,
            shard_ids=settings.bot.shard_ids,
        )

    def __repr__(self) -> str:
        return f"JobManager(active={len(self._jobs)}, closing={self._closing})"

    @property
    def accepting(self) -> bool:
        return not self._closing

    # -- starting --------------------------------------------------------------------------------

    async def start_image_job(
        self,
        *,
        request: ImageGenerateAsyncRequest,
        key: str,
        **job: Unpack[JobPlacement],
    ) -> JobRecord:
        """Journal the job (PENDING) and start its task; returns at once with the record.

        ``key`` is sent with the request and never journalled. ``params`` are the user's options,
        kept for reruns. Raises :class:`JobsShuttingDownError` once :meth:`shutdown` has begun.
        """
        keyed = self._keyed(request, key)
        return await self._start(
            _Start(self._image.kind, keyed.to_wire().json, keyed.get_number_of_results_expected()),
            lambda ctx: self._image.submit(ctx, keyed),
            **job,
        )

    async def start_text_job(
        self,
        *,
        request: TextGenerateAsyncRequest,
        key: str,
        **job: Unpack[JobPlacement],
    ) -> JobRecord:
        """Like :meth:`start_image_job`, for a text request; the texts are journalled as results."""
        keyed = self._keyed(request, key)
        return await self._start(
            _Start(self._text.kind, keyed.to_wire().json, keyed.get_number_of_results_expected()),
            lambda ctx: self._text.submit(ctx, keyed),
            **job,
        )

    async def start_alchemy_job(
        self,
        *,
        request: AlchemyAsyncRequest,
        key: str,
        **job: Unpack[JobPlacement],
    ) -> JobRecord:
        """Like :meth:`start_image_job`, for an alchemy request (the source image is not journalled)."""
        keyed = self._keyed(request, key)
        return await self._start(
            _Start(
                self._alchemy.kind, self._alchemy.journal_body(keyed), keyed.get_number_of_results_expected()
            ),
            lambda ctx: self._alchemy.submit(ctx, keyed),
            **job,
        )

    def _keyed(self, request: _Request, key: str) -> _Request:
        self._refuse_if_closing()
        if isinstance(request, BaseGenerateAsyncRequest) and request.dry_run:
            raise ValueError("a dry-run request is not a job: use the client's dry-run call")
        return _with_key(request, key)

    async def _start(
        self,
        start: _Start,
        make_run: Callable[[JobContext], JobRun],
        *,
        key_owner: KeyOwner,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        message_id: int | None,
        params: Mapping[str, Any],
        listener: JobListener,
    ) -> JobRecord:
        now = self._clock()
        record = JobRecord(
            kind=start.kind,
            guild_id=guild_id,
            channel_id=channel_id,
            message_id=message_id,
            user_id=user_id,
            key_owner=key_owner,
            request_json=json.dumps(start.body),
            params_json=json.dumps(dict(params)),
            shard_id=guild_shard(guild_id, self._shard_count),
            created_at=now,
            updated_at=now,
        )
        record = await self._storage.jobs.create(record)
        if self._closing:
            await self._journal(
                record.id, JobState.CANCELLED, error=messages.CANCELLED[CancelReason.SHUTDOWN]
            )
            raise JobsShuttingDownError()
        job = _Job(record, listener, n=start.n, timeout_s=self._timeout_s)
        self._launch(job, make_run)
        return record

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise JobsShuttingDownError()

    def _launch(self, job: _Job, make_run: Callable[[JobContext], JobRun]) -> None:
        run = make_run(_JobContext(self, job))
        job.task = asyncio.create_task(self._run(job, run), name=f"horde-job-{job.id}")
        self._jobs[job.id] = job
        job.task.add_done_callback(functools.partial(self._forget, job.id))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._jobs.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("Job %s: its task failed", job_id, exc_info=task.exception())

    # -- running ---------------------------------------------------------------------------------

    async def _run(self, job: _Job, run: JobRun) -> None:
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

    def _classify(self, job: _Job, run: JobRun, end: RunEnd) -> JobOutcome:
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

    def _watch_unserved(self, job: _Job, progress: JobProgress) -> None:
        """Cancel a request no worker can run once that has lasted ``no_worker_timeout_s``.

        The Horde accepts a request for a model nobody serves (202, ``NoAvailableWorker``) and
        keeps it waiting until it expires, 20 minutes on; the member is told now instead."""
        if progress.is_possible or progress.processing or progress.finished:
            job.unserved_since = None
            return
        now = asyncio.get_running_loop().time()
        if job.unserved_since is None:
            job.unserved_since = now
        elif now - job.unserved_since >= self._no_worker_timeout_s:
            log.info("Job %s: no worker can run it; cancelling", job.id)
            job.request_cancel(CancelReason.NO_WORKER)

    def _timed_out(self, job: _Job) -> bool:
        if job.poll_started is None:
            return False
        return asyncio.get_running_loop().time() - job.poll_started >= job.timeout_s

    def _outcome(
        self,
        job: _Job,
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

    async def _finish(self, job: _Job, run: JobRun, outcome: JobOutcome) -> None:
        job.outcome = outcome
        result = run.result_json()
        if outcome.notes:
            result["notes"] = list(outcome.notes)
        record = await self._journal(
            job.id, outcome.state, error=outcome.error, kudos=outcome.kudos, result_json=json.dumps(result)
        )
        if record is not None:
            job.record, job.journalled = record, True
        await self._ends.deliver(job.id, job.listener, lambda: job.record, outcome)

    async def _journal(
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
            return await self._storage.jobs.update(
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

    async def _notify(self, job: _Job, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Await a listener call; its failures never reach the job (``JobAbandoned`` cancels it).

        A call is given ``listener_timeout_s``: polling waits for it, and a hung Discord call
        must not hold the job forever.
        """
        try:
            async with asyncio.timeout(self._listener_timeout_s):
                await call()
        except TimeoutError:
            log.warning(
                "Job %s: the listener's %s took over %gs; skipped", job.id, what, self._listener_timeout_s
            )
        except JobAbandoned:
            if job.outcome is None:
                log.info("Job %s: its message is gone; cancelling it", job.id)
                job.request_cancel(CancelReason.MESSAGE_GONE)
        except Exception:
            log.exception("Job %s: the listener's %s failed", job.id, what)

    def _elapsed(self, record: JobRecord) -> float:
        return max(0.0, (self._clock() - record.created_at).total_seconds())

    # -- controlling -----------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> bool:
        """Ask a running job to stop: the request is DELETEd on the Horde and the job ends
        CANCELLED with what was finished. Returns at once; ``False`` if the job is not running.
        Whether the caller may cancel it is the caller's business."""
        job = self._jobs.get(job_id)
        if job is None or job.outcome is not None:
            return False
        job.request_cancel(CancelReason.USER)
        return True

    async def wait(self, job_id: str) -> JobOutcome | None:
        """Wait for a running job to end and return how it ended; ``None`` if it is not running."""
        job = self._jobs.get(job_id)
        if job is None or job.task is None:
            return None
        await asyncio.wait({job.task})
        return job.outcome

    def active_jobs(self, *, user_id: int | None = None) -> list[ActiveJob]:
        """Running jobs, oldest first (only ``user_id``'s when given)."""
        return [
            _snapshot(job)
            for job in self._jobs.values()
            if job.outcome is None and user_id in (None, job.record.user_id)
        ]

    def get_active(self, job_id: str) -> ActiveJob | None:
        job = self._jobs.get(job_id)
        return None if job is None or job.outcome is not None else _snapshot(job)

    def count_active(self, user_id: int) -> int:
        return len(self.active_jobs(user_id=user_id))

    def deliveries_pending(self) -> int:
        """Ended jobs whose end this process is still showing, or waiting to show again."""
        return self._ends.pending

    async def shutdown(self, deadline_s: float) -> None:
        """Stop taking jobs, cancel every running one on the Horde, and record each end.

        Every job ends CANCELLED ("the bot was shut down") unless it finished first, and its
        listener hears ``on_finished``. Jobs that don't wind down in time have their tasks
        cancelled (the client still DELETEs); anything still unrecorded is journalled here.
        Returns within ``deadline_s`` unless the storage itself hangs.
        """
        self._closing = True
        self._ends.stop()
        jobs = list(self._jobs.values())
        if not jobs:
            return
        log.info("Shutting down: cancelling %d running job(s)", len(jobs))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for job in jobs:
            job.request_cancel(CancelReason.SHUTDOWN)
        pending: Collection[asyncio.Task[None]] = {job.task for job in jobs if job.task is not None}
        forced_until = start + deadline_s * _FORCED_SHARE
        try:
            pending = await _wait(pending, until=start + deadline_s * _GRACEFUL_SHARE)
            while pending and loop.time() < forced_until:
                for task in pending:
                    task.cancel()
                pending = await _wait(
                    pending, until=min(forced_until, loop.time() + deadline_s * _RECANCEL_SHARE)
                )
        finally:
            for task in pending:
                task.cancel()
        if pending:
            log.warning("%d job task(s) did not stop within %gs", len(pending), deadline_s)
        for job in jobs:
            if not job.journalled:
                error = messages.CANCELLED[CancelReason.SHUTDOWN]
                if await self._journal(job.id, JobState.CANCELLED, error=error, kudos=job.kudos):
                    job.journalled = True

    # -- resuming --------------------------------------------------------------------------------

    def set_listener_factory(self, kind: JobKind, factory: ListenerFactory) -> None:
        """Rebuild the listeners of resumed ``kind`` jobs with ``factory`` (each kind's cog
        registers its own when it loads; the bot resumes once every extension is loaded)."""
        self._listener_factories[kind] = factory

    async def resume_unfinished(self, listener_factory: ListenerFactory | None = None) -> int:
        """Pick up the unfinished jobs of this process's shards after a restart; returns how many
        are followed again.

        A job's listener comes from the factory registered for its kind
        (:meth:`set_listener_factory`), else from ``listener_factory``. A job of a kind with
        neither is left in the journal untouched (its extension is not loaded here) for a process
        that can show it.

        * Ended, but its end not shown (``delivery`` pending): shown again, with its images fetched
          again from the Horde while it keeps them (see ``_jobs/ends.py``).
        * SUBMITTED: polled again by its Horde id and delivered into ``listener_factory(record)``
          (which may be async, and may raise :class:`JobAbandoned` when the message is gone: the
          job is then cancelled on the Horde). A Horde that no longer knows the id fails it.
        * PENDING: never accepted, or the bot died between the Horde accepting it and the id being
          journalled (``on_submitted`` journals it before the first poll, so only a hard kill hits
          that window). Without an id there is nothing to follow or cancel, so it is marked FAILED;
          a request the Horde did accept then runs unobserved until it expires.
        """
        if self._closing:
            return 0
        resumed = 0
        skipped: set[JobKind] = set()
        records = [
            *await self._storage.jobs.list_unfinished(self._resume_shards),
            *await self._storage.jobs.list_undelivered(self._resume_shards),
        ]
        for record in records:
            if not self.accepting:  # shutdown began meanwhile: leave the rest for the next start
                break
            if record.id in self._jobs:
                continue
            factory = self._listener_factories.get(record.kind, listener_factory)
            if factory is None:
                skipped.add(record.kind)
                continue
            listener, reachable = await self._listener_for(record, factory)
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
            job = _Job(
                record,
                listener,
                n=handler.expected_results(json.loads(record.request_json)),
                timeout_s=self._resume_timeout(record),
            )
            if not reachable:
                job.request_cancel(CancelReason.MESSAGE_GONE)
            self._launch(job, handler.resume)
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
        """Show the end of a job that ended before a restart but was not shown (see ``_jobs/ends.py``)."""
        handler = self._kinds.get(record.kind)
        n = handler.expected_results(json.loads(record.request_json)) if handler is not None else 0
        job = _Job(record, listener, n=n, timeout_s=self._timeout_s)
        ctx = _JobContext(self, job)

        async def outcome() -> JobOutcome:
            run = handler.resume(ctx) if handler is not None else None
            job.outcome = await recovered_outcome(run, record, now=self._clock())
            return job.outcome

        async def deliver() -> None:
            await self._ends.deliver(job.id, listener, lambda: job.record, outcome)

        # Already ended: never "active"; the real outcome comes with the images (outcome()).
        job.outcome = JobOutcome(
            state=record.state, images=(), kudos=record.kudos or 0.0, workers=(), error=record.error
        )
        job.journalled = True
        job.task = asyncio.create_task(deliver(), name=f"horde-job-{job.id}-delivery")
        self._jobs[job.id] = job
        job.task.add_done_callback(functools.partial(self._forget, job.id))

    async def _listener_for(self, record: JobRecord, factory: ListenerFactory) -> tuple[JobListener, bool]:
        try:
            made = factory(record)
            listener = await made if inspect.isawaitable(made) else made
        except JobAbandoned:
            return _SilentListener(), False
        except Exception:
            log.exception("Job %s: could not rebuild its listener", record.id)
            return _SilentListener(), False
        return listener, True

    async def _end_unstarted(self, record: JobRecord, listener: JobListener, error: str) -> None:
        ended = await self._journal(record.id, JobState.FAILED, error=error)
        outcome = JobOutcome(state=JobState.FAILED, images=(), kudos=0.0, workers=(), error=error)
        job = _Job(ended or record, listener, n=0, timeout_s=self._timeout_s)
        job.outcome = outcome
        await self._ends.deliver(job.id, listener, lambda: job.record, outcome)

    def _resume_timeout(self, record: JobRecord) -> float:
        remaining = self._timeout_s - self._elapsed(record)
        return max(remaining, min(self._timeout_s, _RESUME_MIN_TIMEOUT_S))


async def _wait(tasks: Collection[asyncio.Task[None]], *, until: float) -> set[asyncio.Task[None]]:
    if not tasks:
        return set()
    timeout = max(0.0, until - asyncio.get_running_loop().time())
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return pending


def _snapshot(job: _Job) -> ActiveJob:
    return ActiveJob(
        record=job.record,
        progress=job.progress,
        images_delivered=job.images_delivered,
        cancel_reason=job.cancel_reason,
    )


_Request = TypeVar("_Request", bound=BaseAsyncRequest)


@dataclass(frozen=True, slots=True)
class _Start:
    """What the journal and the core need of a new job: its kind, the body to journal (never the
    key: it travels as a header), and how many results it asks for."""

    kind: JobKind
    body: Any
    n: int


def _with_key(request: _Request, key: str) -> _Request:
    """The request with ``key`` set (re-validated; the model never echoes a key in its errors)."""
    fields = {name: getattr(request, name) for name in request.model_fields_set}
    try:
        return type(request).model_validate({**fields, "apikey": key})
    except ValidationError as exc:
        raise ValueError(f"the request cannot be sent with this key: {exc.error_count()} error(s)") from None
