"""Rate limits, their headers, and what the server keeps for a while, as AI-Horde 5.1.5 does them
(flask-limiter 3.12 on Redis; tests/conformance holds the same against a real server)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_simulator_faults import ALICE, BOB, call, clock_fixture, http_fixture  # noqa: F401 - the fixtures clock and http

from horde_simulator import (
    Knobs,
    ManualClock,
    Simulator,
    SimulatorConfig,
    SimUser,
    default_users,
    run_simulator,
)

CAROL = {"apikey": "sim-carol-key-00000003"}  # trusted
DRY_RUN = {"prompt": "x", "dry_run": True}


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    users = (*default_users(), SimUser("carol", 4, CAROL["apikey"], kudos=100.0, trusted=True))
    config = SimulatorConfig(clock=clock, users=users, knobs=Knobs(speed=1.0, worker_threads=0))
    async with run_simulator(config) as running:
        yield running


async def dry_run(
    http: aiohttp.ClientSession, sim: Simulator, headers: dict[str, str]
) -> tuple[int, Any, Any]:
    return await call(http, sim, "POST", "v2/generate/async", json=DRY_RUN, headers=headers)


async def test_every_limited_answer_carries_the_limit_and_retry_after(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    answers = {
        "find_user": await call(http, sim, "GET", "v2/find_user", headers=BOB),
        "users": await call(http, sim, "GET", "v2/users/1"),
        "modes": await call(http, sim, "GET", "v2/status/modes"),
        "unknown check": await call(http, sim, "GET", "v2/generate/check/nope"),
        "async": await dry_run(http, sim, BOB),
    }
    expected = {"find_user": "90", "users": "60", "modes": "30", "unknown check": "10", "async": "2"}
    for name, (status, _, headers) in answers.items():
        assert status in (200, 404), name
        assert headers["X-RateLimit-Limit"] == expected[name], name
        reset = int(headers["X-RateLimit-Reset"])
        window = 1 if expected[name] in ("10", "2") else 60
        assert headers["Retry-After"] == str(window), name  # a fresh window, in whole seconds
        assert time.time() + window <= reset <= time.time() + window + 2, name
    _, _, beat = await call(http, sim, "GET", "v2/status/heartbeat")
    assert "Retry-After" not in beat  # the heartbeat is exempt
    assert "X-RateLimit-Limit" not in beat


async def test_retry_after_is_zero_in_the_last_half_second_of_a_window(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    assert (await dry_run(http, sim, BOB))[0] == 200
    assert (await dry_run(http, sim, BOB))[0] == 200
    clock.advance(0.6)
    status, body, headers = await dry_run(http, sim, BOB)
    assert (status, body) == (429, {"message": "2 per 1 second"})
    # Redis rounds the 0.4 s left to 0: "Retry-After: 0" while the window still has 0.4 s to run.
    assert (headers["Retry-After"], headers["X-RateLimit-Remaining"]) == ("0", "0")
    assert time.time() <= int(headers["X-RateLimit-Reset"]) <= time.time() + 1
    assert (await dry_run(http, sim, BOB))[0] == 429  # not over yet
    clock.advance(0.4)
    assert (await dry_run(http, sim, BOB))[0] == 200


async def test_a_refused_request_still_counts_against_the_rules_tried_before(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    # flask-limiter counts each rule in turn and stops at the first one over: the per-IP rule,
    # tried before the per-key one, counts a request the per-key rule refuses.
    sim.state.knobs.rate_limits.generate_async_ip_burst = "3/second"
    assert [(await dry_run(http, sim, BOB))[0] for _ in range(3)] == [200, 200, 429]  # bob's key: 2 a second
    status, body, _ = await dry_run(http, sim, ALICE)
    assert (status, body) == (429, {"message": "3 per 1 second"})  # the IP's 3 were used by bob


async def test_a_trusted_users_generation_lifts_the_ips_limits(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    assert [(await dry_run(http, sim, BOB))[0] for _ in range(3)] == [200, 200, 429]
    clock.advance(1)
    assert (await dry_run(http, sim, CAROL))[0] == 200  # one generation request by a trusted user
    answers = [await dry_run(http, sim, BOB) for _ in range(9)]
    assert [status for status, _, _ in answers] == [200] * 9  # 10 a second for the IP, 60 per key
    assert answers[0][2]["X-RateLimit-Limit"] == "10"
    clock.advance(86_400)
    assert [(await dry_run(http, sim, BOB))[0] for _ in range(3)] == [200, 200, 429]  # a day later


async def test_find_user_is_kept_half_a_minute(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    _, before, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    transfer = {"username": "bob#2", "amount": 10}
    assert (await call(http, sim, "POST", "v2/kudos/transfer", json=transfer, headers=ALICE))[0] == 200
    _, cached, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert cached["kudos"] == before["kudos"] == 100.0
    _, public, _ = await call(http, sim, "GET", "v2/users/2")
    assert public["kudos"] == 110.0  # another answer (and another cache entry)
    clock.advance(30)
    _, fresh, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert fresh["kudos"] == 110.0


async def test_active_generations_lists_every_request_still_held_and_no_alchemy(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    _, mine, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert "active_generations" not in mine  # none yet: no key at all
    _, image, _ = await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=BOB)
    assert (await call(http, sim, "DELETE", f"v2/generate/status/{image['id']}"))[0] == 200  # done now
    clock.advance(1)
    _, text, _ = await call(http, sim, "POST", "v2/generate/text/async", json={"prompt": "x"}, headers=BOB)
    clock.advance(30)
    _, mine, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert mine["active_generations"] == {"image": [image["id"]], "text": [text["id"]]}
