"""Polling through transient failures: a failed poll of an accepted request is polled again with
backoff for ``PollPolicy.error_grace_s``, instead of ending (and DELETEing) the generation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import PIL.Image
import pytest

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    AIHordeRequestExpiredError,
    AlchemyAsyncRequest,
    ImageGenerateAsyncRequest,
    ImageGenerateCheckResponse,
    ImageGenerationInputPayload,
    PollPolicy,
    RequestErrorResponse,
    RetryPolicy,
    TextGenerateAsyncRequest,
)
from bot.horde._clients.polling import PollEnd
from bot.horde._clients.scheduler import PollScheduler
from horde_simulator import Fault, Knobs, Simulator, SimulatorConfig, run_simulator

# -- the policy ------------------------------------------------------------------------------


def test_the_delay_after_a_failure_doubles_from_min_to_max_interval() -> None:
    policy = PollPolicy()
    assert [policy.error_delay(failures, 0.0) for failures in range(1, 7)] == [1, 2, 4, 8, 15, 15]


def test_the_grace_is_counted_from_the_first_failure() -> None:
    policy = PollPolicy(error_grace_s=120.0)
    assert policy.error_delay(11, 119.9) == 15.0
    assert policy.error_delay(12, 120.0) is None
    # 0 turns the tolerance off: the first failure ends the generation, as it used to.
    assert PollPolicy(error_grace_s=0).error_delay(1, 0.0) is None


def test_the_policy_refuses_a_shrinking_backoff_or_a_negative_grace() -> None:
    with pytest.raises(ValueError, match="error_backoff"):
        PollPolicy(error_backoff=0.5)
    with pytest.raises(ValueError, match="error_grace_s"):
        PollPolicy(error_grace_s=-1)


def error(status: int) -> AIHordeRequestError:
    return AIHordeRequestError(RequestErrorResponse(message="no", http_status=status))


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (0, True),  # refused, reset, timed out
        (200, True),  # a proxy's page instead of the Horde's JSON
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
    ],
)
def test_which_errors_are_transient(status: int, transient: bool) -> None:
    assert error(status).is_transient is transient


def test_an_expired_request_is_not_transient() -> None:
    expired = AIHordeRequestExpiredError(RequestErrorResponse(message="gone", http_status=404))
    assert not expired.is_transient


# -- the scheduler -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    n: int
    done: bool = False


class Flaky:
    """A fetch that answers or raises as scripted; after the script it repeats the last entry."""

    def __init__(self, *script: Progress | Exception) -> None:
        self.script = list(script)
        self.fetches = 0

    async def fetch(self) -> Progress:
        entry = self.script[min(self.fetches, len(self.script) - 1)]
        self.fetches += 1
        await asyncio.sleep(0)
        if isinstance(entry, Exception):
            raise entry
        return entry


@dataclass
class Tolerance:
    """An ``error_delay`` that records its calls and polls again after ``delay`` up to ``limit``
    failures in a row (``None``: no limit)."""

    delay: float = 0.01
    limit: int | None = None
    calls: list[tuple[str, int, float]] | None = None

    def __call__(self, exc: Exception, failures: int, failing_for: float) -> float | None:
        if self.calls is None:
            self.calls = []
        self.calls.append((str(exc), failures, failing_for))
        return None if self.limit is not None and failures >= self.limit else self.delay

    @property
    def failures(self) -> list[int]:
        return [failures for _, failures, _ in self.calls or []]


@pytest.fixture
async def scheduler() -> AsyncIterator[PollScheduler]:
    running = PollScheduler()
    yield running
    await running.close()


async def poll(
    scheduler: PollScheduler, flaky: Flaky, tolerance: Tolerance | None, **kwargs: object
) -> tuple[PollEnd, Progress | None, list[int]]:
    seen: list[int] = []

    async def progress(answer: Progress) -> None:
        seen.append(answer.n)

    options: dict[str, object] = {"time_limit": 5.0, "progress_callback": progress}
    options.update(kwargs)
    outcome = await scheduler.poll(
        flaky.fetch,
        is_final=lambda p: p.done,
        next_delay=lambda _: 0.01,
        error_delay=tolerance,
        **options,  # type: ignore[arg-type]
    )
    return outcome.end, outcome.last, seen


async def test_failures_in_a_row_are_polled_through_and_an_answer_resets_the_count(
    scheduler: PollScheduler,
) -> None:
    flaky = Flaky(
        error(500), error(0), Progress(1), error(503), error(429), error(200), Progress(2, done=True)
    )
    tolerance = Tolerance()

    end, last, seen = await poll(scheduler, flaky, tolerance)

    assert (end, last) == (PollEnd.FINAL, Progress(2, done=True))
    assert tolerance.failures == [1, 2, 1, 2, 3]
    assert seen == [1, 2]  # the callback hears answers only
    assert flaky.fetches == 7


async def test_failing_for_counts_from_the_end_of_the_first_failure(scheduler: PollScheduler) -> None:
    flaky = Flaky(error(500), error(500), error(500), Progress(1, done=True))
    tolerance = Tolerance(delay=0.05)

    await poll(scheduler, flaky, tolerance)

    assert tolerance.calls is not None
    spans = [failing_for for _, _, failing_for in tolerance.calls]
    assert spans[0] == 0.0
    assert spans[1] == pytest.approx(0.05, abs=0.03)
    assert spans[2] == pytest.approx(0.10, abs=0.05)


async def test_when_the_grace_is_used_up_the_last_failure_is_raised(scheduler: PollScheduler) -> None:
    flaky = Flaky(Progress(1), error(500), error(502), error(503))
    tolerance = Tolerance(limit=3)

    with pytest.raises(AIHordeRequestError) as caught:
        await poll(scheduler, flaky, tolerance)

    assert caught.value.http_status == 503
    assert tolerance.failures == [1, 2, 3]
    assert flaky.fetches == 4
    assert len(scheduler) == 0


@pytest.mark.parametrize("tolerance", [None, Tolerance(limit=1)], ids=["no-error-delay", "declined"])
async def test_a_failure_nobody_tolerates_is_raised_at_once(
    scheduler: PollScheduler, tolerance: Tolerance | None
) -> None:
    flaky = Flaky(Progress(1), error(404), Progress(2, done=True))

    with pytest.raises(AIHordeRequestError) as caught:
        await poll(scheduler, flaky, tolerance)

    assert caught.value.http_status == 404
    assert flaky.fetches == 2


async def test_an_error_from_the_callback_is_never_polled_through(scheduler: PollScheduler) -> None:
    async def broken(_: Progress) -> None:
        raise KeyError("callback")

    tolerance = Tolerance()
    with pytest.raises(KeyError, match="callback"):
        await poll(scheduler, Flaky(Progress(1)), tolerance, progress_callback=broken)
    assert tolerance.calls is None


async def test_a_cancel_while_failing_ends_cancelled_with_the_last_answer(scheduler: PollScheduler) -> None:
    flaky = Flaky(Progress(1), error(500))
    cancel = asyncio.Event()

    def cancel_on_the_third(exc: Exception, failures: int, failing_for: float) -> float:
        if failures == 3:
            cancel.set()
        return 0.01

    outcome = await scheduler.poll(
        flaky.fetch,
        is_final=lambda p: p.done,
        next_delay=lambda _: 0.01,
        time_limit=5.0,
        cancel_event=cancel,
        error_delay=cancel_on_the_third,
    )

    assert (outcome.end, outcome.last) == (PollEnd.CANCELLED, Progress(1))
    assert flaky.fetches == 4


async def test_the_deadline_while_failing_ends_timed_out_with_the_last_answer(
    scheduler: PollScheduler,
) -> None:
    flaky = Flaky(Progress(1), error(0))
    started = time.monotonic()

    end, last, seen = await poll(scheduler, flaky, Tolerance(delay=0.02), time_limit=0.2)

    assert (end, last, seen) == (PollEnd.TIMED_OUT, Progress(1), [1])
    assert time.monotonic() - started == pytest.approx(0.2, abs=0.1)


# -- the simple client, against the simulator ---------------------------------------------------

# Polls every 10-50 ms, and after a failure 10, 20, 40, 50 … ms later for at most 0.5 s.
POLICY = PollPolicy(
    min_interval=0.01,
    max_interval=0.05,
    processing_max_interval=0.02,
    unknown_wait_interval=0.01,
    first_poll_delay=0,
    final_status_polls=0,  # the faults below are on generate/check
    error_grace_s=0.5,
)
FOREVER = 1000


def png() -> str:
    out = io.BytesIO()
    PIL.Image.new("RGB", (16, 16), "blue").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


@contextlib.asynccontextmanager
async def simulated(
    policy: PollPolicy = POLICY,
) -> AsyncIterator[tuple[Simulator, AIHordeAPIAsyncSimpleClient]]:
    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=0.05))) as sim:
        # One attempt per call: every failure the simulator serves is one failed poll.
        session = AIHordeAPIAsyncClientSession(base_url=sim.base_url, retry=RetryPolicy(max_attempts=1))
        async with session:
            yield sim, AIHordeAPIAsyncSimpleClient(session, poll_policy=policy, cleanup_timeout=2.0)


async def generate(client: AIHordeAPIAsyncSimpleClient, kind: str, **kwargs: object) -> tuple[int, str]:
    """Runs one generation of ``kind``; returns how many results came back, and the id."""
    if kind == "image":
        params = ImageGenerationInputPayload(width=64, height=64)
        image = ImageGenerateAsyncRequest(prompt="a fox", params=params)
        status, gen_id = await client.image_generate_request(image, **kwargs)  # type: ignore[arg-type]
        return len(status.generations), gen_id
    if kind == "text":
        text = TextGenerateAsyncRequest.model_validate({"prompt": "Once", "params": {"max_length": 16}})
        text_status, gen_id = await client.text_generate_request(text, **kwargs)  # type: ignore[arg-type]
        return len(text_status.generations), gen_id
    alchemy = AlchemyAsyncRequest.model_validate({"source_image": png(), "forms": [{"name": "caption"}]})
    alchemy_status, gen_id = await client.alchemy_request(alchemy, **kwargs)  # type: ignore[arg-type]
    return len(alchemy_status.forms), gen_id


POLL_ENDPOINT = {"image": "generate_check", "text": "text_status", "alchemy": "interrogate_status"}
DELETE_ENDPOINT = {"image": "generate_delete", "text": "text_delete", "alchemy": "interrogate_delete"}
KINDS = tuple(POLL_ENDPOINT)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_few_failed_polls_are_polled_through(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    async with simulated() as (sim, client):
        sim.state.faults.script(POLL_ENDPOINT[kind], Fault.http(500), times=2)
        sim.state.faults.script(POLL_ENDPOINT[kind], Fault.drop())
        results, gen_id = await generate(client, kind)
        assert client.horde_client_session.pending == ()
    assert results == 1
    assert sim.counters.faults(POLL_ENDPOINT[kind]) == 3
    assert sim.counters.calls(DELETE_ENDPOINT[kind]) == 0
    assert sim.state.ledger()[gen_id].end == "finished"
    again = [r.getMessage() for r in caplog.records if "asking again" in r.getMessage()]
    counts = [line.split("failed (")[1].split(")")[0] for line in again]
    assert counts == ["1 in a row", "2 in a row", "3 in a row"]


@pytest.mark.parametrize("kind", KINDS)
async def test_failures_past_the_grace_end_the_generation_and_delete_it(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulated() as (sim, client):
        sim.state.faults.script(POLL_ENDPOINT[kind], Fault.http(503), times=FOREVER)
        started = asyncio.get_running_loop().time()
        with pytest.raises(AIHordeRequestError) as caught:
            await generate(client, kind)
        took = asyncio.get_running_loop().time() - started
        assert client.horde_client_session.pending == ()
    assert caught.value.http_status == 503
    # Past the grace, but not by much: the client-side limit on check (10 a second per id) may hold
    # the poll after the grace ran out for up to a second.
    assert POLICY.error_grace_s <= took < POLICY.error_grace_s + 1.2
    # Polled again 10, 20, 40, then every 50 ms: about a dozen polls within the half second.
    assert 8 <= sim.counters.faults(POLL_ENDPOINT[kind]) <= 16
    [gen_id] = sim.state.ledger()
    assert sim.state.ledger()[gen_id].end == "cancelled"
    assert sim.state.orphans() == {}
    assert sum("giving up" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("fault", [Fault.http(403), Fault.expire()], ids=["403", "expired-404"])
async def test_a_failure_that_is_not_transient_ends_the_generation_at_once(fault: Fault) -> None:
    async with simulated() as (sim, client):
        sim.state.faults.script("generate_check", fault)
        with pytest.raises(AIHordeRequestError) as caught:
            await generate(client, "image")
    assert caught.value.http_status in (403, 404)
    assert sim.counters.calls("generate_check") == 1
    [gen_id] = sim.state.ledger()
    # 403: cancelled at once. 404: the Horde no longer has it, nothing to cancel.
    assert sim.counters.deletes(gen_id) == (1 if caught.value.http_status == 403 else 0)


async def test_without_a_grace_the_first_failure_ends_the_generation() -> None:
    async with simulated(replace(POLICY, error_grace_s=0)) as (sim, client):
        sim.state.faults.script("generate_check", Fault.http(500))
        with pytest.raises(AIHordeRequestError):
            await generate(client, "image")
    assert sim.counters.calls("generate_check") == 1


async def test_progress_keeps_the_last_answer_while_polls_fail() -> None:
    checks: list[ImageGenerateCheckResponse] = []

    async with simulated() as (sim, client):

        async def progress(check: ImageGenerateCheckResponse) -> None:
            if not checks:  # after the first answer, the Horde fails for a while
                sim.state.faults.script("generate_check", Fault.http(500), times=3)
            checks.append(check)

        results, _ = await generate(client, "image", progress_callback=progress)
    assert results == 1
    assert sim.counters.faults("generate_check") == 3
    # Only answers reach the callback: no gap, no fake "nothing known" in between.
    assert checks[-1].done
    assert len(checks) == sim.counters.calls("generate_check") - 3


async def test_the_final_image_status_is_fetched_through_failures() -> None:
    async with simulated() as (sim, client):
        sim.state.faults.script("generate_status", Fault.http(500), times=2)
        results, gen_id = await generate(client, "image")
    assert results == 1
    assert sim.counters.calls("generate_status", id=gen_id) == 3
    assert sim.counters.deletes(gen_id) == 0


async def test_the_final_image_status_failing_past_the_grace_ends_the_generation() -> None:
    # Asked again after 0.05, 0.1, 0.1 … s for 0.3 s: 5 fetches, within the status endpoint's
    # 10 a minute (the rate limiter would make an 11th wait for the minute to pass).
    brief = replace(POLICY, min_interval=0.05, max_interval=0.1, error_grace_s=0.3)
    async with simulated(brief) as (sim, client):
        sim.state.faults.script("generate_status", Fault.http(502), times=FOREVER)
        with pytest.raises(AIHordeRequestError) as caught:
            await generate(client, "image")
    assert caught.value.http_status == 502
    [gen_id] = sim.state.ledger()
    assert 4 <= sim.counters.calls("generate_status", id=gen_id) <= 6
    assert sim.counters.deletes(gen_id) == 1


async def test_a_cancel_while_the_final_status_fails_returns_the_deletes_answer() -> None:
    async with simulated(replace(POLICY, error_grace_s=30.0)) as (sim, client):
        cancel = asyncio.Event()
        sim.state.faults.script("generate_status", Fault.http(500), times=FOREVER)

        async def cancel_once_failing() -> None:
            while sim.counters.faults("generate_status") < 2:  # noqa: ASYNC110 - the simulator signals nothing
                await asyncio.sleep(0.01)
            cancel.set()

        canceller = asyncio.create_task(cancel_once_failing())
        results, gen_id = await generate(client, "image", cancel_event=cancel)
        await canceller
    # The DELETE of a finished request answers with its status: the image is not lost.
    assert results == 1
    assert sim.counters.deletes(gen_id) == 1
