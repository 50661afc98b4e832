"""The jobs engine: :class:`JobManager` starts, cancels, shuts down and resumes the jobs of the kinds
it is handed (see docs/ARCHITECTURE.md, *Generation jobs*)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypedDict, Unpack

from pydantic import ValidationError

from bot.config import Settings
from bot.horde import AIHordeAPIAsyncSimpleClient, BaseAsyncRequest, BaseGenerateAsyncRequest
from bot.services.jobs import messages
from bot.services.jobs.ends import DEFAULT_DELIVERY_TIMEOUT_S, REDELIVERY_DELAYS_S, EndDelivery
from bot.services.jobs.kinds import JobKindHandler
from bot.services.jobs.models import ActiveJob, CancelReason, JobListener, JobOutcome, JobsShuttingDownError
from bot.services.jobs.resume import ListenerFactory, Resumption
from bot.services.jobs.running import JobRunner, RunningJob
from bot.services.jobs.turns import SubmitTurns
from bot.storage import JobKind, JobRecord, JobState, KeyOwner, Storage, guild_shard

log = logging.getLogger(__name__)

# shutdown(): jobs get this share of the deadline to wind down by themselves (DELETE, deliver what
# is finished, journal, tell the listener); then their tasks are cancelled, again every
# _RECANCEL_SHARE (a cancellation can be absorbed by the client's shielded cleanup), until
# _FORCED_SHARE; the rest is for journalling whatever is still unrecorded.
_GRACEFUL_SHARE: Final = 0.6
_RECANCEL_SHARE: Final = 0.15
_FORCED_SHARE: Final = 0.9
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


class JobManager:
    """Runs every generation of the bot, of the kinds it is handed (``kinds``, one handler each)."""

    def __init__(
        self,
        storage: Storage,
        horde: AIHordeAPIAsyncSimpleClient,
        *,
        kinds: Sequence[JobKindHandler],
        generation_timeout_s: float,
        shard_count: int = 1,
        shard_ids: Collection[int] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        listener_timeout_s: float = DEFAULT_LISTENER_TIMEOUT_S,
        no_worker_timeout_s: float = DEFAULT_NO_WORKER_TIMEOUT_S,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        redelivery_delays_s: tuple[float, ...] = REDELIVERY_DELAYS_S,
        turns: SubmitTurns | None = None,
    ) -> None:
        if generation_timeout_s <= 0 or listener_timeout_s <= 0 or no_worker_timeout_s <= 0:
            raise ValueError("the generation, listener and no-worker timeouts must be positive")
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if shard_ids is not None and not all(0 <= shard < shard_count for shard in shard_ids):
            raise ValueError(f"shard_ids must be between 0 and {shard_count - 1}")
        self._storage = storage
        self._timeout_s = generation_timeout_s
        # Each job is journalled with its guild's shard; a restart resumes only the shards this
        # process runs (all of them, whatever their tag, when shard_ids is None).
        self._shard_count = shard_count
        self._resume_shards = None if shard_ids is None else frozenset(shard_ids)
        self._clock = clock
        self._kinds: dict[JobKind, JobKindHandler] = {handler.kind: handler for handler in kinds}
        # Ends are shown (and journalled as shown) apart from the generation; see ends.py.
        self._ends = EndDelivery(storage, timeout_s=delivery_timeout_s, delays_s=redelivery_delays_s)
        self._runner = JobRunner(
            storage,
            horde,
            self._ends,
            clock=clock,
            listener_timeout_s=listener_timeout_s,
            no_worker_timeout_s=no_worker_timeout_s,
            turns=turns,
        )
        self._turns = turns
        self._listener_factories: dict[JobKind, ListenerFactory] = {}
        self._closing = False

    @classmethod
    def from_settings(
        cls,
        storage: Storage,
        horde: AIHordeAPIAsyncSimpleClient,
        settings: Settings,
        *,
        kinds: Sequence[JobKindHandler],
    ) -> JobManager:
        return cls(
            storage,
            horde,
            kinds=kinds,
            generation_timeout_s=settings.horde.generation_timeout_s,
            no_worker_timeout_s=settings.horde.no_worker_timeout_s,
            shard_count=settings.bot.shard_count or 1,
            shard_ids=settings.bot.shard_ids,
            # One fair queue and one budget for the whole bot, in its database.
            turns=SubmitTurns(storage.submit_queue, settings.horde.submit_windows),
        )

    def __repr__(self) -> str:
        return f"JobManager(active={len(self._runner.jobs)}, closing={self._closing})"

    @property
    def accepting(self) -> bool:
        return not self._closing

    # -- starting --------------------------------------------------------------------------------

    async def start_job(
        self,
        kind: JobKind,
        *,
        request: BaseAsyncRequest,
        key: str,
        **job: Unpack[JobPlacement],
    ) -> JobRecord:
        """Journal a ``kind`` job (PENDING) and start its task; returns at once with the record.

        ``request`` is the kind's request; ``key`` is sent with it and never journalled.
        ``params`` are the user's options, kept for reruns. Raises :class:`JobsShuttingDownError`
        once :meth:`shutdown` has begun.
        """
        handler = self._kinds.get(kind)
        if handler is None:
            raise ValueError(f"this engine runs no {kind} jobs")
        if not isinstance(request, handler.request_type):
            raise TypeError(f"a {kind} job needs a {handler.request_type.__name__}")
        self._refuse_if_closing()
        if isinstance(request, BaseGenerateAsyncRequest) and request.dry_run:
            raise ValueError("a dry-run request is not a job: use the client's dry-run call")
        try:
            keyed = request.with_fields(apikey=key)
        except ValidationError as exc:
            # The model never echoes a key in its errors; the count is enough.
            raise ValueError(
                f"the request cannot be sent with this key: {exc.error_count()} error(s)"
            ) from None
        record = await self._journal_new(kind, handler.journal_body(keyed), **job)
        if self._closing:
            await self._runner.journal(
                record.id, JobState.CANCELLED, error=messages.CANCELLED[CancelReason.SHUTDOWN]
            )
            raise JobsShuttingDownError()
        running = RunningJob(
            record, job["listener"], n=keyed.get_number_of_results_expected(), timeout_s=self._timeout_s
        )
        await self._runner.launch_in_turn(running, lambda ctx: handler.submit(ctx, keyed))
        return record

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise JobsShuttingDownError()

    async def _journal_new(
        self,
        kind: JobKind,
        body: Any,
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
            kind=kind,
            guild_id=guild_id,
            channel_id=channel_id,
            message_id=message_id,
            user_id=user_id,
            key_owner=key_owner,
            request_json=json.dumps(body),
            params_json=json.dumps(dict(params)),
            shard_id=guild_shard(guild_id, self._shard_count),
            created_at=now,
            updated_at=now,
        )
        return await self._storage.jobs.create(record)

    # -- controlling -----------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> bool:
        """Ask a running job to stop: the request is DELETEd on the Horde and the job ends
        CANCELLED with what was finished. Returns at once; ``False`` if the job is not running.
        Whether the caller may cancel it is the caller's business."""
        job = self._runner.jobs.get(job_id)
        if job is None or job.outcome is not None:
            return False
        job.request_cancel(CancelReason.USER)
        return True

    async def wait(self, job_id: str) -> JobOutcome | None:
        """Wait for a running job to end and return how it ended; ``None`` if it is not running."""
        job = self._runner.jobs.get(job_id)
        if job is None:
            return None
        await job.started.wait()  # a job waiting for its turn in the bot's queue has no task yet
        assert job.task is not None
        await asyncio.wait({job.task})
        return job.outcome

    def active_jobs(self, *, user_id: int | None = None) -> list[ActiveJob]:
        """Running jobs, oldest first (only ``user_id``'s when given)."""
        return [
            job.snapshot()
            for job in self._runner.jobs.values()
            if job.outcome is None and user_id in (None, job.record.user_id)
        ]

    def deliveries_pending(self) -> int:
        """Ended jobs whose end this process is still showing, or waiting to show again."""
        return self._ends.pending

    async def shutdown(self, deadline_s: float) -> None:
        """Stop taking jobs, cancel every running one on the Horde, and record each end.

        Every job ends CANCELLED ("the bot was shut down") unless it finished first, and its
        listener hears ``on_finished``; but a job whose DELETE did not go through in time is left
        unfinished in the journal (the Horde still runs it) and resumed by the next start. Jobs
        that don't wind down in time have their tasks cancelled (the client still DELETEs);
        anything still unrecorded is journalled here. This process's tickets leave the queue.
        Returns within ``deadline_s`` unless the storage itself hangs.
        """
        self._closing = True
        self._ends.stop()
        try:
            await self._cancel_jobs(deadline_s)
        finally:
            if self._turns is not None:
                await self._turns.close()

    async def _cancel_jobs(self, deadline_s: float) -> None:
        jobs = list(self._runner.jobs.values())
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
            if not job.journalled and not job.left_running and not self._runner.leave_running(job):
                error = messages.CANCELLED[CancelReason.SHUTDOWN]
                if await self._runner.journal(job.id, JobState.CANCELLED, error=error, kudos=job.kudos):
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
          again from the Horde while it keeps them (see ``ends.py``).
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
        records = [
            *await self._storage.jobs.list_unfinished(self._resume_shards),
            *await self._storage.jobs.list_undelivered(self._resume_shards),
        ]
        resumption = Resumption(
            self._runner,
            self._kinds,
            self._listener_factories,
            timeout_s=self._timeout_s,
            accepting=lambda: self.accepting,
        )
        return await resumption.resume(records, listener_factory)


async def _wait(tasks: Collection[asyncio.Task[None]], *, until: float) -> set[asyncio.Task[None]]:
    if not tasks:
        return set()
    timeout = max(0.0, until - asyncio.get_running_loop().time())
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return pending
