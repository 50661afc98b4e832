"""The polling policy on the real Horde's timeline: unlisted, queued (positions falling), a worker's
countdown, done. Pure policy tests, the session's queue estimate, and a scripted Horde that answers
like AI-Horde 5.1.5 (``waiting_prompt.get_status``), ten times faster."""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerateCheckResponse,
    ImageGenerationInputPayload,
    PollPolicy,
)
from bot.horde._clients.estimate import QueueEstimate
from bot.horde._clients.polling import Phase, ProgressDelay, phase
from horde_simulator import Knobs, SimulatorConfig, run_simulator


@dataclass(frozen=True)
class Progress:
    wait_time: int
    queue_position: int
    processing: int
    waiting: int
    is_possible: bool = True


def queued(position: int, wait_time: int = 5) -> Progress:
    return Progress(wait_time=wait_time, queue_position=position, processing=0, waiting=1)


def running(wait_time: int) -> Progress:
    return Progress(wait_time=wait_time, queue_position=0, processing=1, waiting=0)


UNLISTED = Progress(wait_time=0, queue_position=0, processing=0, waiting=1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the policy ------------------------------------------------------------------------------


def test_the_phases_of_a_request() -> None:
    assert phase(0, 0, 1) is Phase.UNLISTED  # just submitted: not in the queue the Horde recomputes
    assert phase(3, 0, 1) is Phase.QUEUED
    assert phase(0, 1, 0) is Phase.WITH_WORKER
    assert phase(2, 1, 1) is Phase.QUEUED  # n > 1: some images still wait
    assert phase(0, 0, 0) is Phase.OTHER


def test_delays_by_phase() -> None:
    policy = PollPolicy()
    # Unlisted: the position shows up within a second.
    assert policy.next_delay(0, queue_position=0, processing=0, waiting=1) == 1.0
    # Queued with a measured drain: aimed at the pop; without one: the Horde's rough estimate.
    assert policy.next_delay(5, queue_position=6, waiting=1, drain_rate=1.0) == pytest.approx(6 * 1.1 + 0.5)
    assert policy.next_delay(5, queue_position=6, waiting=1) == 2.5
    assert policy.next_delay(60, queue_position=6, waiting=1) == 4.0  # soon enough to measure a rate
    assert policy.next_delay(5, queue_position=40, waiting=1, drain_rate=1.0) == 15.0  # fresh for people
    # The worker's countdown: just past its end (whole seconds, from the worker's average speed).
    assert policy.next_delay(4, queue_position=0, processing=1, waiting=0) == pytest.approx(4 * 1.06 + 0.3)
    # No worker can serve it: every 15 s.
    assert policy.next_delay(5, queue_position=6, waiting=1, is_possible=False) == 15.0


def test_the_first_poll_after_a_submission_waits_for_the_queue_to_list_it() -> None:
    assert PollPolicy().first_delay == 2.5
    assert PollPolicy(min_interval=0.05, max_interval=0.2).first_delay == 0.2


# -- the session's estimate of the queue -------------------------------------------------------


def test_the_drain_rate_comes_from_positions_falling_between_polls() -> None:
    estimate = QueueEstimate(min_seconds=2.0)
    assert estimate.rate("k", 0.0) is None
    estimate.observe("k", (12, 0.0), (10, 1.0))
    assert estimate.rate("k", 1.0) is None  # one second of evidence is not enough
    estimate.observe("k", (10, 1.0), (4, 4.0))
    assert estimate.rate("k", 4.0) == pytest.approx(2.0)  # 8 positions in 4 s
    assert estimate.rate("other", 4.0) is None


def test_the_estimate_forgets_with_a_half_life_and_never_goes_negative() -> None:
    estimate = QueueEstimate(half_life_s=10.0, min_seconds=0.0)
    estimate.observe("k", (10, 0.0), (5, 5.0))  # 1 a second
    estimate.observe("k", (5, 15.0), (5, 20.0))  # later, standing still
    # By t = 20 the first 5 s of evidence are 15 s (1.5 half-lives) old.
    weight = 0.5**1.5
    assert estimate.rate("k", 20.0) == pytest.approx(5 * weight / (5 * weight + 5))
    estimate.observe("k", (5, 20.0), (9, 21.0))  # higher priority requests went ahead
    assert estimate.rate("k", 21.0) == 0.0


def test_a_request_taken_by_a_worker_says_the_queue_moved_at_least_that_fast() -> None:
    clock, estimate = Clock(), QueueEstimate()
    delays = ProgressDelay(PollPolicy(), estimate=estimate, queue_key="image", clock=clock)
    delays(queued(6))
    clock.now = 3.0
    delays(running(4))  # taken by a worker within 3 s: at least 6 places in 3 s
    assert estimate.rate("image", 3.0) == pytest.approx(2.0)
    # A slower bound says nothing against the estimate (the pop may have come early): ignored.
    later = ProgressDelay(PollPolicy(), estimate=estimate, queue_key="image", clock=clock)
    later(queued(2))
    clock.now = 13.0
    later(running(4))
    assert estimate.rate("image", 13.0) == pytest.approx(2.0)
    # A faster one shows the estimate too low: it counts.
    faster = ProgressDelay(PollPolicy(), estimate=estimate, queue_key="image", clock=clock)
    faster(queued(8))
    clock.now = 14.0
    faster(running(4))
    assert estimate.rate("image", 14.0) > 2.0


def test_a_second_job_is_aimed_with_what_the_first_one_taught() -> None:
    clock, estimate = Clock(), QueueEstimate()
    policy = PollPolicy()
    first = ProgressDelay(policy, estimate=estimate, queue_key="image", clock=clock)
    assert first(queued(12)) == 2.5  # no rate yet: half the Horde's estimate
    clock.now = 10.0
    assert first(queued(2)) == pytest.approx(2.7)  # 10 positions in 10 s: just after its pop, 2 s away
    second = ProgressDelay(policy, estimate=estimate, queue_key="image", clock=clock)
    clock.now = 11.0
    assert second(queued(7)) == pytest.approx(8.2)  # its first answer already has the rate


def test_a_countdown_makes_the_next_poll_fetch_the_status_a_few_times_at_most() -> None:
    delays = ProgressDelay(PollPolicy(final_status_polls=2))
    delays(queued(3))
    assert not delays.fetch_final
    assert delays(running(4)) == pytest.approx(4.54)
    assert delays.fetch_final
    delays.fetched_final()
    assert delays(running(0)) == 1.0  # overdue
    assert delays.fetch_final
    delays.fetched_final()
    assert delays(running(0)) == 1.5
    assert not delays.fetch_final  # checks again: status allows 10 a minute per request
    long = ProgressDelay(PollPolicy())
    long(running(30))
    assert not long.fetch_final  # looked at again in 15 s, not expected done


# -- a scripted Horde with the real timeline ---------------------------------------------------

SPEED = 10  # the scripted Horde runs ten times faster; its seconds are tenths
FAST = PollPolicy(
    min_interval=1 / SPEED,
    max_interval=15 / SPEED,
    processing_max_interval=15 / SPEED,
    processing_wait_fraction=1 / SPEED,
    wait_fraction=0.5 / SPEED,
    probe_interval=4 / SPEED,
    first_poll_delay=2.5 / SPEED,
    pop_margin=0.5 / SPEED,
    end_margin=0.3 / SPEED,
    pop_fraction=0.1,
    end_fraction=0.06,
    overdue_max_interval=4 / SPEED,
)


@dataclass
class RealTimeline:
    """One request: unlisted for a second, then queued at ``position`` falling one place every
    ``per_position`` seconds (``wait_time`` a constant per-job estimate), then on a worker for
    ``duration`` seconds counting down (rounded), then done. All in the Horde's (scaled) seconds."""

    position: int
    per_position: float
    duration: float
    submitted: float = 0.0
    checks: list[float] = field(default_factory=list)
    statuses: list[float] = field(default_factory=list)

    def elapsed(self) -> float:
        return (time.monotonic() - self.submitted) * SPEED

    @property
    def popped_at(self) -> float:
        return 1.0 + self.position * self.per_position

    @property
    def done_at(self) -> float:
        return self.popped_at + self.duration

    def progress(self) -> dict[str, object]:
        t = self.elapsed()
        base = {"finished": 0, "restarted": 0, "faulted": False, "kudos": 4.0, "is_possible": True}
        if t < 1.0:
            return {**base, "waiting": 1, "processing": 0, "done": False, "wait_time": 0, "queue_position": 0}
        if t < self.popped_at:
            position = self.position - math.floor((t - 1.0) / self.per_position)
            return {
                **base,
                "waiting": 1,
                "processing": 0,
                "done": False,
                "wait_time": 5,
                "queue_position": position,
            }
        if t < self.done_at:
            left = round(self.done_at - t)
            return {
                **base,
                "waiting": 0,
                "processing": 1,
                "done": False,
                "wait_time": left,
                "queue_position": 0,
            }
        return {
            **base,
            "waiting": 0,
            "processing": 0,
            "finished": 1,
            "done": True,
            "wait_time": 0,
            "queue_position": 0,
        }


@contextlib.asynccontextmanager
async def scripted(timeline: RealTimeline) -> AsyncIterator[str]:
    async def submit(request: web.Request) -> web.Response:
        timeline.submitted = time.monotonic()
        return web.json_response({"id": "00000000-0000-4000-8000-000000000001", "kudos": 4.0}, status=202)

    async def check(request: web.Request) -> web.Response:
        timeline.checks.append(timeline.elapsed())
        return web.json_response(timeline.progress())

    async def status(request: web.Request) -> web.Response:
        timeline.statuses.append(timeline.elapsed())
        body = timeline.progress()
        done = body["done"]
        generation = {"id": "g1", "img": "https://r2.example/g1.webp", "seed": "1", "worker_id": "w"}
        gens = (
            [{**generation, "worker_name": "w", "model": "stable_diffusion", "state": "ok"}] if done else []
        )
        return web.json_response({**body, "generations": gens, "shared": False})

    app = web.Application()
    app.router.add_post("/api/v2/generate/async", submit)
    app.router.add_get("/api/v2/generate/check/{id}", check)
    app.router.add_get("/api/v2/generate/status/{id}", status)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/api/"))
    finally:
        await server.close()


async def follow(timeline: RealTimeline) -> list[ImageGenerateCheckResponse]:
    seen: list[ImageGenerateCheckResponse] = []

    async def progress(check: ImageGenerateCheckResponse) -> None:
        seen.append(check)

    request = ImageGenerateAsyncRequest(
        prompt="a fox", params=ImageGenerationInputPayload(width=64, height=64)
    )
    async with (
        scripted(timeline) as url,
        AIHordeAPIAsyncClientSession(base_url=url, rate_limits=None) as session,
    ):
        # Its evidence needs two of the Horde's seconds, scaled like everything else here.
        session.queue_estimate = QueueEstimate(min_seconds=2 / SPEED)
        client = AIHordeAPIAsyncSimpleClient(session, poll_policy=FAST)
        status, _ = await client.image_generate_request(request, progress_callback=progress)
    assert status.done
    return seen


async def test_a_queued_job_is_checked_at_its_pop_then_at_its_countdowns_end() -> None:
    """Eight places at one a second, then five seconds on a worker. Checks: one when listed, one
    more to measure the queue's pace, one just after the pop to read the countdown; then the
    status once, where the countdown ends (not every 2.5 s while queued, as the Horde's constant
    ``wait_time`` of 5 would have it)."""
    timeline = RealTimeline(position=8, per_position=1.0, duration=5.0)
    seen = await follow(timeline)
    assert len(timeline.checks) <= 4, timeline.checks
    # The countdown is rounded: the status may come a moment early, then once more a second later.
    assert 1 <= len(timeline.statuses) <= 2, timeline.statuses
    assert timeline.statuses[-1] > timeline.done_at
    lag = timeline.statuses[-1] - timeline.done_at
    assert lag <= 1.2  # Horde seconds
    assert seen[-1].done
    assert [check.queue_position for check in seen if check.waiting] == sorted(
        (check.queue_position for check in seen if check.waiting), reverse=True
    )


async def test_a_long_queue_is_still_looked_at_every_fifteen_seconds() -> None:
    timeline = RealTimeline(position=30, per_position=1.5, duration=3.0)
    await follow(timeline)
    polls = sorted(timeline.checks + timeline.statuses)
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert max(gaps) <= 15.5  # Horde seconds: a progress message is never older than that
    assert len(polls) <= 2 + math.ceil(timeline.popped_at / 15) + 1


# -- the simulator ------------------------------------------------------------------------------


async def test_the_poll_aimed_at_the_end_brings_the_status_and_the_results() -> None:
    policy = PollPolicy(min_interval=0.2, first_poll_delay=0.5, end_margin=0.1)
    request = ImageGenerateAsyncRequest(
        prompt="a fox", params=ImageGenerationInputPayload(width=64, height=64)
    )
    async with (
        run_simulator(SimulatorConfig(knobs=Knobs(speed=1.5))) as sim,
        AIHordeAPIAsyncClientSession(base_url=sim.base_url) as session,
    ):
        client = AIHordeAPIAsyncSimpleClient(session, poll_policy=policy)
        status, gen_id = await client.image_generate_request(request)
    assert len(status.generations) == 1
    # One check (on a worker, one second left), then the status at the countdown's end: done.
    assert sim.counters.calls("generate_check", id=gen_id) == 1
    assert sim.counters.calls("generate_status", id=gen_id) == 1


def test_the_first_poll_moves_towards_the_moment_a_worker_takes_the_request() -> None:
    """Found still queued: the next request's first poll comes later; found on a worker: sooner;
    always within [first_poll_delay, max_interval]."""
    estimate, policy, clock = QueueEstimate(first_poll_target=0.5, first_poll_step=0.2), PollPolicy(), Clock()

    def first_poll(answer: Progress) -> float:
        delays = ProgressDelay(
            policy, estimate=estimate, queue_key="image", clock=clock, first_after_submit=True
        )
        delay = delays.first_delay()
        delays(answer)
        delays(answer)  # only the first answer counts
        return delay

    assert first_poll(queued(9)) == 2.5
    assert first_poll(queued(8)) == pytest.approx(2.5 * 1.1)
    assert first_poll(running(3)) == pytest.approx(2.5 * 1.1 * 1.1)
    assert first_poll(running(3)) == pytest.approx(2.5 * 1.1)
    for _ in range(40):
        first_poll(queued(20))
    assert first_poll(queued(20)) == policy.max_interval  # fresh for people: never later than 15 s
    resumed = ProgressDelay(policy, estimate=estimate, queue_key="image", clock=clock)
    resumed(running(3))  # a resumed request's first answer steers nothing
    assert ProgressDelay(policy, estimate=estimate, queue_key="image").first_delay() == policy.max_interval
