"""The queue as the real server reports it (horde_simulator/_queue.py), on a manual clock.

tests/conformance holds the same rules against a real AI Horde; these pin them in the simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from test_simulator_faults import ALICE, BOB, call, clock_fixture, http_fixture  # noqa: F401 - the fixtures clock and http

from horde_simulator import (
    Knobs,
    ManualClock,
    RateLimits,
    Simulator,
    SimulatorConfig,
    SimUser,
    run_simulator,
)

JOB_S = 5.0


def config(clock: ManualClock, **knobs: Any) -> SimulatorConfig:
    """One worker that pops up to 4 jobs (like ../shared/real-horde's fake worker), JOB_S a pop."""
    knobs = {
        "speed": JOB_S,
        "worker_threads": 1,
        "worker_batch": 4,
        "rate_limits": RateLimits(enabled=False),
    } | knobs
    users = (
        SimUser("alice", 1, ALICE["apikey"], kudos=5000.0),
        SimUser("bob", 2, BOB["apikey"], kudos=100.0),
        SimUser("carol", 3, "sim-carol-key-00000003", kudos=100.0, trusted=True),
    )
    return SimulatorConfig(clock=clock, users=users, knobs=Knobs(**knobs))


async def submit(
    http: aiohttp.ClientSession, sim: Simulator, headers: dict[str, str] = BOB, **body: Any
) -> str:
    status, answer, _ = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "x", **body}, headers=headers
    )
    assert status == 202, answer
    return str(answer["id"])


async def check(http: aiohttp.ClientSession, sim: Simulator, gen_id: str) -> dict[str, Any]:
    status, answer, _ = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
    assert status == 200, answer
    return dict(answer)


def seen(answer: dict[str, Any]) -> tuple[int, int, int, int]:
    return answer["waiting"], answer["processing"], answer["queue_position"], answer["wait_time"]


async def test_the_queue_is_a_snapshot_and_wait_time_is_one_jobs_until_the_threads_are_busy(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    # Workers take nothing before 100 s: every request waits, the worker announcing 4 threads.
    async with run_simulator(config(clock, worker_delay=100.0)) as sim:
        first = await submit(http, sim)
        assert seen(await check(http, sim, first)) == (1, 0, 1, JOB_S)  # this look took a snapshot
        later = [await submit(http, sim) for _ in range(5)]
        # Submitted since the snapshot: not in it yet, so position 0 and no queue wait.
        assert seen(await check(http, sim, later[0])) == (1, 0, 0, 0)
        clock.advance(1)
        positions = [seen(await check(http, sim, gen_id)) for gen_id in later]
        # Up to 4 jobs ahead (this one included) the 4 threads share them: one job's time;
        # then the queue part grows: 5 jobs over 4 threads is 6.25 s, 6 jobs 7.5 s (rounded).
        assert positions == [(1, 0, 2, 5), (1, 0, 3, 5), (1, 0, 4, 5), (1, 0, 5, 6), (1, 0, 6, 8)]


async def test_wait_time_counts_down_while_the_job_runs(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with run_simulator(config(clock, speed=10.0)) as sim:
        gen_id = await submit(http, sim)
        await sim_step(sim)
        assert seen(await check(http, sim, gen_id)) == (0, 1, 0, 10)
        clock.advance(3)
        assert seen(await check(http, sim, gen_id)) == (0, 1, 0, 7)
        clock.advance(7)
        await sim_step(sim)
        done = await check(http, sim, gen_id)
        assert (done["done"], done["queue_position"], done["wait_time"]) == (True, 0, 0)


async def test_workers_of_different_speeds_count_down_from_their_own(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """The server's countdown starts from the worker's own average speed, not the average of
    every worker: a 9 s worker's job shows 9, a 3 s worker's 3; the queue part uses their mean
    (threads over summed rates: 2 / (1/3 + 1/9) = 4.5 s)."""
    knobs = {"worker_speeds": (3.0, 9.0), "worker_threads": 2, "worker_batch": 1, "queue_refresh": 0.0}
    async with run_simulator(config(clock, **knobs)) as sim:
        assert sim.state.knobs.average_speed() == 4.5
        fast, slow = await submit(http, sim), await submit(http, sim)
        await sim_step(sim, until=lambda: all(sim.state.requests[g].processing for g in (fast, slow)))
        assert [seen(await check(http, sim, g)) for g in (fast, slow)] == [(0, 1, 0, 3), (0, 1, 0, 9)]
        clock.advance(3)
        await sim_step(sim, until=lambda: sim.state.requests[fast].finished == 1)
        assert seen(await check(http, sim, slow)) == (0, 1, 0, 6)


async def test_richer_users_go_first_and_waiting_raises_a_requests_priority(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with run_simulator(config(clock, worker_delay=2000.0, queue_refresh=0.0)) as sim:
        bobs = await submit(http, sim, BOB)  # 100 kudos
        alices = await submit(http, sim, ALICE)  # 5000 kudos: ahead of bob's older request
        assert [(await check(http, sim, g))["queue_position"] for g in (alices, bobs)] == [1, 2]
        # The server adds 50 to every waiting request's priority every 10 s: after 1000 s
        # bob's request (100 + 5000) is ahead of one alice makes now (5000).
        clock.advance(1000)
        alices_later = await submit(http, sim, ALICE)
        assert [(await check(http, sim, g))["queue_position"] for g in (alices, bobs, alices_later)] == [
            1,
            2,
            3,
        ]


async def test_a_worker_pops_up_to_four_jobs_of_one_request_and_delivers_them_together(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with run_simulator(config(clock, queue_refresh=0.0)) as sim:
        gen_id = await submit(http, sim, params={"n": 5, "steps": 10})
        await sim_step(sim)
        assert seen(await check(http, sim, gen_id)) == (1, 4, 1, 10)  # one queued job + the batch's 5 s
        clock.advance(JOB_S)
        await sim_step(sim, until=lambda: sim.state.requests[gen_id].finished == 4)
        answer = await check(http, sim, gen_id)
        assert (answer["finished"], answer["processing"], answer["waiting"]) == (4, 1, 0)
        # Disabled batching (trusted users only, for n > 1): one job a pop.
        one_by_one = await submit(
            http, sim, {"apikey": "sim-carol-key-00000003"}, params={"n": 2}, disable_batching=True
        )
        clock.advance(JOB_S)
        await sim_step(sim, until=lambda: bool(sim.state.requests[one_by_one].processing))
        assert len(sim.state.requests[one_by_one].processing) == 1


async def test_a_model_no_worker_serves_is_accepted_with_a_warning_and_never_runs(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with run_simulator(config(clock)) as sim:
        status, answer, _ = await call(
            http,
            sim,
            "POST",
            "v2/generate/async",
            json={"prompt": "x", "models": ["No Such Model"]},
            headers=BOB,
        )
        assert status == 202
        assert [w["code"] for w in answer["warnings"]] == ["NoAvailableWorker"]
        assert answer["message"].startswith("Warning: No available workers can fulfill this request.")
        for _ in range(3):
            clock.advance(JOB_S)
            await sim_step(sim)
        still = await check(http, sim, answer["id"])
        assert (still["waiting"], still["processing"], still["done"], still["is_possible"]) == (
            1,
            0,
            False,
            False,
        )
        status, text, _ = await call(
            http,
            sim,
            "POST",
            "v2/generate/text/async",
            json={"prompt": "x", "models": ["No Such LLM"]},
            headers=BOB,
        )
        assert (status, set(text)) == (202, {"id", "kudos", "message"})  # text answers carry no warnings


async def test_a_check_is_served_again_for_a_second(http: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with run_simulator(config(clock, check_cache=1.0, worker_delay=100.0)) as sim:
        gen_id = await submit(http, sim)
        first = await check(http, sim, gen_id)
        assert (await call(http, sim, "DELETE", f"v2/generate/status/{gen_id}"))[0] == 200
        assert await check(http, sim, gen_id) == first  # the server's cache: as before the DELETE
        clock.advance(1)
        assert (await check(http, sim, gen_id))["done"] is True


async def sim_step(sim: Simulator, until: Callable[[], bool] | None = None) -> None:
    """Give the simulated workers (they tick every 10 ms) time to act on what the clock says, or
    until ``until()`` holds."""
    for _ in range(100 if until is not None else 20):
        await asyncio.sleep(0.01)
        if until is not None and until():
            return
    if until is not None:
        raise AssertionError("the simulated workers did not get there")


def test_worker_speeds_are_set_over_the_control_surface_and_checked() -> None:
    knobs = Knobs()
    knobs.apply_patch({"worker_speeds": [3, 12], "speed_jitter": 0.1})
    assert (knobs.worker_speeds, knobs.speed_jitter) == ((3.0, 12.0), 0.1)
    for bad in ({"worker_speeds": [3, 0]}, {"worker_speeds": ["3"]}, {"speed_jitter": 1.0}):
        with pytest.raises(ValueError, match=r"worker_speeds|speed_jitter"):
            knobs.apply_patch(bad)
    assert knobs.worker_speeds == (3.0, 12.0)
