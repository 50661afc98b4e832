"""Simulator rate limits, lifetimes, injected faults and kudos transfers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import PIL.Image
import pytest
from multidict import CIMultiDict

from horde_simulator import (
    Fault,
    Knobs,
    ManualClock,
    RateLimits,
    Simulator,
    SimulatorConfig,
    run_simulator,
)

# Copied from ../shared (origin in tests/fixtures/README.md), so a plain clone runs these.
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "horde" / "real"
ALICE = {"apikey": "sim-alice-key-00000001"}
BOB = {"apikey": "sim-bob-key-0000000002"}
POOR = {"apikey": "sim-poor-key-000000003"}
ANON = {"apikey": "0000000000"}


# Named apart from the fixtures they define, so other modules import them without shadowing.
@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="clock")
def clock_fixture() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    """Rate limits on (the default), a manual clock, and no worker for any model."""
    knobs = Knobs(speed=1.0, served_image_models=(), served_text_models=(), request_lifetime=100.0)
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as running:
        yield running


async def call(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, CIMultiDict[str]]:
    async with http.request(method, sim.url(path), **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, CIMultiDict(response.headers)


async def submit(
    http: aiohttp.ClientSession, sim: Simulator, path: str = "v2/generate/async", **body: Any
) -> str:
    status, answer, _ = await call(http, sim, "POST", path, json={"prompt": "x", **body}, headers=ALICE)
    assert status == 202, answer
    return str(answer["id"])


# -- rate limits ------------------------------------------------------------------------------------


async def test_status_limit_matches_the_captured_429(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    gen_id = await submit(http, sim)
    for _ in range(10):
        assert (await call(http, sim, "GET", f"v2/generate/status/{gen_id}"))[0] == 200
    status, body, headers = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    assert status == 429
    assert body == json.loads((REAL / "status_429_ratelimit.json").read_text())
    captured = dict(
        line.split(": ", 1) for line in (REAL / "status_429_ratelimit.headers.txt").read_text().splitlines()
    )
    assert all(name in headers for name in captured)
    assert headers["Retry-After"] == captured["Retry-After"] == "60"
    assert headers["X-Ratelimit-Limit"] == captured["X-Ratelimit-Limit"] == "10"
    assert headers["X-Ratelimit-Remaining"] == "0"
    assert abs(int(headers["X-Ratelimit-Reset"]) - (time.time() + 60)) < 5
    assert sim.counters.rate_limited("generate_status", id=gen_id) == 1
    assert sim.counters.status(429, "generate_status") == 1
    # DELETE has its own bucket, and the window ends after a minute.
    assert (await call(http, sim, "DELETE", f"v2/generate/status/{gen_id}"))[0] == 200
    clock.advance(60)
    assert (await call(http, sim, "GET", f"v2/generate/status/{gen_id}"))[0] == 200


async def test_check_limit_is_per_request_id(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    first, second = await submit(http, sim), await submit(http, sim)
    for _ in range(10):
        status, _, headers = await call(http, sim, "GET", f"v2/generate/check/{first}")
        assert status == 200
    assert headers["X-Ratelimit-Remaining"] == "0"
    status, body, headers = await call(http, sim, "GET", f"v2/generate/check/{first}")
    assert (status, body, headers["Retry-After"]) == (429, {"message": "10 per 1 second"}, "1")
    assert (await call(http, sim, "GET", f"v2/generate/check/{second}"))[0] == 200
    clock.advance(1)
    assert (await call(http, sim, "GET", f"v2/generate/check/{first}"))[0] == 200


@pytest.mark.parametrize(
    ("path", "limit", "message"),
    [
        ("v2/generate/text/status/{id}", 60, "60 per 1 minute"),
        ("v2/interrogate/status/{id}", 10, "10 per 1 second"),
    ],
)
async def test_other_status_limits(
    http: aiohttp.ClientSession, sim: Simulator, path: str, limit: int, message: str
) -> None:
    if "text" in path:
        request_id = await submit(http, sim, "v2/generate/text/async")
    else:
        body = {"source_image": _tiny_png(), "forms": [{"name": "caption"}]}
        _, answer, _ = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
        request_id = answer["id"]
    for _ in range(limit):
        assert (await call(http, sim, "GET", path.format(id=request_id)))[0] == 200
    assert (await call(http, sim, "GET", path.format(id=request_id)))[:2] == (429, {"message": message})


async def test_async_limits_per_key_and_ip(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    await submit(http, sim)
    await submit(http, sim)
    status, body, _ = await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=ALICE)
    assert (status, body) == (429, {"message": "2 per 1 second"})
    clock.advance(1)
    sim.state.knobs.rate_limits.generate_async_ip_burst = None
    for _ in range(3):  # the shared anonymous key may do 60 a second
        assert (await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=ANON))[
            0
        ] == 202
    assert sim.counters.rate_limited("generate_async") == 1


async def test_default_limit_and_exempt_heartbeat(http: aiohttp.ClientSession, sim: Simulator) -> None:
    for _ in range(95):
        assert (await call(http, sim, "GET", "v2/status/heartbeat"))[0] == 200
    for _ in range(90):
        assert (await call(http, sim, "GET", "v2/status/news"))[0] == 200
    assert (await call(http, sim, "GET", "v2/status/news"))[:2] == (429, {"message": "90 per 1 minute"})
    assert (await call(http, sim, "GET", "v2/status/performance"))[0] == 200  # its own bucket


async def test_rate_limit_knobs(http: aiohttp.ClientSession, sim: Simulator) -> None:
    gen_id = await submit(http, sim)
    sim.state.knobs.rate_limits.check = "1 per 5 seconds"
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 200
    status, body, headers = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
    assert (status, body, headers["Retry-After"]) == (429, {"message": "1 per 5 second"}, "5")
    sim.state.knobs.rate_limits.enabled = False
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 200
    sim.state.knobs.rate_limits.enabled = True
    sim.reset()  # forgets the windows
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 200


# -- lifetimes ----------------------------------------------------------------------------------------


async def test_records_expire_with_the_servers_messages(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    image = await submit(http, sim)
    text = await submit(http, sim, "v2/generate/text/async")
    _, alchemy, _ = await call(
        http, sim, "POST", "v2/interrogate/async", json={"source_image": _tiny_png()}, headers=ALICE
    )
    clock.advance(99)
    assert (await call(http, sim, "GET", f"v2/generate/check/{image}"))[0] == 200
    clock.advance(1)
    expected = [
        ("GET", f"v2/generate/check/{image}", f"Image Waiting Prompt (Check) with ID '{image}' not found."),
        ("GET", f"v2/generate/status/{image}", f"Image Waiting Prompt (Status) with ID '{image}' not found."),
        (
            "DELETE",
            f"v2/generate/status/{image}",
            f"Image Waiting Prompt (Delete) with ID '{image}' not found.",
        ),
        # As the real server words them: Flask-RESTX adds the closest route to some of them.
        (
            "GET",
            f"v2/generate/text/status/{text}",
            f"Text Waiting Prompt (Status) with ID '{text}' not found. You have requested this URI "
            f"[/api/v2/generate/text/status/{text}] but did you mean "
            "/api/v2/generate/text/status/<string:id> ?",
        ),
        (
            "DELETE",
            f"v2/generate/text/status/{text}",
            f"Text Waiting Prompt (Delete) with ID '{text}' not found. You have requested this URI "
            f"[/api/v2/generate/text/status/{text}] but did you mean "
            "/api/v2/generate/text/status/<string:id> ?",
        ),
        (
            "GET",
            f"v2/interrogate/status/{alchemy['id']}",
            f"Interrogation with ID '{alchemy['id']}' not found. You have requested this URI "
            f"[/api/v2/interrogate/status/{alchemy['id']}] but did you mean "
            "/api/v2/interrogate/status/<string:id> ?",
        ),
    ]
    for method, path, message in expected:
        assert (await call(http, sim, method, path))[:2] == (
            404,
            {"message": message, "rc": "RequestNotFound"},
        )
    # kinds do not mix: an image id is not a text id
    assert (await call(http, sim, "GET", f"v2/generate/text/status/{await submit(http, sim)}"))[0] == 404


async def test_delivery_pushes_the_expiry(http: aiohttp.ClientSession, clock: ManualClock) -> None:
    knobs = Knobs(speed=10.0, request_lifetime=60.0, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        gen_id = await submit(http, sim)
        await _until(lambda: bool(sim.state.requests[gen_id].processing))
        clock.advance(10)
        await _until(lambda: sim.state.requests[gen_id].done)
        image_id = sim.state.requests[gen_id].generations[0].id
        clock.advance(55)  # 65 s after creation, 55 s after delivery
        assert (await call(http, sim, "GET", f"v2/generate/status/{gen_id}"))[0] == 200
        clock.advance(6)
        assert (await call(http, sim, "GET", f"v2/generate/status/{gen_id}"))[0] == 404
        # R2 objects outlive the records (2 hours by default)
        assert sim.state.get_image(image_id) is not None
        clock.advance(7200)
        assert sim.state.get_image(image_id) is None


async def test_expire_now(http: aiohttp.ClientSession, sim: Simulator) -> None:
    first, second = await submit(http, sim), await submit(http, sim)
    assert sim.state.expire(first) is True
    assert sim.state.expire(first) is False
    assert (await call(http, sim, "GET", f"v2/generate/check/{first}"))[0] == 404
    async with http.post(sim.root_url + "_sim/expire", json={"id": second}) as response:
        assert response.status == 200
    assert (await call(http, sim, "GET", f"v2/generate/check/{second}"))[0] == 404
    async with http.post(sim.root_url + "_sim/expire", json={"id": second}) as response:
        assert response.status == 404


# -- injected faults ------------------------------------------------------------------------------------


async def test_scripted_503s_then_success(http: aiohttp.ClientSession, sim: Simulator) -> None:
    gen_id = await submit(http, sim)
    sim.state.faults.script("generate_check", Fault.http(503, retry_after=1), times=2)
    for _ in range(2):
        status, body, headers = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
        assert (status, body, headers["Retry-After"]) == (503, {"message": "Service Unavailable"}, "1")
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 200
    assert sim.counters.faults("generate_check") == 2
    assert sim.counters.calls("generate_check", id=gen_id) == 3
    assert sim.counters.statuses("generate_check") == {503: 2, 200: 1}
    assert sim.state.faults.pending() == 0


async def test_html_5xx_pages(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.faults.script("heartbeat", Fault.http(502, html=True))
    async with http.get(sim.url("v2/status/heartbeat")) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "<h1>502 Bad Gateway</h1>" in await response.text()
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()


async def test_429_storm_uses_the_limiter_shape(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.faults.script("generate_async", Fault.rate_limit(retry_after=7), times=3)
    for _ in range(3):
        status, body, headers = await call(
            http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=ALICE
        )
        assert (status, body, headers["Retry-After"], headers["X-Ratelimit-Remaining"]) == (
            429,
            {"message": "10 per 1 minute"},
            "7",
            "0",
        )
    assert sim.counters.rate_limited() == 0  # injected, not the limiter
    assert sim.counters.faults() == 3


async def test_dropped_connection(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.faults.script("heartbeat", Fault.drop())
    with pytest.raises(aiohttp.ClientError):
        async with http.get(sim.url("v2/status/heartbeat")) as response:
            await response.read()
    assert sim.counters.status(0, "heartbeat") == 1
    assert (await call(http, sim, "GET", "v2/status/heartbeat"))[0] == 200


async def test_slow_response(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.faults.script("news", Fault.delay(0.3))
    started = time.monotonic()
    assert (await call(http, sim, "GET", "v2/status/news"))[0] == 200
    assert time.monotonic() - started >= 0.3
    sim.state.faults.script("news", Fault.delay(1.0))
    with pytest.raises(TimeoutError):
        await call(http, sim, "GET", "v2/status/news", timeout=aiohttp.ClientTimeout(total=0.2))


async def test_faults_for_one_request_id(http: aiohttp.ClientSession, sim: Simulator) -> None:
    target, other = await submit(http, sim), await submit(http, sim)
    sim.state.faults.script("generate_check", Fault.http(500), id=target)
    assert (await call(http, sim, "GET", f"v2/generate/check/{other}"))[0] == 200
    assert (await call(http, sim, "GET", f"v2/generate/check/{target}"))[:2] == (
        500,
        {"message": "Internal Server Error"},
    )


async def test_expire_mid_poll(http: aiohttp.ClientSession, sim: Simulator) -> None:
    gen_id = await submit(http, sim)
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 200
    sim.state.faults.script("generate_check", Fault.expire())
    assert (await call(http, sim, "GET", f"v2/generate/check/{gen_id}"))[0] == 404


async def test_probabilities_and_wildcards(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.faults.set_probability("*", Fault.http(503), 1.0)
    assert (await call(http, sim, "GET", "v2/status/performance"))[0] == 503
    assert (await call(http, sim, "GET", "v2/status/news"))[0] == 503
    sim.state.faults.set_probability("*", Fault.http(503), 0.0)
    assert (await call(http, sim, "GET", "v2/status/news"))[0] == 200
    sim.state.faults.set_probability("news", Fault.http(500), 0.5)
    statuses = [(await call(http, sim, "GET", "v2/status/news"))[0] for _ in range(40)]
    assert {200, 500} == set(statuses)


async def test_faults_through_the_control_surface(http: aiohttp.ClientSession, sim: Simulator) -> None:
    patch = {
        "faults": {
            "script": [{"endpoint": "heartbeat", "kind": "http", "status": 502, "times": 2, "retry_after": 3}]
        },
        "heartbeat_message": "OVERLOADED",
    }
    async with http.post(sim.root_url + "_sim/config", json=patch) as response:
        assert response.status == 200
        config = await response.json()
    assert config["faults"]["script"][0]["times"] == 2
    assert config["knobs"]["heartbeat_message"] == "OVERLOADED"
    assert (await call(http, sim, "GET", "v2/status/heartbeat"))[0] == 502
    assert (await call(http, sim, "GET", "v2/status/heartbeat"))[0] == 502
    status, beat, _ = await call(http, sim, "GET", "v2/status/heartbeat")
    assert (status, beat["message"]) == (200, "OVERLOADED")
    async with http.post(
        sim.root_url + "_sim/config", json={"faults": {"script": [{"kind": "boom"}]}}
    ) as response:
        assert response.status == 400
    async with http.post(sim.root_url + "_sim/config", json={"no_such_knob": 1}) as response:
        assert (response.status, (await response.json())["message"]) == (400, "unknown knob 'no_such_knob'")


async def test_r2_downloads_can_be_slow_or_fail(http: aiohttp.ClientSession) -> None:
    knobs = Knobs(speed=0.01, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(knobs=knobs)) as sim:
        gen_id = await submit(http, sim)
        await _until(lambda: sim.state.requests[gen_id].done)
        _, full, _ = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
        url = full["generations"][0]["img"]
        sim.state.faults.script("r2_image", Fault.http(503, retry_after=2))
        sim.state.faults.script("r2_image", Fault.delay(0.2))
        async with http.get(url) as response:
            assert response.status == 503
        started = time.monotonic()
        async with http.get(url) as response:
            assert response.status == 200
            assert len(await response.read()) > 100
        assert time.monotonic() - started >= 0.2
        async with http.get(sim.root_url + "_sim/r2/nothing.webp") as response:
            assert response.status == 404


async def test_maintenance_mode(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.knobs.maintenance_mode = True
    message = {
        "message": "AI Horde has entered maintenance mode. Please try again later.",
        "rc": "MaintenanceMode",
    }
    for path, body in (
        ("v2/generate/async", {"prompt": "x"}),
        ("v2/generate/text/async", {"prompt": "x"}),
        ("v2/interrogate/async", {"source_image": _tiny_png()}),
    ):
        assert (await call(http, sim, "POST", path, json=body, headers=ALICE))[:2] == (400, message)


async def test_faulted_jobs(http: aiohttp.ClientSession) -> None:
    knobs = Knobs(speed=0.01, rate_limits=RateLimits(enabled=False), fail_next_jobs=1)
    async with run_simulator(SimulatorConfig(knobs=knobs)) as sim:
        recovered = await submit(http, sim, params={"n": 2})
        await _until(lambda: sim.state.requests[recovered].done)
        _, check, _ = await call(http, sim, "GET", f"v2/generate/check/{recovered}")
        assert (check["finished"], check["restarted"], check["faulted"]) == (2, 1, False)

        sim.state.knobs.fail_next_jobs = 3
        doomed = await submit(http, sim)
        await _until(lambda: sim.state.requests[doomed].done)
        _, check, _ = await call(http, sim, "GET", f"v2/generate/check/{doomed}")
        assert (check["finished"], check["restarted"], check["faulted"], check["done"]) == (0, 3, True, True)

        sim.state.knobs.job_fault_probability = 1.0
        body = {"source_image": _tiny_png(), "forms": [{"name": "caption"}]}
        _, alchemy, _ = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
        await _until(lambda: sim.state.interrogations[alchemy["id"]].forms[0].state == "faulted")
        _, status, _ = await call(http, sim, "GET", f"v2/interrogate/status/{alchemy['id']}")
        assert status["state"] == "faulted"


async def test_heartbeat_overloaded(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.knobs.heartbeat_message = "OVERLOADED"
    assert (await call(http, sim, "GET", "v2/status/heartbeat"))[1]["message"] == "OVERLOADED"


# -- kudos transfers ------------------------------------------------------------------------------------


async def test_idempotent_kudos_transfer(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    headers = {**ALICE, "Idempotency-Key": "transfer-1"}
    body = {"username": "bob#2", "amount": 10}
    first = await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=headers)
    assert first[:2] == (200, json.loads((REAL / "kudos_transfer_200.json").read_text()))
    clock.advance(1)
    again = await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=headers)
    assert again[:2] == (200, {"transferred": 10.0})
    assert _kudos(sim, ALICE) == 4990.0
    assert _kudos(sim, BOB) == 110.0
    clock.advance(1)
    conflict = await call(
        http, sim, "POST", "v2/kudos/transfer", json={**body, "amount": 11}, headers=headers
    )
    assert conflict[:2] == (
        400,
        {
            "message": "Idempotency key was already used with different transfer parameters.",
            "rc": "IdempotencyKeyConflict",
        },
    )
    clock.advance(1)
    unkeyed = await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=ALICE)
    assert unkeyed[0] == 200
    assert _kudos(sim, BOB) == 120.0
    _, bob, _ = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert bob["kudos_details"]["received"] == 20


async def test_transfer_is_rate_limited_per_key(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"username": "bob#2", "amount": 1}
    assert (await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=ALICE))[0] == 200
    assert (await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=ALICE))[:2] == (
        429,
        {"message": "1 per 1 second"},
    )


@pytest.mark.parametrize(
    ("headers", "body", "status", "rc"),
    [
        (ALICE, {"username": "alice#1"}, 400, "KudosTransferToSelf"),
        (ALICE, {"username": "Anonymous#0"}, 400, "KudosTransferToAnon"),
        (ANON, {"username": "alice#1"}, 400, "KudosTransferFromAnon"),
        (ALICE, {"username": "ghost#99"}, 400, "InvalidTargetUsername"),
        (POOR, {"username": "alice#1", "amount": 5}, 400, "KudosTransferNotEnough"),
        (ALICE, {"username": "bob#2", "amount": -5}, 400, "NegativeKudosTransfer"),
        (ALICE, {"username": "bob#2", "amount": 0}, 400, "InvalidKudosTransferAmount"),
        ({"apikey": "nope"}, {"username": "bob#2"}, 401, "InvalidAPIKey"),
    ],
)
async def test_transfer_errors(
    http: aiohttp.ClientSession,
    sim: Simulator,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    rc: str,
) -> None:
    got, answer, _ = await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=headers)
    assert (got, answer["rc"]) == (status, rc)


async def test_transfer_errors_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.state.knobs.rate_limits.enabled = False
    for body, capture in (
        ({"username": "ghost#99"}, "kudos_transfer_400_invalid_target.json"),
        ({"username": "alice#1"}, "kudos_transfer_400_self.json"),
    ):
        got = await call(http, sim, "POST", "v2/kudos/transfer", json=body, headers=ALICE)
        assert got[:2] == (400, json.loads((REAL / capture).read_text()))
    missing = await call(http, sim, "POST", "v2/kudos/transfer", json={"username": "bob#2"})
    assert missing[1]["errors"] == {
        "apikey": "The sending user's API key. Missing required parameter in the HTTP headers"
    }
    default_amount = await call(
        http, sim, "POST", "v2/kudos/transfer", json={"username": "bob#2"}, headers=ALICE
    )
    assert default_amount[:2] == (200, {"transferred": 100.0})
    reverse = await call(http, sim, "POST", "v2/kudos/transfer", json={"username": "alice#1"}, headers=BOB)
    assert reverse[1]["rc"] == "TooFastKudosTransfers"


def _kudos(sim: Simulator, headers: dict[str, str]) -> float:
    user = sim.state.user_by_key(headers["apikey"])
    assert user is not None
    return user.kudos


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def _tiny_png() -> str:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (16, 16), (10, 200, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# -- the ledger: what became of every accepted request ----------------------------------------------


async def test_sim_requests_tell_how_each_request_ended(
    http: aiohttp.ClientSession, sim: Simulator, clock: ManualClock
) -> None:
    ids = []
    for _ in range(3):
        ids.append(await submit(http, sim))
        clock.advance(1)  # the key may submit twice a second
    deleted, left_open, expired = ids
    await call(http, sim, "DELETE", f"v2/generate/status/{deleted}")
    sim.state.faults.script("generate_check", Fault.expire(), id=expired)
    assert (await call(http, sim, "GET", f"v2/generate/check/{expired}"))[0] == 404

    async with http.get(sim.root_url + "_sim/requests") as response:
        assert response.status == 200
        body = await response.json()

    ends = {request_id: entry["end"] for request_id, entry in body["requests"].items()}
    assert ends == {deleted: "cancelled", left_open: "open", expired: "expired"}
    assert body["requests"][expired]["ended_as"] == "open"
    assert body["orphans"] == [left_open]
    clock.advance(101)  # past the request lifetime: the janitor expires the open one too
    assert sim.state.orphans() == {}
    assert sim.state.ledger()[left_open].end == "expired"


async def test_a_finished_request_is_an_orphan_until_its_results_are_fetched(
    http: aiohttp.ClientSession,
) -> None:
    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=0.01))) as sim:
        image = await submit(http, sim)
        status, answer, _ = await call(
            http, sim, "POST", "v2/generate/text/async", json={"prompt": "Once"}, headers=ALICE
        )
        assert status == 202
        text = answer["id"]
        await _until(lambda: all(entry.end == "finished" for entry in sim.state.ledger().values()))
        assert set(sim.state.orphans()) == {image, text}

        await call(http, sim, "GET", f"v2/generate/check/{image}")  # progress, not the results
        await call(http, sim, "GET", f"v2/generate/status/{image}")
        await call(http, sim, "GET", f"v2/generate/text/status/{text}")

        assert sim.state.orphans() == {}
        assert {entry.kind for entry in sim.state.ledger().values()} == {"image", "text"}


async def test_a_slow_answer_is_still_processed_after_the_client_gave_up(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    sim.state.faults.script("generate_async", Fault.delay(0.3))
    with pytest.raises(TimeoutError):
        await call(
            http,
            sim,
            "POST",
            "v2/generate/async",
            json={"prompt": "x"},
            headers=ALICE,
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    await _until(lambda: len(sim.state.ledger()) == 1)
    assert [entry.end for entry in sim.state.ledger().values()] == ["open"]


async def _until(predicate: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "the simulator did not get there in time"
        await asyncio.sleep(0.01)
