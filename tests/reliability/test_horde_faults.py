"""The Horde fault matrix (issue 6): every fault the AI Horde (or the way to it) can throw at a job,
on every kind of job, driven through SimCord against the simulator.

For each fault × kind the test asserts that

1. the user sees a clear message: the job's own message shows how it ended and the exact line for
   that fault (and never any HTML), or the result itself;
2. the journal holds a definite end state (never PENDING or SUBMITTED);
3. no task leaks: the job manager has no active job, and no task the job started is still alive;
4. no Horde request is orphaned: everything the simulator accepted was finished and collected,
   faulted, expired or DELETEd (``State.orphans()``, the ``orphans`` of ``GET /_sim/requests``).

Client-side request timeouts cannot be provoked through SimCord (its virtual clock never fires
aiohttp's timer while the bot waits on real I/O, see docs/TESTING.md "Time"), and the bot's download
retries wait 1 s and 2 s of real time; those rows run the jobs engine itself on a real clock, with
a listener that keeps the outcome (its error and notes are the message's last lines), at the end
of this module.

The transport retries with a tiny backoff and shrinks ``Retry-After`` 100-fold, so a 429 storm
costs milliseconds; every other timing is the simulator's 0.05 s workers. A poll that still fails
after the transport's attempts is polled again by the poll loop (``PollPolicy.error_grace_s``,
120 s in production) for ``GRACE_S``; the "outlasts the grace" rows keep failing past it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import PIL.Image
import pytest
import simcord
from conftest import TEST_CLIENT_AGENT, TEST_POLL_POLICY

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    AlchemyAsyncRequest,
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
    RetryPolicy,
    TextGenerateAsyncRequest,
)
from bot.services.jobs import (
    DeliveredImage,
    ImageDeliverySettings,
    JobManager,
    JobOutcome,
    JobProgress,
    messages,
)
from bot.services.kinds import job_kinds
from bot.storage import JobRecord, JobState, Storage, open_storage
from horde_simulator import Fault, Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

Kind = Literal["image", "text", "alchemy"]
KINDS: tuple[Kind, ...] = ("image", "text", "alchemy")

# Four attempts (the default), near-instant backoff, Retry-After honoured at 1/100 of its value;
# a rate limiter's 429 is sent again for 10 s of the Horde's time (0.1 s here: two or three
# refusals), then reported.
FAST_RETRY = RetryPolicy(base_delay=0.005, max_delay=0.02, retry_after_scale=0.01, deadline=10.0)
SETTLE_S = 8.0
# How long the poll loop keeps polling through transient failures. It polls again 0.05, 0.1, 0.2 …
# (virtual) seconds after each failed poll, so a third failure in a row comes 0.15 s after the first
# and is polled through, a fourth (0.35 s) is past the grace, unless the client-side rate limiter
# spaced the attempts out more (each failed poll is the transport's 4 attempts for a 429, 503 or reset).
GRACE_S = 0.3
# A fault scripted this many times lasts longer than any job's grace: it outlasts it.
FOREVER = 1000

# What the user reads on the job's message for each kind of trouble (messages.describe_horde_error).
RATE_LIMITED = "The AI Horde is rate-limiting the bot right now. Please try again in a minute."
UNREACHABLE = "The AI Horde can't be reached right now. Please try again in a few minutes."
MAINTENANCE = "The AI Horde is in maintenance mode and isn't taking new requests. Please try again later."


def server_error(status: int) -> str:
    return f"The AI Horde had a problem (HTTP {status}). Please try again in a few minutes."


@dataclass(frozen=True)
class KindSpec:
    command: str
    submit: str
    poll: str
    delete: str
    shows_result: Callable[[simcord.ResponseMessage], bool]


def _one_attachment(message: simcord.ResponseMessage) -> bool:
    return len(message.attachments) == 1


def _text_embed(message: simcord.ResponseMessage) -> bool:
    return bool(message.embeds and (message.embeds[0].description or "").strip())


SPECS: dict[Kind, KindSpec] = {
    "image": KindSpec("imagine", "generate_async", "generate_check", "generate_delete", _one_attachment),
    "text": KindSpec("write", "text_async", "text_status", "text_delete", _text_embed),
    # An upscale, so alchemy downloads an image from the r2 URL like /imagine does.
    "alchemy": KindSpec(
        "alchemy", "interrogate_async", "interrogate_status", "interrogate_delete", _one_attachment
    ),
}


def png() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), "red").save(out, format="PNG")
    return out.getvalue()


def options(kind: Kind) -> dict[str, object]:
    if kind == "image":
        return {"prompt": "a fox in the snow", "width": 64, "height": 64}
    if kind == "text":
        return {"prompt": "Once upon a time", "max_length": 16}
    return {"image": ("cat.png", png()), "operation": "RealESRGAN_x4plus"}


# -- the faults ------------------------------------------------------------------------------------

Arrange = Callable[[Simulator, KindSpec], None]


def script(endpoint: Literal["submit", "poll", "delete"], fault: Fault, times: int = 1) -> Arrange:
    def arrange(sim: Simulator, spec: KindSpec) -> None:
        sim.state.faults.script(getattr(spec, endpoint), fault, times=times)

    return arrange


def scripts(*arrangements: Arrange) -> Arrange:
    def arrange(sim: Simulator, spec: KindSpec) -> None:
        for each in arrangements:
            each(sim, spec)

    return arrange


def final_status(fault: Fault, times: int) -> Arrange:
    """Images only: the one ``status`` fetch after ``check`` said done (text and alchemy poll it)."""

    def arrange(sim: Simulator, spec: KindSpec) -> None:
        sim.state.faults.script("generate_status", fault, times=times)

    return arrange


def r2(fault: Fault, times: int) -> Arrange:
    def arrange(sim: Simulator, spec: KindSpec) -> None:
        sim.state.faults.script("r2_image", fault, times=times)

    return arrange


def knob(**values: Any) -> Arrange:
    def arrange(sim: Simulator, spec: KindSpec) -> None:
        for name, value in values.items():
            setattr(sim.state.knobs, name, value)

    return arrange


def faulting_workers(sim: Simulator, spec: KindSpec) -> None:
    # A request faults after 3 failed jobs; an alchemy form after 4 failed attempts.
    sim.state.knobs.fail_next_jobs = 4 if spec.command == "alchemy" else 3


@dataclass(frozen=True)
class Case:
    """One row of the matrix. ``line`` is the exact last status line the user reads (``None``: the
    job delivers normally); ``horde_end`` is how the simulator saw the request end (``None``: it
    never accepted one)."""

    id: str
    fault: str
    arrange: Arrange
    state: JobState
    line: str | None
    horde_end: str | None
    kinds: tuple[Kind, ...] = KINDS
    waited: str | None = None
    """A retry wait the transport must log: ``Retry-After`` × 0.01, beyond the backoff's 0.02 s."""
    poll_loop: Literal["polled through", "gave up"] | None = None
    """What the poll loop must log: it polled again after a failed poll (and it came back), or it
    polled through failures until the grace ran out."""


CASES: tuple[Case, ...] = (
    Case(
        "429-storm",
        "429 storm with Retry-After (submit, then the poll ×2)",
        scripts(
            script("submit", Fault.rate_limit(retry_after=3)),
            script("poll", Fault.rate_limit(retry_after=3), times=2),
        ),
        JobState.DONE,
        None,
        "finished",
        waited="(429, refusal 1); retrying in 0.0",
    ),
    Case(
        "429-outlasts-retries",
        "429 storm longer than the transport's deadline for refusals (the poll ×8)",
        script("poll", Fault.rate_limit(retry_after=2), times=8),
        JobState.DONE,
        None,
        "finished",
        poll_loop="polled through",
    ),
    Case(
        "429-outlasts-grace",
        "429 storm longer than the poll loop's grace",
        script("poll", Fault.rate_limit(retry_after=2), times=FOREVER),
        JobState.FAILED,
        RATE_LIMITED,
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "500-submit",
        "500 on submit",
        script("submit", Fault.http(500)),
        JobState.FAILED,
        server_error(500),
        None,
    ),
    Case(
        "500-poll",
        "500 while polling ×3 (the transport never retries a 500)",
        script("poll", Fault.http(500), times=3),
        JobState.DONE,
        None,
        "finished",
        poll_loop="polled through",
    ),
    Case(
        "500-outlasts-grace",
        "500 while polling, longer than the poll loop's grace",
        script("poll", Fault.http(500), times=FOREVER),
        JobState.FAILED,
        server_error(500),
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "500-final-status",
        "500 on the final status fetch ×2",
        final_status(Fault.http(500), times=2),
        JobState.DONE,
        None,
        "finished",
        kinds=("image",),
        poll_loop="polled through",
    ),
    Case(
        "500-final-status-outlasts-grace",
        "500 on the final status fetch, longer than the grace",
        final_status(Fault.http(500), times=FOREVER),
        JobState.FAILED,
        server_error(500),
        "cancelled",
        kinds=("image",),
        poll_loop="gave up",
    ),
    Case(
        "502-submit",
        "502 on submit (a POST is not retried: the Horde may have queued it)",
        script("submit", Fault.http(502)),
        JobState.FAILED,
        server_error(502),
        None,
    ),
    Case(
        "502-poll",
        "502 while polling ×3",
        script("poll", Fault.http(502), times=3),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "503-submit",
        "503 with Retry-After on submit",
        script("submit", Fault.http(503, retry_after=5)),
        JobState.DONE,
        None,
        "finished",
        waited="retrying in 0.05s",
    ),
    Case(
        "503-poll",
        "503 while polling ×3",
        script("poll", Fault.http(503), times=3),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "503-outlasts-retries",
        "503 while polling, longer than the transport's retry budget (×8: two failed polls)",
        script("poll", Fault.http(503), times=8),
        JobState.DONE,
        None,
        "finished",
        poll_loop="polled through",
    ),
    Case(
        "503-outlasts-grace",
        "503 while polling, longer than the poll loop's grace",
        script("poll", Fault.http(503), times=FOREVER),
        JobState.FAILED,
        server_error(503),
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "reset-submit",
        "connection reset mid-response on submit",
        script("submit", Fault.drop()),
        JobState.FAILED,
        UNREACHABLE,
        None,
    ),
    Case(
        "reset-poll",
        "connection reset mid-response while polling ×3",
        script("poll", Fault.drop(), times=3),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "reset-outlasts-retries",
        "connection reset while polling ×6, beyond the transport's 4 attempts",
        script("poll", Fault.drop(), times=6),
        JobState.DONE,
        None,
        "finished",
        poll_loop="polled through",
    ),
    Case(
        "reset-outlasts-grace",
        "connection reset while polling, longer than the poll loop's grace",
        script("poll", Fault.drop(), times=FOREVER),
        JobState.FAILED,
        UNREACHABLE,
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "html-poll",
        "Cloudflare HTML 502/504 pages while polling",
        scripts(
            script("poll", Fault.http(502, html=True), times=2), script("poll", Fault.http(504, html=True))
        ),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "html-200-poll",
        "a proxy's HTML page with status 200 while polling",
        script("poll", Fault.http(200, html=True)),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "html-200-outlasts-grace",
        "a proxy's HTML page with status 200 while polling, longer than the grace",
        script("poll", Fault.http(200, html=True), times=FOREVER),
        JobState.FAILED,
        messages.UNREADABLE,
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "schema-200-outlasts-grace",
        "a JSON answer that breaks the schema while polling, longer than the grace",
        script("poll", Fault.http(200), times=FOREVER),
        JobState.FAILED,
        messages.UNEXPECTED_ANSWER,
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "schema-200-submit",
        "a JSON answer that breaks the schema on submit",
        script("submit", Fault.http(200)),
        JobState.FAILED,
        messages.UNEXPECTED_ANSWER,
        None,
    ),
    Case(
        "html-200-submit",
        "a proxy's HTML page with status 200 on submit",
        script("submit", Fault.http(200, html=True)),
        JobState.FAILED,
        messages.UNREADABLE,
        None,
    ),
    Case(
        "500-poll-and-delete",
        "500 while polling past the grace, and again on the DELETE that cancels the request",
        scripts(script("poll", Fault.http(500), times=FOREVER), script("delete", Fault.http(500))),
        JobState.FAILED,
        server_error(500),
        "cancelled",
        poll_loop="gave up",
    ),
    Case(
        "html-submit",
        "Cloudflare HTML 500 page on submit",
        script("submit", Fault.http(500, html=True)),
        JobState.FAILED,
        server_error(500),
        None,
    ),
    Case("faulted", "workers fault the job", faulting_workers, JobState.FAILED, messages.FAULTED, "faulted"),
    Case(
        "expired",
        "the request expires mid-poll",
        script("poll", Fault.expire()),
        JobState.FAILED,
        messages.EXPIRED,
        "expired",
    ),
    Case(
        "slow-download",
        "slow image download (r2, 0.2 s)",
        r2(Fault.delay(0.2), times=1),
        JobState.DONE,
        None,
        "finished",
        kinds=("image", "alchemy"),
    ),
    Case(
        "overloaded",
        "heartbeat says OVERLOADED",
        knob(heartbeat_message="OVERLOADED"),
        JobState.DONE,
        None,
        "finished",
    ),
    Case(
        "maintenance",
        "maintenance mode",
        knob(maintenance_mode=True),
        JobState.FAILED,
        MAINTENANCE,
        None,
    ),
)

MATRIX = [
    pytest.param(case, kind, id=f"{case.id}-{kind}") for case in CASES for kind in KINDS if kind in case.kinds
]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


@pytest.fixture
def fast_retries(server: Server) -> None:
    # The bot's one transport and client, as create_bot built them; only their retry pacing changes.
    server.bot.horde_session.transport.retry = FAST_RETRY
    server.bot.horde.poll_policy = replace(TEST_POLL_POLICY, error_grace_s=GRACE_S)


# The simulator's side of a kept-alive connection lives as long as the connection: infrastructure.
KEEP_ALIVE = "RequestHandler.start"
LINGER_S = 1.0


def live_tasks() -> set[asyncio.Task[Any]]:
    """Every unfinished task but the test's own and the simulator's connection handlers."""
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not task.done()
        and getattr(task.get_coro(), "__qualname__", "") != KEEP_ALIVE
    }


async def leaked_tasks(before: set[asyncio.Task[Any]]) -> list[str]:
    """The tasks started since ``before`` that are still alive after ``LINGER_S`` (real time): the
    simulator's workers may take a moment to drop a job the bot gave up on; a leak stays."""
    deadline = time.perf_counter() + LINGER_S
    # Polled: nothing signals a task ending in another component.
    while (new := live_tasks() - before) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return sorted(f"{task.get_name()}: {getattr(task.get_coro(), '__qualname__', '?')}" for task in new)


async def until_idle(server: Server) -> None:
    """Wait (real time) until the bot runs no job; virtual time is advanced so parked sleeps
    (download retries, polls) happen at once."""
    deadline = time.perf_counter() + SETTLE_S
    while server.bot.jobs.active_jobs():
        if time.perf_counter() > deadline:
            raise AssertionError(f"jobs still running: {server.bot.jobs.active_jobs()}")
        await asyncio.sleep(0.02)
        await server.env.advance_time(1.0)


def status_marker(state: JobState) -> str:
    return {JobState.DONE: "✅ **Done**", JobState.FAILED: "❌ **Failed**"}[state]


# -- the matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "kind"), MATRIX)
async def test_horde_fault(
    case: Case,
    kind: Kind,
    server: Server,
    horde_sim: Simulator,
    fast_retries: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = SPECS[kind]
    case.arrange(horde_sim, spec)
    before = live_tasks()

    result = await server.alice.slash(server.channel, spec.command, **options(kind))
    await until_idle(server)

    # 1. What the user sees: the job's message, public, ending with the fault's own line.
    assert not result.ephemeral
    assert result.response is not None
    message = result.response
    lines = (message.content or "").splitlines()
    assert status_marker(case.state) in lines[0] or status_marker(case.state) in lines
    if case.line is None:
        assert spec.shows_result(message), message.content
        assert not [line for line in lines if line.startswith(("❌", "⚠"))]
    else:
        assert case.line in lines, message.content
        assert "<" not in message.content  # no HTML from an error page reaches the user
    # 2. The journal: one job, in a definite end state, with the same error.
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    assert job.kind == kind
    assert job.state is case.state
    assert job.error == case.line
    # 3. No leaks: nothing running, no task left behind, nothing tracked by the Horde session.
    assert server.bot.jobs.active_jobs() == []
    assert await leaked_tasks(before) == []
    assert server.bot.horde_session.pending == ()
    # 4. Nothing orphaned on the Horde, and the request ended the way the fault implies.
    ledger = horde_sim.state.ledger()
    assert horde_sim.state.orphans() == {}
    assert [entry.end for entry in ledger.values()] == ([case.horde_end] if case.horde_end else [])
    assert horde_sim.counters.faults() > 0 or case.id in ("faulted", "overloaded", "maintenance")
    if case.waited is not None:
        assert any(case.waited in record.getMessage() for record in caplog.records)
    logged = [record.getMessage() for record in caplog.records]
    polled_again = [line for line in logged if "asking again in" in line]
    gave_up = [line for line in logged if "giving up" in line]
    if case.poll_loop is None:
        assert (polled_again, gave_up) == ([], [])
    elif case.poll_loop == "polled through":
        assert polled_again
        assert gave_up == []
    else:
        # Polled again during the grace, then given up once.
        assert len(polled_again) >= 2
        [line] = gave_up
        assert "times in a row" in line


# -- client-side timeouts and failing downloads, on a real clock ------------------------------------

REQUEST_TIMEOUT_S = 0.05
SLOW_ANSWER_S = 0.2
DOWNLOAD_ATTEMPTS = 3


@dataclass
class FinalOutcome:
    """A job listener that keeps the end: ``error`` is the line the job's message ends with."""

    outcome: JobOutcome | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        return None

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self.outcome = outcome
        self.done.set()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_storage(f"sqlite:///{tmp_path / 'jobs.sqlite3'}") as opened:
        yield opened


@pytest.fixture
async def impatient_manager(storage: Storage, horde_sim: Simulator) -> AsyncIterator[JobManager]:
    """The jobs engine as the bot builds it, with a 0.05 s request timeout and download retries
    0.01 s apart (the bot's own are 1 s and 2 s, real seconds that SimCord cannot skip)."""
    session = AIHordeAPIAsyncClientSession(
        base_url=horde_sim.base_url,
        client_agent=TEST_CLIENT_AGENT,
        retry=FAST_RETRY,
        request_timeout=REQUEST_TIMEOUT_S,
        cleanup_timeout=2.0,
    )
    async with session:
        horde = AIHordeAPIAsyncSimpleClient(session, poll_policy=TEST_POLL_POLICY, cleanup_timeout=2.0)
        delivery = ImageDeliverySettings(download_attempts=DOWNLOAD_ATTEMPTS, download_retry_delay_s=0.01)
        manager = JobManager(storage, horde, kinds=job_kinds(delivery), generation_timeout_s=30.0)
        try:
            yield manager
        finally:
            await manager.shutdown(2.0)


async def start_job(manager: JobManager, kind: Kind, listener: FinalOutcome) -> JobRecord:
    placement: dict[str, Any] = {
        "key": "0000000000",
        "key_owner": "anonymous",
        "user_id": 4242,
        "guild_id": None,
        "channel_id": 77,
        "message_id": None,
        "params": {},
        "listener": listener,
    }
    if kind == "image":
        image = ImageGenerateAsyncRequest(
            prompt="a fox", params=ImageGenerationInputPayload(width=64, height=64)
        )
        return await manager.start_job("image", request=image, **placement)
    if kind == "text":
        text = TextGenerateAsyncRequest.model_validate({"prompt": "Once", "params": {"max_length": 16}})
        return await manager.start_job("text", request=text, **placement)
    source = base64.b64encode(png()).decode("ascii")
    alchemy = AlchemyAsyncRequest.model_validate(
        {"source_image": source, "forms": [{"name": "RealESRGAN_x4plus"}]}
    )
    return await manager.start_job("alchemy", request=alchemy, **placement)


async def journalled(storage: Storage, job_id: str) -> JobRecord:
    record = await storage.jobs.get(job_id)
    assert record is not None
    return record


@pytest.mark.parametrize("kind", KINDS)
async def test_a_poll_that_times_out_is_retried(
    kind: Kind, impatient_manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    spec = SPECS[kind]
    horde_sim.state.faults.script(spec.poll, Fault.delay(SLOW_ANSWER_S))
    listener = FinalOutcome()
    before = live_tasks()

    job = await start_job(impatient_manager, kind, listener)
    await asyncio.wait_for(listener.done.wait(), SETTLE_S)

    assert listener.outcome is not None
    assert listener.outcome.state is JobState.DONE
    assert listener.outcome.error is None
    assert (await journalled(storage, job.id)).state is JobState.DONE
    assert impatient_manager.active_jobs() == []
    assert await leaked_tasks(before) == []
    assert horde_sim.counters.faults(spec.poll) == 1
    assert horde_sim.state.orphans() == {}
    assert [entry.end for entry in horde_sim.state.ledger().values()] == ["finished"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_submit_that_times_out_fails_and_is_never_sent_twice(
    kind: Kind, impatient_manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    spec = SPECS[kind]
    horde_sim.state.faults.script(spec.submit, Fault.delay(SLOW_ANSWER_S))
    listener = FinalOutcome()
    before = live_tasks()

    job = await start_job(impatient_manager, kind, listener)
    await asyncio.wait_for(listener.done.wait(), SETTLE_S)

    assert listener.outcome is not None
    assert listener.outcome.state is JobState.FAILED
    assert listener.outcome.error == UNREACHABLE
    stored = await journalled(storage, job.id)
    assert (stored.state, stored.error, stored.horde_id) == (JobState.FAILED, UNREACHABLE, None)
    assert impatient_manager.active_jobs() == []
    await asyncio.sleep(SLOW_ANSWER_S)  # the Horde finishes reading the POST and queues it anyway
    assert await leaked_tasks(before) == []
    # A POST that timed out may have been accepted: it is never retried (no duplicate, no double
    # kudos). The Horde has no idempotency key for generations and the bot never learnt the id, so
    # that one request is left to run and expire on the Horde: the one orphan the bot cannot avoid.
    assert horde_sim.counters.calls(spec.submit) == 1
    ledger = horde_sim.state.ledger()
    assert len(ledger) == 1
    assert set(horde_sim.state.orphans()) == set(ledger)
    assert sum(horde_sim.counters.calls(spec.poll, id=request_id) for request_id in ledger) == 0


IMAGE_KINDS: tuple[Kind, ...] = ("image", "alchemy")


@pytest.mark.parametrize("kind", IMAGE_KINDS)
async def test_a_download_that_fails_once_is_retried(
    kind: Kind, impatient_manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.faults.script("r2_image", Fault.http(500))
    listener = FinalOutcome()

    job = await start_job(impatient_manager, kind, listener)
    await asyncio.wait_for(listener.done.wait(), SETTLE_S)

    assert listener.outcome is not None
    assert (listener.outcome.state, listener.outcome.error, listener.outcome.notes) == (
        JobState.DONE,
        None,
        (),
    )
    assert len(listener.outcome.images) == 1
    assert (await journalled(storage, job.id)).state is JobState.DONE
    assert horde_sim.counters.calls("r2_image") == 2
    assert horde_sim.state.orphans() == {}


@pytest.mark.parametrize("kind", IMAGE_KINDS)
async def test_a_download_that_keeps_failing_is_reported_on_the_result(
    kind: Kind, impatient_manager: JobManager, storage: Storage, horde_sim: Simulator
) -> None:
    horde_sim.state.faults.script("r2_image", Fault.http(500), times=DOWNLOAD_ATTEMPTS)
    listener = FinalOutcome()
    before = live_tasks()

    job = await start_job(impatient_manager, kind, listener)
    await asyncio.wait_for(listener.done.wait(), SETTLE_S)

    # The Horde finished (and charged) the request, but nothing reached the member: the job failed,
    # and its message says the image could not be fetched.
    assert listener.outcome is not None
    assert (listener.outcome.state, listener.outcome.error) == (JobState.FAILED, messages.ALL_LOST)
    assert listener.outcome.images == ()
    assert listener.outcome.notes == (messages.lost_images(1),)
    assert messages.lost_images(1) == "1 image could not be downloaded from the AI Horde."
    stored = await journalled(storage, job.id)
    assert stored.state is JobState.FAILED
    assert json.loads(stored.result_json or "{}")["notes"] == [messages.lost_images(1)]
    assert impatient_manager.active_jobs() == []
    assert await leaked_tasks(before) == []
    assert horde_sim.counters.calls("r2_image") == DOWNLOAD_ATTEMPTS
    assert horde_sim.state.orphans() == {}
    assert [entry.end for entry in horde_sim.state.ledger().values()] == ["finished"]
