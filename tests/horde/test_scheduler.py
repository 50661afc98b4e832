"""The poll scheduler: budgets, spreading, prompt completion, cancellation, shutdown, and scale."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
    PollPolicy,
)
from bot.horde._clients.polling import PollEnd, ProgressDelay
from bot.horde._clients.scheduler import PollScheduler, PollSchedulerClosedError
from bot.horde.consts import RateLimit
from bot.horde.ratelimit import DEFAULT_RATE_LIMITS
from horde_simulator import Knobs, RateLimits, SimulatorConfig, SimUser, run_simulator

BENCH_KEY = "sched-bench-key-000001"


@dataclass(frozen=True)
class Progress:
    wait_time: int
    queue_position: int
    processing: int
    done: bool
    waiting: int = 0
    is_possible: bool = True


class FakeGeneration:
    """A generation finishing ``duration`` seconds after it starts; estimates are in 1/100 s."""

    def __init__(self, duration: float, *, estimate: bool = True) -> None:
        self.finishes_at = time.monotonic() + duration
        self.estimate = estimate
        self.fetches: list[float] = []
        self.running = 0
        self.most_running = 0

    async def fetch(self) -> Progress:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        now = time.monotonic()
        self.fetches.append(now)
        try:
            await asyncio.sleep(0.001)
        finally:
            self.running -= 1
        left = self.finishes_at - now
        hundredths = math.ceil(left * 100) if self.estimate and left > 0 else 0
        return Progress(wait_time=hundredths, queue_position=0, processing=int(left > 0), done=left <= 0)


# Estimates come in 1/100 s, so a processing fraction of 0.01 turns them into seconds.
CENTI_POLICY = PollPolicy(
    min_interval=0.02,
    max_interval=1.0,
    processing_max_interval=1.0,
    processing_wait_fraction=0.01,
    wait_fraction=0.005,
    overdue_max_interval=0.08,
    end_margin=0.003,
)


async def follow(
    scheduler: PollScheduler, gen: FakeGeneration, **kwargs: object
) -> tuple[PollEnd, Progress | None]:
    options: dict[str, object] = {"time_limit": 10.0, "min_gap": 0.02}
    options.update(kwargs)
    outcome = await scheduler.poll(
        gen.fetch,
        is_final=lambda p: p.done,
        next_delay=ProgressDelay(CENTI_POLICY),
        **options,  # type: ignore[arg-type]
    )
    return outcome.end, outcome.last


async def until(predicate: Callable[[], bool], *, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


@pytest.fixture
async def scheduler() -> AsyncIterator[PollScheduler]:
    running = PollScheduler(max_in_flight=8)
    yield running
    await running.close()


# -- the policy ------------------------------------------------------------------------------


class TestPolicy:
    def test_aims_at_the_workers_estimate(self) -> None:
        # Aimed just past the countdown's end (rounded to whole seconds, from an average speed).
        assert PollPolicy().next_delay(12, queue_position=0, processing=1) == pytest.approx(12 * 1.06 + 0.3)
        assert PollPolicy().next_delay(40, queue_position=0, processing=1) == 15.0

    def test_an_overdue_job_is_polled_soon_then_less_often(self) -> None:
        policy = PollPolicy()
        delays = [policy.next_delay(0, queue_position=0, processing=1, overdue_polls=k) for k in range(6)]
        assert delays[0] == 1.0
        assert delays == sorted(delays)
        assert delays[-1] == policy.overdue_max_interval

    def test_progress_delay_counts_overdue_polls_in_a_row(self) -> None:
        delay = ProgressDelay(PollPolicy())
        overdue = Progress(wait_time=0, queue_position=0, processing=1, done=False)
        running = Progress(wait_time=5, queue_position=0, processing=1, done=False)
        assert [delay(overdue), delay(overdue), delay(overdue)] == [1.0, 1.5, 2.25]
        assert delay(running) == pytest.approx(5 * 1.06 + 0.3)
        assert delay(overdue) == 1.0

    def test_rejects_a_shrinking_backoff(self) -> None:
        with pytest.raises(ValueError, match="overdue_backoff"):
            PollPolicy(overdue_backoff=0.5)


# -- budgets and spreading -------------------------------------------------------------------


async def test_a_job_is_never_fetched_faster_than_its_gap_nor_twice_at_once(scheduler: PollScheduler) -> None:
    gens = [FakeGeneration(0.4) for _ in range(5)]
    outcomes = await asyncio.gather(
        *(
            scheduler.poll(
                gen.fetch,
                is_final=lambda p: p.done,
                next_delay=lambda _: 0.0,  # a greedy policy: the gap must hold anyway
                time_limit=5,
                min_gap=0.05,
            )
            for gen in gens
        )
    )
    assert all(outcome.end is PollEnd.FINAL for outcome in outcomes)
    for gen in gens:
        gaps = [b - a for a, b in zip(gen.fetches, gen.fetches[1:], strict=False)]
        assert min(gaps) >= 0.049, gaps
        assert gen.most_running == 1
        assert len(gen.fetches) <= 0.4 / 0.05 + 2


async def test_checks_in_flight_are_bounded() -> None:
    scheduler = PollScheduler(max_in_flight=4)
    running = 0
    most = 0

    async def fetch() -> Progress:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.005)
        running -= 1
        return Progress(0, 0, 0, done=True)

    try:
        outcomes = await asyncio.gather(
            *(
                scheduler.poll(fetch, is_final=lambda p: p.done, next_delay=lambda _: 0.0, time_limit=5)
                for _ in range(60)
            )
        )
    finally:
        await scheduler.close()
    assert [o.end for o in outcomes] == [PollEnd.FINAL] * 60
    assert most == 4


async def test_the_runner_parks_on_a_timer_while_every_slot_is_busy() -> None:
    """With all fetches waiting (e.g. in the rate limiter), the runner must look idle to SimCord:
    asleep on a timer, not on a bare future."""
    scheduler = PollScheduler(max_in_flight=2)
    release = asyncio.Event()

    async def fetch() -> Progress:
        await release.wait()
        return Progress(0, 0, 0, done=True)

    callers = [
        asyncio.create_task(
            scheduler.poll(fetch, is_final=lambda p: p.done, next_delay=lambda _: 0.0, time_limit=5)
        )
        for _ in range(3)
    ]
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert scheduler.in_flight == 2
        [runner] = [task for task in scheduler.tasks if task.get_name() == "horde-poll-scheduler"]
        sleeper = runner._fut_waiter  # type: ignore[attr-defined]
        assert isinstance(sleeper, asyncio.Task)  # Wakeup.wait() sleeps in a task of its own
        release.set()
        async with asyncio.timeout(1):
            outcomes = await asyncio.gather(*callers)
        assert [o.end for o in outcomes] == [PollEnd.FINAL] * 3
    finally:
        await scheduler.close()


async def test_a_herd_of_jobs_is_spread_over_time() -> None:
    rate, burst = 500.0, 20
    scheduler = PollScheduler(max_in_flight=64, max_rate=rate, burst=burst)
    starts: dict[int, list[float]] = defaultdict(list)

    def fetcher(index: int) -> Callable[[], Awaitable[Progress]]:
        async def fetch() -> Progress:
            starts[index].append(time.monotonic())
            return Progress(30, 3, 0, done=len(starts[index]) == 2)

        return fetch

    try:
        await asyncio.gather(
            *(
                scheduler.poll(fetcher(i), is_final=lambda p: p.done, next_delay=lambda _: 0.05, time_limit=5)
                for i in range(300)
            )
        )
    finally:
        await scheduler.close()
    first = min(t for fetches in starts.values() for t in fetches)
    times = sorted(t - first for fetches in starts.values() for t in fetches)
    assert len(times) == 600
    # A token bucket lets through at most burst + rate * T in any T seconds; the slack is for
    # the event loop starting the fetches a little after the scheduler released them.
    assert times[-1] >= (600 - burst) / rate * 0.9
    per_window = Counter(int(t / 0.1) for t in times)
    assert max(per_window.values()) <= burst + rate * 0.1 + 25, per_window


async def test_a_few_jobs_are_polled_exactly_when_due(scheduler: PollScheduler) -> None:
    gens = [FakeGeneration(10.0) for _ in range(5)]
    await asyncio.gather(
        *(
            scheduler.poll(gen.fetch, is_final=lambda p: p.done, next_delay=lambda _: 0.1, time_limit=0.35)
            for gen in gens
        )
    )
    for gen in gens:
        offsets = [t - gen.fetches[0] for t in gen.fetches]
        assert offsets == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.35], abs=0.03)


# -- completion, cancellation, errors ---------------------------------------------------------


async def test_a_finished_job_is_noticed_at_its_estimate_with_few_fetches(scheduler: PollScheduler) -> None:
    gens = [FakeGeneration(d) for d in (0.3, 0.5, 0.8)]
    results = await asyncio.gather(*(follow(scheduler, gen) for gen in gens))
    for gen, (end, last) in zip(gens, results, strict=True):
        assert end is PollEnd.FINAL
        assert last is not None
        assert last.done
        lag = gen.fetches[-1] - gen.finishes_at
        assert 0 <= lag < 0.06, lag  # the estimate is rounded up to 10 ms, plus the loop
        assert len(gen.fetches) <= 3, len(gen.fetches)


async def test_without_an_estimate_a_finished_job_is_noticed_within_the_overdue_cap(
    scheduler: PollScheduler,
) -> None:
    gen = FakeGeneration(0.5, estimate=False)
    end, _ = await follow(scheduler, gen)
    assert end is PollEnd.FINAL
    assert gen.fetches[-1] - gen.finishes_at < CENTI_POLICY.overdue_max_interval + 0.03
    gaps = [b - a for a, b in zip(gen.fetches, gen.fetches[1:], strict=False)]
    assert gaps[-1] > gaps[0]  # backing off while overdue


async def test_cancelling_one_caller_leaves_the_others_alone(scheduler: PollScheduler) -> None:
    gens = [FakeGeneration(0.5) for _ in range(10)]
    tasks = [asyncio.create_task(follow(scheduler, gen)) for gen in gens]
    await asyncio.sleep(0.1)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    fetched_when_cancelled = len(gens[3].fetches)
    assert all(result[0] is PollEnd.FINAL for i, result in enumerate(results) if i != 3)  # type: ignore[index]
    await asyncio.sleep(0.05)
    assert len(gens[3].fetches) == fetched_when_cancelled
    assert len(scheduler) == 0


async def test_cancelling_a_caller_cancels_its_running_fetch(scheduler: PollScheduler) -> None:
    fetching = asyncio.Event()
    fetch_cancelled = asyncio.Event()

    async def slow() -> Progress:
        fetching.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            fetch_cancelled.set()
            raise
        return Progress(0, 0, 0, done=True)

    caller = asyncio.create_task(
        scheduler.poll(slow, is_final=lambda p: p.done, next_delay=lambda _: 1.0, time_limit=10)
    )
    await asyncio.wait_for(fetching.wait(), 1)
    caller.cancel()
    await asyncio.wait_for(fetch_cancelled.wait(), 1)
    assert scheduler.in_flight == 0


async def test_a_cancel_event_stops_one_job_and_returns_its_last_progress(scheduler: PollScheduler) -> None:
    stop = asyncio.Event()
    stopped, other = FakeGeneration(5.0), FakeGeneration(0.3)
    first = asyncio.create_task(follow(scheduler, stopped, cancel_event=stop))
    second = asyncio.create_task(follow(scheduler, other))
    await asyncio.sleep(0.05)
    stop.set()
    end, last = await asyncio.wait_for(first, 0.5)
    assert end is PollEnd.CANCELLED
    assert last is not None
    assert not last.done
    assert (await second)[0] is PollEnd.FINAL


async def test_a_cancel_event_lets_the_running_fetch_and_callback_finish(scheduler: PollScheduler) -> None:
    stop = asyncio.Event()
    seen: list[int] = []

    async def fetch() -> Progress:
        stop.set()  # while this fetch is in flight
        await asyncio.sleep(0.02)
        return Progress(10, 0, 1, done=False)

    async def progress(value: Progress) -> None:
        await asyncio.sleep(0.02)
        seen.append(value.wait_time)

    outcome = await scheduler.poll(
        fetch,
        is_final=lambda p: p.done,
        next_delay=lambda _: 1.0,
        time_limit=5,
        progress_callback=progress,
        cancel_event=stop,
    )
    assert outcome.end is PollEnd.CANCELLED
    assert outcome.last == Progress(10, 0, 1, done=False)
    assert seen == [10]


async def test_the_deadline_ends_with_one_last_fetch(scheduler: PollScheduler) -> None:
    gen = FakeGeneration(10.0)
    started = time.monotonic()
    end, last = await follow(scheduler, gen, time_limit=0.3)
    assert end is PollEnd.TIMED_OUT
    assert last is not None
    assert gen.fetches[-1] - started == pytest.approx(0.3, abs=0.05)


async def test_errors_from_fetch_and_callback_reach_the_caller(scheduler: PollScheduler) -> None:
    async def broken() -> Progress:
        raise RuntimeError("boom")

    async def ok() -> Progress:
        return Progress(1, 0, 1, done=False)

    async def bad_callback(_: Progress) -> None:
        raise KeyError("callback")

    with pytest.raises(RuntimeError, match="boom"):
        await scheduler.poll(broken, is_final=lambda p: p.done, next_delay=lambda _: 0.1, time_limit=1)
    with pytest.raises(KeyError, match="callback"):
        await scheduler.poll(
            ok,
            is_final=lambda p: p.done,
            next_delay=lambda _: 0.1,
            time_limit=1,
            progress_callback=bad_callback,
        )
    assert len(scheduler) == 0


# -- lifecycle -------------------------------------------------------------------------------


async def test_an_idle_scheduler_keeps_no_task(scheduler: PollScheduler) -> None:
    assert scheduler.tasks == ()
    await follow(scheduler, FakeGeneration(0.05))
    await asyncio.sleep(0)
    assert scheduler.tasks == ()


async def test_close_fails_the_waiting_callers_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    scheduler = PollScheduler(max_in_flight=2)
    gens = [FakeGeneration(60.0) for _ in range(20)]
    callers = [asyncio.create_task(follow(scheduler, gen)) for gen in gens]
    await asyncio.sleep(0.1)
    assert scheduler.tasks
    await scheduler.close()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 2)
    assert all(isinstance(result, PollSchedulerClosedError) for result in results)
    assert scheduler.tasks == ()
    assert asyncio.all_tasks() - before == set()
    with pytest.raises(PollSchedulerClosedError):
        await follow(scheduler, FakeGeneration(0.1))


async def test_the_session_owns_the_scheduler_and_stops_it_on_close() -> None:
    knobs = Knobs(speed=30.0, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(knobs=knobs)) as sim:
        session = AIHordeAPIAsyncClientSession(base_url=sim.base_url, rate_limits=None)
        policy = PollPolicy(min_interval=0.02, max_interval=0.05)
        client = AIHordeAPIAsyncSimpleClient(session, poll_policy=policy)
        first = session.poll_scheduler
        assert session.poll_scheduler is first
        assert not first.tasks  # nothing runs before the first poll
        ids: list[str] = []

        async def submitted(gen_id: str) -> None:
            ids.append(gen_id)

        job = asyncio.create_task(client.image_generate_request(image_request(), on_submitted=submitted))
        await until(lambda: sim.counters.calls("generate_check") >= 2)
        assert first.tasks
        await session.close()
        with pytest.raises(PollSchedulerClosedError):
            await job
        assert first.tasks == ()
        assert sim.counters.deletes(ids[0]) == 1  # by the session's close, not again by the client
        assert session.poll_scheduler is not first


# -- against the simulator --------------------------------------------------------------------


def image_request() -> ImageGenerateAsyncRequest:
    return ImageGenerateAsyncRequest(
        prompt="a lighthouse",
        models=["stable_diffusion"],
        params=ImageGenerationInputPayload(width=64, height=64),
    )


async def test_sim_requests_report_when_they_finished() -> None:
    knobs = Knobs(speed=0.05, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(knobs=knobs)) as sim, aiohttp.ClientSession() as http:
        async with http.post(
            sim.url("v2/generate/async"),
            json={"prompt": "x", "params": {"width": 64, "height": 64}},
            headers={"apikey": "0000000000"},
        ) as response:
            gen_id = (await response.json())["id"]
        async with http.get(sim.root_url + "_sim/requests") as response:
            early = await response.json()
        assert early["requests"][gen_id]["finished_at"] is None
        await until(lambda: sim.state.requests[gen_id].finished_at is not None)
        async with http.get(sim.root_url + "_sim/requests") as response:
            late = await response.json()
    entry = late["requests"][gen_id]
    assert entry["kind"] == "image"
    assert entry["created"] < entry["finished_at"] <= late["now"]
    assert late["now"] == pytest.approx(time.monotonic(), abs=1.0)  # the simulator's clock is monotonic


async def test_a_thousand_generations_in_flight_finish_without_a_single_429() -> None:
    # Submissions are not what is measured: the async limits are lifted on both sides (a
    # whitelisted bot); check (10/s per id) and status (10/min per id) keep the Horde's limits.
    unlimited_submits = RateLimits(
        generate_async_ip=None, generate_async_ip_burst=None, generate_async_key=None
    )
    knobs = Knobs(speed=(0.3, 1.5), worker_threads=2000, rate_limits=unlimited_submits)
    user = SimUser("bench", 9, BENCH_KEY, kudos=1e9, concurrency=100_000)
    client_limits = dataclasses.replace(
        DEFAULT_RATE_LIMITS,
        generate_async_per_key=RateLimit(10_000, 1.0),
        generate_async_per_ip=(RateLimit(10_000, 1.0),),
    )
    policy = PollPolicy(min_interval=0.1, max_interval=1.0)  # 0.1 s: exactly the check budget
    config = SimulatorConfig(knobs=knobs, users=(user,), seed=3)
    async with (
        run_simulator(config) as sim,
        AIHordeAPIAsyncClientSession(
            base_url=sim.base_url, apikey=BENCH_KEY, rate_limits=client_limits
        ) as session,
    ):
        client = AIHordeAPIAsyncSimpleClient(session, poll_policy=policy)
        results = await asyncio.wait_for(
            asyncio.gather(*(client.image_generate_request(image_request()) for _ in range(1000))), 60
        )
        assert sim.counters.rate_limited() == 0
        assert sim.counters.status(429) == 0
        assert all(len(status.generations) == 1 for status, _ in results)
        ids = [gen_id for _, gen_id in results]
        assert all(sim.counters.calls("generate_status", id=gen_id) == 1 for gen_id in ids)
        checks = [sim.counters.calls("generate_check", id=gen_id) for gen_id in ids]
        assert max(checks) <= 8, max(checks)  # jobs of at most 1.5 s, polled at most 10/s
        assert session.poll_scheduler.tasks == ()
        assert session.pending == ()
