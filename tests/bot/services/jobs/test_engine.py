"""JobManager against the AI Horde simulator and a real SQLite file.

Workers take 0.05-0.3 s and the client polls every 50-200 ms, so each test runs in well under a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_CLIENT_AGENT, TEST_POLL_POLICY

from bot.errors import BotError
from bot.horde import (
    ANON_API_KEY,
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerateAsyncResponse,
    ImageGenerationInputPayload,
    RetryPolicy,
)
from bot.services.jobs import (
    CancelReason,
    DeliveredImage,
    ImageDeliverySettings,
    JobAbandoned,
    JobListener,
    JobManager,
    JobOutcome,
    JobProgress,
    JobsShuttingDownError,
    messages,
)
from bot.services.kinds import job_kinds
from bot.storage import JobRecord, JobState, KeyOwner, Storage, open_storage
from horde_simulator import Fault, Simulator

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"
POOR_KEY = "sim-poor-key-000000003"
RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
FAST_DELIVERY = ImageDeliverySettings(status_interval_s=0.0, download_attempts=3, download_retry_delay_s=0.01)
WAIT_S = 5.0
USER_ID = 4242
CHANNEL_ID = 77


# -- a recording listener -----------------------------------------------------------------------


@dataclass
class Recorder:
    """A JobListener that records every call; ``raise_in``/``abandon_in`` name methods that fail."""

    raise_in: frozenset[str] = frozenset()
    abandon_in: frozenset[str] = frozenset()
    after_images: Callable[[JobRecord, Sequence[DeliveredImage]], Awaitable[None]] | None = None
    block_progress: bool = False
    calls: list[tuple[str, JobState]] = field(default_factory=list)
    progress: list[JobProgress] = field(default_factory=list)
    batches: list[list[DeliveredImage]] = field(default_factory=list)
    outcome: JobOutcome | None = None
    finished_record: JobRecord | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    submitted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the first progress, the bot's own queue included."""
    submitted_to_horde: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the first progress the Horde gave (the job was sent)."""

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        self.calls.append(("progress", job.state))
        self.progress.append(progress)
        self.submitted.set()
        if progress.state != "in_bot_queue":
            self.submitted_to_horde.set()
        self._fail("on_progress")
        if self.block_progress:
            await asyncio.Event().wait()

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        self.calls.append(("images", job.state))
        self.batches.append(list(new_images))
        if self.after_images is not None:
            await self.after_images(job, new_images)
        self._fail("on_images")

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self.calls.append(("finished", job.state))
        self.outcome, self.finished_record = outcome, job
        self.done.set()
        self._fail("on_finished")

    def _fail(self, method: str) -> None:
        if method in self.abandon_in:
            raise JobAbandoned
        if method in self.raise_in:
            raise RuntimeError(f"listener bug in {method}")

    async def finished(self) -> JobOutcome:
        await asyncio.wait_for(self.done.wait(), WAIT_S)
        assert self.outcome is not None
        return self.outcome

    @property
    def delivered(self) -> list[DeliveredImage]:
        return [image for batch in self.batches for image in batch]


def _listener_check(listener: JobListener) -> JobListener:
    return listener


_listener_check(Recorder())  # mypy: Recorder satisfies the protocol


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[Storage]:
    async with open_storage(f"sqlite:///{db_path}") as opened:
        yield opened


@pytest.fixture
async def horde(horde_sim: Simulator) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    session = AIHordeAPIAsyncClientSession(
        base_url=horde_sim.base_url, client_agent=TEST_CLIENT_AGENT, retry=RETRY, cleanup_timeout=2.0
    )
    async with session:
        yield AIHordeAPIAsyncSimpleClient(session, poll_policy=TEST_POLL_POLICY, cleanup_timeout=2.0)


MakeManager = Callable[..., JobManager]


@pytest.fixture
async def make_manager(storage: Storage, horde: AIHordeAPIAsyncSimpleClient) -> AsyncIterator[MakeManager]:
    made: list[JobManager] = []

    def make(**overrides: Any) -> JobManager:
        options: dict[str, Any] = {"generation_timeout_s": 30.0, "kinds": job_kinds(FAST_DELIVERY)}
        manager = JobManager(storage, horde, **(options | overrides))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.shutdown(2.0)


@pytest.fixture
def manager(make_manager: MakeManager) -> JobManager:
    return make_manager()


@pytest.fixture
def sim(horde_sim: Simulator) -> Simulator:
    # One worker thread: the images of a job finish one after another.
    horde_sim.state.knobs.worker_threads = 1
    horde_sim.state.knobs.speed = 0.15
    return horde_sim


def image_request(n: int = 1, **params: Any) -> ImageGenerateAsyncRequest:
    return ImageGenerateAsyncRequest(
        prompt="a lighthouse at dusk", params=ImageGenerationInputPayload(**({"n": n, "steps": 20} | params))
    )


async def start(
    manager: JobManager,
    listener: Recorder,
    request: ImageGenerateAsyncRequest | None = None,
    *,
    key: str = ALICE_KEY,
    key_owner: KeyOwner = "user",
    user_id: int = USER_ID,
) -> JobRecord:
    return await manager.start_job(
        "image",
        request=request or image_request(),
        key=key,
        key_owner=key_owner,
        user_id=user_id,
        guild_id=1,
        channel_id=CHANNEL_ID,
        message_id=99,
        params={"prompt": "a lighthouse at dusk", "n": 1},
        listener=listener,
    )


async def journalled(storage: Storage, job_id: str) -> JobRecord:
    record = await storage.jobs.get(job_id)
    assert record is not None
    return record


def job_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("horde-job-")]


async def horde_id_of(listener: Recorder, storage: Storage, job_id: str) -> str:
    await asyncio.wait_for(listener.submitted.wait(), WAIT_S)
    horde_id = (await journalled(storage, job_id)).horde_id
    assert horde_id is not None
    return horde_id


# -- running to the end --------------------------------------------------------------------------


async def test_a_job_delivers_each_image_once_as_it_finishes(
    manager: JobManager,
    storage: Storage,
    sim: Simulator,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    journal: list[JobState] = []
    real_update = storage.jobs.update

    async def spy_update(job_id: str, **changes: Any) -> JobRecord:
        if "state" in changes:  # not the delivery, journalled apart
            journal.append(changes["state"])
        return await real_update(job_id, **changes)

    monkeypatch.setattr(storage.jobs, "update", spy_update)
    listener = Recorder()

    record = await start(manager, listener, image_request(n=3))

    assert record.state is JobState.PENDING
    outcome = await listener.finished()
    assert outcome.state is JobState.DONE
    assert outcome.error is None
    assert journal == [JobState.SUBMITTED, JobState.DONE]

    # Incremental: more than one batch, every image exactly once, in arrival order.
    assert len(listener.batches) > 1
    delivered = listener.delivered
    assert [image.index for image in delivered] == [0, 1, 2]
    assert len({image.generation_id for image in delivered}) == 3
    assert outcome.images == tuple(delivered)
    assert all(image.data[:4] == b"RIFF" and image.extension == "webp" for image in delivered)
    assert outcome.workers
    assert set(outcome.workers) == {image.worker_name for image in delivered}

    # Progress: from the submitted record, ending with everything finished.
    assert listener.calls[0] == ("progress", JobState.SUBMITTED)
    assert listener.calls[-1] == ("finished", JobState.DONE)
    assert listener.progress[-1].state == "finishing"
    assert listener.progress[-1].finished == 3
    assert all(progress.n == 3 and progress.job_id == record.id for progress in listener.progress)

    stored = await journalled(storage, record.id)
    assert stored.state is JobState.DONE
    assert stored.horde_id
    request_sim = sim.state.requests[stored.horde_id]
    assert stored.kudos == outcome.kudos == pytest.approx(request_sim.consumed)
    assert outcome.kudos > 0
    result = json.loads(stored.result_json or "{}")
    assert result["images"] == [image.summary() for image in delivered]
    assert {entry["seed"] for entry in result["images"]} == {str(gen.seed) for gen in request_sim.generations}
    assert result["lost"] == []
    assert result["faulted"] is False
    # Status was fetched only for new batches and once at the end.
    assert sim.counters.calls("generate_status", id=stored.horde_id) <= len(listener.batches) + 1

    # The key is sent but never journalled or logged.
    assert "apikey" not in json.loads(stored.request_json)
    assert json.loads(stored.request_json)["params"]["n"] == 3
    assert json.loads(stored.params_json) == {"prompt": "a lighthouse at dusk", "n": 1}
    assert ALICE_KEY.encode() not in await asyncio.to_thread(db_path.read_bytes)
    assert all(ALICE_KEY not in entry.getMessage() for entry in caplog.records)
    assert not job_tasks()


async def test_mid_job_status_fetches_are_spaced(
    make_manager: MakeManager, storage: Storage, sim: Simulator
) -> None:
    manager = make_manager(kinds=job_kinds(ImageDeliverySettings(status_interval_s=60.0)))
    listener = Recorder()

    record = await start(manager, listener, image_request(n=3))
    outcome = await listener.finished()

    assert outcome.state is JobState.DONE
    assert len(outcome.images) == 3
    horde_id = await horde_id_of(listener, storage, record.id)
    # One mid-job fetch (the first new image), then only the client's final one.
    assert sim.counters.calls("generate_status", id=horde_id) == 2
    assert next(len(batch) for batch in listener.batches) == 1
    assert sum(len(batch) for batch in listener.batches) == 3


async def test_a_lost_download_is_reported_not_fatal(
    manager: JobManager, storage: Storage, sim: Simulator
) -> None:
    sim.state.faults.script("r2_image", Fault.http(500), times=FAST_DELIVERY.download_attempts)
    listener = Recorder()

    record = await start(manager, listener, image_request(n=2))
    outcome = await listener.finished()

    assert outcome.state is JobState.DONE
    assert len(outcome.images) == 1
    assert outcome.notes == (messages.lost_images(1),)
    assert sim.counters.calls("r2_image") == FAST_DELIVERY.download_attempts + 1
    stored = await journalled(storage, record.id)
    result = json.loads(stored.result_json or "{}")
    assert len(result["lost"]) == 1
    assert len(result["images"]) == 1
    assert result["notes"] == [messages.lost_images(1)]


async def test_a_job_whose_every_download_is_lost_fails(
    manager: JobManager, storage: Storage, sim: Simulator
) -> None:
    sim.state.faults.script("r2_image", Fault.http(500), times=FAST_DELIVERY.download_attempts)
    listener = Recorder()

    record = await start(manager, listener)
    outcome = await listener.finished()

    assert (outcome.state, outcome.error) == (JobState.FAILED, messages.ALL_LOST)
    assert outcome.images == ()
    assert outcome.notes == (messages.lost_images(1),)
    assert (await journalled(storage, record.id)).state is JobState.FAILED


async def test_a_failed_download_is_retried(manager: JobManager, sim: Simulator) -> None:
    sim.state.faults.script("r2_image", Fault.http(500), times=FAST_DELIVERY.download_attempts - 1)
    listener = Recorder()

    await start(manager, listener)
    outcome = await listener.finished()

    assert len(outcome.images) == 1
    assert outcome.notes == ()
    assert sim.counters.calls("r2_image") == FAST_DELIVERY.download_attempts
    # The only image came with the final check, so the client's final status was the only fetch.
    assert sim.counters.calls("generate_status") == 1


# -- cancelling, timing out, faulting ------------------------------------------------------------


async def test_cancel_deletes_on_the_horde_and_keeps_finished_images(
    manager: JobManager, storage: Storage, sim: Simulator
) -> None:
    cancels: list[bool] = []

    async def cancel_after_first(job: JobRecord, images: Sequence[DeliveredImage]) -> None:
        if not cancels:
            cancels.append(await manager.cancel(job.id))
            cancels.append(await manager.cancel(job.id))  # idempotent

    sim.state.knobs.speed = 0.25
    listener = Recorder(after_images=cancel_after_first)

    record = await start(manager, listener, image_request(n=3))
    outcome = await listener.finished()

    assert cancels == [True, True]
    assert outcome.state is JobState.CANCELLED
    assert outcome.cancel_reason is CancelReason.USER
    assert outcome.error == messages.CANCELLED[CancelReason.USER]
    assert 1 <= len(outcome.images) < 3
    assert outcome.images == tuple(listener.delivered)
    horde_id = await horde_id_of(listener, storage, record.id)
    assert sim.counters.deletes(horde_id) == 1
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.CANCELLED
    assert len(json.loads(stored.result_json or "{}")["images"]) == len(outcome.images)
    assert await manager.cancel(record.id) is False
    assert await manager.cancel("0" * 32) is False


async def test_the_time_limit_cancels_with_the_partial_images(
    make_manager: MakeManager, storage: Storage, sim: Simulator
) -> None:
    sim.state.knobs.speed = 0.3
    manager = make_manager(generation_timeout_s=0.45)
    listener = Recorder()

    record = await start(manager, listener, image_request(n=3))
    outcome = await listener.finished()

    assert outcome.state is JobState.CANCELLED
    assert outcome.cancel_reason is CancelReason.TIMEOUT
    assert outcome.error == messages.timed_out(0.45)
    assert 1 <= len(outcome.images) < 3
    horde_id = await horde_id_of(listener, storage, record.id)
    assert sim.counters.deletes(horde_id) == 1


async def test_a_faulted_request_fails_with_its_partial_images(
    manager: JobManager, storage: Storage, sim: Simulator
) -> None:
    async def break_the_workers(job: JobRecord, images: Sequence[DeliveredImage]) -> None:
        sim.state.knobs.fail_next_jobs = 3

    sim.state.knobs.speed = 0.1
    listener = Recorder(after_images=break_the_workers)

    record = await start(manager, listener, image_request(n=3))
    outcome = await listener.finished()

    assert outcome.state is JobState.FAILED
    assert outcome.faulted
    assert outcome.error == messages.FAULTED == "The Horde could not finish this request (workers faulted)."
    assert 1 <= len(outcome.images) < 3
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.FAILED
    assert stored.error == messages.FAULTED
    assert json.loads(stored.result_json or "{}")["faulted"] is True


async def test_a_request_the_horde_forgets_fails_as_expired(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    listener = Recorder()

    record = await start(manager, listener)
    horde_sim.state.expire(await horde_id_of(listener, storage, record.id))
    outcome = await listener.finished()

    assert outcome.state is JobState.FAILED
    assert outcome.error == messages.EXPIRED
    stored = await journalled(storage, record.id)
    assert stored.error == messages.EXPIRED


# -- submit errors -------------------------------------------------------------------------------


def _schema_breaking_request() -> ImageGenerateAsyncRequest:
    # The models refuse 9999 steps; built without validation, so the Horde's own schema check answers.
    params = ImageGenerationInputPayload.model_construct(steps=9999)
    return ImageGenerateAsyncRequest(prompt="a lighthouse", params=params)


@pytest.mark.parametrize(
    ("key", "key_owner", "request_", "expected"),
    [
        pytest.param(
            POOR_KEY, "user", image_request(steps=50), "costs kudos upfront", id="kudos-upfront-user"
        ),
        pytest.param(
            ANON_API_KEY, "anonymous", image_request(steps=50), messages.LOGIN_HINT, id="kudos-upfront-anon"
        ),
        pytest.param(
            POOR_KEY, "user", image_request(n=3), "Wait for your other jobs to finish", id="too-many-prompts"
        ),
        pytest.param(
            ALICE_KEY,
            "user",
            _schema_breaking_request(),
            "rejected these settings: params.steps",
            id="schema",
        ),
    ],
)
async def test_a_submit_error_fails_the_job_with_a_helpful_text(
    manager: JobManager,
    storage: Storage,
    horde_sim: Simulator,
    key: str,
    key_owner: KeyOwner,
    request_: ImageGenerateAsyncRequest,
    expected: str,
) -> None:
    listener = Recorder()

    record = await start(manager, listener, request_, key=key, key_owner=key_owner)
    outcome = await listener.finished()

    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert expected in outcome.error
    assert listener.progress == []
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.FAILED
    assert stored.horde_id is None
    assert stored.error == outcome.error
    # Nothing was queued, so nothing is left running on the Horde.
    assert horde_sim.state.requests == {}
    assert horde_sim.counters.calls("generate_async") == 1
    assert horde_sim.counters.calls("generate_delete") == 0


async def test_maintenance_mode_fails_the_job(manager: JobManager, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.maintenance_mode = True
    listener = Recorder()

    await start(manager, listener)
    outcome = await listener.finished()

    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert "maintenance" in outcome.error


async def test_a_dry_run_request_is_refused_before_anything_is_journalled(
    manager: JobManager, storage: Storage
) -> None:
    dry = image_request().model_copy(update={"dry_run": True})

    with pytest.raises(ValueError, match="dry-run"):
        await start(manager, Recorder(), dry)

    assert await storage.jobs.list_unfinished() == []


# -- listeners -----------------------------------------------------------------------------------


@pytest.mark.allow_unhandled_errors
async def test_a_failing_listener_never_stops_the_job(
    manager: JobManager, storage: Storage, sim: Simulator, error_logs: list[logging.LogRecord]
) -> None:
    listener = Recorder(raise_in=frozenset({"on_progress", "on_images", "on_finished"}))

    record = await start(manager, listener, image_request(n=2))
    outcome = await listener.finished()

    assert outcome.state is JobState.DONE
    assert len(outcome.images) == 2
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.DONE
    failed = {str(entry.exc_info[1]) for entry in error_logs if entry.exc_info}
    assert failed == {f"listener bug in {method}" for method in ("on_progress", "on_images", "on_finished")}
    await asyncio.sleep(0)
    assert not job_tasks()


async def test_job_abandoned_cancels_the_job_on_the_horde(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    listener = Recorder(abandon_in=frozenset({"on_progress"}))

    record = await start(manager, listener)
    outcome = await listener.finished()

    assert outcome.state is JobState.CANCELLED
    assert outcome.cancel_reason is CancelReason.MESSAGE_GONE
    assert len(listener.progress) == 1
    horde_id = await horde_id_of(listener, storage, record.id)
    assert horde_sim.counters.deletes(horde_id) == 1


async def test_a_hung_listener_call_is_given_up_on(
    make_manager: MakeManager, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(listener_timeout_s=0.1)
    listener = Recorder(block_progress=True)

    await start(manager, listener)
    outcome = await listener.finished()

    assert outcome.state is JobState.DONE
    assert len(outcome.images) == 1
    assert "the listener's on_progress took over 0.1s" in caplog.text


# -- the UI's view -------------------------------------------------------------------------------


async def test_active_jobs_are_listed_and_counted_per_user(manager: JobManager, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.worker_threads = 0
    first, second, other = Recorder(), Recorder(), Recorder()
    one = await start(manager, first)
    two = await start(manager, second, key=BOB_KEY)
    three = await start(manager, other, key=ANON_API_KEY, key_owner="anonymous", user_id=7)
    await asyncio.wait_for(first.submitted.wait(), WAIT_S)

    assert [job.record.id for job in manager.active_jobs()] == [one.id, two.id, three.id]
    assert len(manager.active_jobs(user_id=USER_ID)) == 2
    assert len(manager.active_jobs(user_id=7)) == 1
    [active] = [job for job in manager.active_jobs() if job.record.id == one.id]
    assert active.progress is not None
    assert not active.cancelling
    assert active.record.state is JobState.SUBMITTED

    await manager.cancel(one.id)
    await manager.wait(one.id)

    assert one.id not in [job.record.id for job in manager.active_jobs()]
    assert len(manager.active_jobs(user_id=USER_ID)) == 1
    assert await manager.wait(one.id) is None


# -- shutdown ------------------------------------------------------------------------------------


async def test_shutdown_cancels_every_job_on_the_horde_and_records_it(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    keys: list[tuple[str, KeyOwner]] = [(ALICE_KEY, "user"), (BOB_KEY, "user"), (ANON_API_KEY, "anonymous")]
    listeners = [Recorder() for _ in keys]
    records = [
        await start(manager, listener, key=key, key_owner=owner)
        for listener, (key, owner) in zip(listeners, keys, strict=True)
    ]
    horde_ids = [
        await horde_id_of(listener, storage, record.id)
        for listener, record in zip(listeners, records, strict=True)
    ]

    began = time.monotonic()
    await manager.shutdown(2.0)

    assert time.monotonic() - began < 2.0
    assert not job_tasks()
    assert manager.active_jobs() == []
    for listener, record, horde_id in zip(listeners, records, horde_ids, strict=True):
        assert listener.outcome is not None
        assert listener.outcome.state is JobState.CANCELLED
        assert listener.outcome.cancel_reason is CancelReason.SHUTDOWN
        assert "the bot was shut down" in (listener.outcome.error or "")
        assert horde_sim.counters.deletes(horde_id) == 1
        stored = await journalled(storage, record.id)
        assert stored.state is JobState.CANCELLED
    with pytest.raises(JobsShuttingDownError) as refused:
        await start(manager, Recorder())
    assert isinstance(refused.value, BotError)
    assert "restarting" in refused.value.user_message
    assert await manager.resume_unfinished(lambda record: Recorder()) == 0


async def test_shutdown_cancels_a_stuck_task_and_still_records_it(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    listener = Recorder(block_progress=True)
    record = await start(manager, listener)
    horde_id = await horde_id_of(listener, storage, record.id)

    began = time.monotonic()
    await manager.shutdown(1.0)

    assert time.monotonic() - began < 1.0
    assert not job_tasks()
    assert horde_sim.counters.deletes(horde_id) == 1
    assert listener.outcome is not None
    assert listener.outcome.cancel_reason is CancelReason.SHUTDOWN
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.CANCELLED


async def test_shutdown_journals_a_job_whose_own_journalling_hung(
    manager: JobManager, storage: Storage, horde_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    real_update = storage.jobs.update
    hung: list[str] = []

    async def hanging_end(job_id: str, **changes: Any) -> JobRecord:
        if changes.get("state") is JobState.CANCELLED and not hung:
            hung.append(job_id)
            await asyncio.Event().wait()
        return await real_update(job_id, **changes)

    monkeypatch.setattr(storage.jobs, "update", hanging_end)
    listener = Recorder()
    record = await start(manager, listener)
    await asyncio.wait_for(listener.submitted.wait(), WAIT_S)

    await manager.shutdown(1.0)

    assert hung == [record.id]
    assert not job_tasks()
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.CANCELLED
    assert stored.error == messages.CANCELLED[CancelReason.SHUTDOWN]


async def test_a_job_cancelled_before_it_was_sent_never_reaches_the_horde(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    listener = Recorder()
    record = await start(manager, listener)

    await manager.shutdown(1.0)

    assert horde_sim.counters.calls("generate_async") == 0
    assert listener.outcome is not None
    assert listener.outcome.state is JobState.CANCELLED
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.CANCELLED
    assert stored.horde_id is None


# -- resuming after a crash ----------------------------------------------------------------------


async def submit_on_the_horde(horde: AIHordeAPIAsyncSimpleClient, request: ImageGenerateAsyncRequest) -> str:
    keyed = request.model_copy(update={"apikey": ALICE_KEY})
    response = await horde.horde_client_session.submit_request(keyed, ImageGenerateAsyncResponse)
    assert isinstance(response, ImageGenerateAsyncResponse)
    return response.id_


async def journal_crashed_job(
    storage: Storage,
    request: ImageGenerateAsyncRequest,
    *,
    horde_id: str | None,
    shard_id: int | None = None,
    created_at: datetime | None = None,
) -> JobRecord:
    """A job as a killed bot leaves it: SUBMITTED with its Horde id (PENDING without one)."""
    now = created_at or datetime.now(UTC)
    record = JobRecord(
        kind="image",
        state=JobState.SUBMITTED if horde_id else JobState.PENDING,
        channel_id=CHANNEL_ID,
        message_id=5,
        user_id=USER_ID,
        key_owner="user",
        horde_id=horde_id,
        request_json=json.dumps(request.to_wire().json),
        params_json="{}",
        shard_id=shard_id,
        created_at=now,
        updated_at=now,
    )
    return await storage.jobs.create(record)


async def test_a_submitted_job_is_followed_again_after_a_restart(
    manager: JobManager, storage: Storage, horde: AIHordeAPIAsyncSimpleClient, sim: Simulator
) -> None:
    request = image_request(n=2)
    horde_id = await submit_on_the_horde(horde, request)
    record = await journal_crashed_job(storage, request, horde_id=horde_id)
    listeners: dict[str, Recorder] = {}

    async def factory(job: JobRecord) -> Recorder:
        listeners[job.id] = Recorder()
        return listeners[job.id]

    assert await manager.resume_unfinished(factory) == 1
    assert await manager.resume_unfinished(factory) == 0  # already running: not picked twice

    listener = listeners[record.id]
    outcome = await listener.finished()
    assert outcome.state is JobState.DONE
    assert len(listener.delivered) == 2
    assert outcome.images == tuple(listener.delivered)
    assert listener.progress
    assert all(progress.n == 2 for progress in listener.progress)
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.DONE
    assert stored.horde_id == horde_id
    assert sim.counters.calls("generate_async") == 1


async def test_a_resumed_job_the_horde_forgot_fails_with_a_message(
    manager: JobManager, storage: Storage, horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator
) -> None:
    request = image_request()
    horde_id = await submit_on_the_horde(horde, request)
    horde_sim.state.expire(horde_id)
    record = await journal_crashed_job(storage, request, horde_id=horde_id)
    listener = Recorder()

    assert await manager.resume_unfinished(lambda job: listener) == 1

    outcome = await listener.finished()
    assert outcome.state is JobState.FAILED
    assert outcome.error == messages.EXPIRED
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.FAILED


async def test_a_pending_job_fails_after_a_restart(
    manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    record = await journal_crashed_job(storage, image_request(), horde_id=None)
    listener = Recorder()

    assert await manager.resume_unfinished(lambda job: listener) == 0

    outcome = await listener.finished()
    assert outcome.state is JobState.FAILED
    assert outcome.error == messages.RESTARTED_BEFORE_ACCEPTED
    assert listener.finished_record is not None
    assert listener.finished_record.state is JobState.FAILED
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.FAILED
    assert horde_sim.counters.calls("generate_check") == 0


async def test_a_resumed_job_whose_message_is_gone_is_cancelled_on_the_horde(
    manager: JobManager, storage: Storage, horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    request = image_request()
    horde_id = await submit_on_the_horde(horde, request)
    record = await journal_crashed_job(storage, request, horde_id=horde_id)

    def gone(job: JobRecord) -> Recorder:
        raise JobAbandoned

    assert await manager.resume_unfinished(gone) == 1
    await manager.wait(record.id)

    assert horde_sim.counters.deletes(horde_id) == 1
    stored = await journalled(storage, record.id)
    assert stored.state is JobState.CANCELLED
    assert stored.error == messages.CANCELLED[CancelReason.MESSAGE_GONE]


async def test_resume_only_takes_this_shards_jobs(
    make_manager: MakeManager, storage: Storage, horde: AIHordeAPIAsyncSimpleClient
) -> None:
    request = image_request()
    horde_id = await submit_on_the_horde(horde, request)
    other = await journal_crashed_job(storage, request, horde_id=horde_id, shard_id=2)
    manager = make_manager(shard_count=3, shard_ids=[1])

    assert await manager.resume_unfinished(lambda job: Recorder()) == 0

    stored = await journalled(storage, other.id)
    assert stored.state is JobState.SUBMITTED


async def test_an_old_resumed_job_still_gets_its_time_limit(
    make_manager: MakeManager, storage: Storage, horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator
) -> None:
    horde_sim.state.knobs.worker_threads = 0
    request = image_request()
    horde_id = await submit_on_the_horde(horde, request)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await journal_crashed_job(storage, request, horde_id=horde_id, created_at=an_hour_ago)
    manager = make_manager(generation_timeout_s=0.3)
    listener = Recorder()

    await manager.resume_unfinished(lambda job: listener)
    outcome = await listener.finished()

    assert outcome.cancel_reason is CancelReason.TIMEOUT
    assert horde_sim.counters.deletes(horde_id) == 1
    assert listener.progress[-1].elapsed_s >= 3600
