"""The transport under the Horde's rate limiter (429s as the real server sends them) and oversized bodies."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from aiohttp import web
from test_transport import (
    ASYNC_PATH,
    CHECK_PATH,
    Check,
    CheckRequest,
    Handler,
    SubmitRequest,
    Submitted,
    accepted,
    replies,
    respond,
    serve,
    transport,
)

from bot.horde.apimodels.errors import RequestErrorResponse
from bot.horde.consts import RateLimit
from bot.horde.ratelimit import HordeRateLimits
from bot.horde.transport import HordeTransport, RetryPolicy, parse_reset

# No jitter, so the waits can be asserted; every server-given wait is scaled by 0.2.
REFUSALS = RetryPolicy(
    max_attempts=3, base_delay=0.01, max_delay=0.02, retry_after_scale=0.2, rate_limit_jitter=0
)


def limited(body: str = "2 per 1 second", **headers: str) -> Handler:
    return respond(429, {"message": body}, **headers)


async def test_retry_after_zero_waits_a_second_and_keeps_retrying_past_max_attempts() -> None:
    # Near the end of a window the real Horde says ``Retry-After: 0``: retrying at once is refused again.
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(*[limited(**{"Retry-After": "0"})] * 6, accepted),
    }
    async with serve(routes) as server:
        t = transport(server, retry=REFUSALS)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, Submitted)
    assert server.count("/api/v2/generate/async") == 7  # more than max_attempts: refusals are not failures
    gaps = [later.at - earlier.at for earlier, later in zip(server.hits, server.hits[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps  # a second, scaled by 0.2


async def test_waits_for_x_ratelimit_reset_when_it_is_later_than_retry_after() -> None:
    wall = 1_800_000_000.0
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(
            limited("90 per 1 minute", **{"Retry-After": "0", "X-RateLimit-Reset": str(int(wall) + 3)}),
            accepted,
        ),
    }
    async with serve(routes) as server:
        t = transport(server, retry=REFUSALS, wall_clock=lambda: wall)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, Submitted)
    first, second = server.hits
    assert 0.59 <= second.at - first.at < 1.0  # 3 s to the reset, scaled by 0.2


async def test_refusals_stop_at_the_deadline_with_the_429() -> None:
    routes: dict[tuple[str, str], Handler] = {("GET", CHECK_PATH): replies(limited(**{"Retry-After": "1"}))}
    policy = RetryPolicy(retry_after_scale=0.1, rate_limit_jitter=0, deadline=4.5)
    async with serve(routes) as server:
        t = transport(server, retry=policy)
        started = time.monotonic()
        result = await t.send(CheckRequest(id="x"), Check)
        took = time.monotonic() - started
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 429
    # Waits of 0.1 s (1 s scaled by 0.1): the fifth would end past 0.45 s (4.5 s scaled), so four
    # retries were made.
    assert server.count("/api/v2/generate/check/x") == 5
    assert took < 0.45


async def test_a_refusal_holds_back_the_clients_other_requests_to_that_window() -> None:
    calls = 0
    refused = asyncio.Event()

    async def first_refused(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            refused.set()
            return web.json_response({"message": "2 per 1 second"}, status=429, headers={"Retry-After": "1"})
        return web.json_response({"id": f"id-{calls}"}, status=202)

    async with serve({("POST", ASYNC_PATH): first_refused}) as server:
        t = transport(server, retry=REFUSALS, rate_limits=HordeRateLimits())
        first = asyncio.create_task(t.send(SubmitRequest(prompt="a"), Submitted))
        await refused.wait()
        await asyncio.sleep(0.05)  # the 429 has reached the client: the window is blocked
        second = await t.send(SubmitRequest(prompt="b"), Submitted)
        assert isinstance(await first, Submitted)
        await t.close()
    assert isinstance(second, Submitted)
    refused_at = server.hits[0].at
    # The other submission was not sent into the refused window (Retry-After 1 s, scaled by 0.2).
    assert all(hit.at - refused_at >= 0.19 for hit in server.hits[1:])


class FixedWindow:
    """The real Horde's limiter (flask-limiter, fixed window in Redis), shared by every caller on
    one IP: ``calls`` per second from the first call of a window; a 429 carries
    ``Retry-After: int(reset - now)`` (often 0) and ``X-RateLimit-Reset`` (``int(reset + 1)``).
    Its clock runs ``speed`` times faster than real time (the clients are told the same)."""

    def __init__(self, calls: int, speed: float) -> None:
        self.calls, self.speed = calls, speed
        self.window_end = 0.0
        self.count = 0
        self.accepted = 0
        self.refused = 0

    def now(self) -> float:
        return time.time() * self.speed

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.now()
        if now >= self.window_end:
            self.window_end, self.count = now + 1.0, 0
        self.count += 1
        if self.count > self.calls:
            self.refused += 1
            headers = {
                "Retry-After": str(int(self.window_end - now)),
                "X-RateLimit-Limit": str(self.calls),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(self.window_end + 1)),
            }
            return web.json_response({"message": f"{self.calls} per 1 second"}, status=429, headers=headers)
        self.accepted += 1
        return web.json_response({"id": f"id-{self.accepted}"}, status=202)


async def test_two_clients_on_one_ip_each_under_the_limit_but_together_over_it_all_succeed() -> None:
    """Each client submits every 0.5 s, within the 2 a second it keeps on its own; together they
    send 4 a second to a server that takes 2. Refused submissions wait for the window (not the
    ``Retry-After: 0`` the server says near its end) and all go through. Time runs five times
    faster for both sides. The real Horde: ``test_real_rate_limits.py``."""
    speed, per_client, gap = 5.0, 14, 0.5
    limiter = FixedWindow(calls=2, speed=speed)
    own_limits = HordeRateLimits(generate_async_per_ip=(RateLimit(2, 1.0 / speed),))
    retry = RetryPolicy(retry_after_scale=1.0 / speed)

    async def submit_every(client: HordeTransport) -> list[object]:
        sent = []
        for i in range(per_client):
            sent.append(asyncio.ensure_future(client.send(SubmitRequest(prompt=f"{i}"), Submitted)))
            await asyncio.sleep(gap / speed)
        return list(await asyncio.gather(*sent))

    async with serve({("POST", ASYNC_PATH): limiter.handle}) as server:
        clients = [
            transport(server, retry=retry, rate_limits=own_limits, wall_clock=limiter.now) for _ in range(2)
        ]
        results = [result for batch in await asyncio.gather(*map(submit_every, clients)) for result in batch]
        for client in clients:
            await client.close()
    assert limiter.refused > 0  # the clients did collide
    assert [type(result) for result in results] == [Submitted] * (2 * per_client)
    assert limiter.accepted == 2 * per_client


def test_parse_reset() -> None:
    assert parse_reset("1800000003", 1_800_000_000.5) == 2.5
    assert parse_reset("1799999999", 1_800_000_000.0) == 0.0
    assert parse_reset(None, 0.0) is None
    assert parse_reset("soon", 0.0) is None
    assert parse_reset("inf", 0.0) is None
    assert not math.isnan(parse_reset("1", 0.0) or 0.0)


# -- body size ---------------------------------------------------------------------------------


async def test_a_body_larger_than_the_cap_is_not_read_nor_retried() -> None:
    big = {"done": True, "wait_time": 0, "padding": "x" * 300_000}
    routes: dict[tuple[str, str], Handler] = {("GET", CHECK_PATH): replies(respond(200, big))}
    async with serve(routes) as server:
        t = transport(server, max_response_bytes=100_000)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.unexpected_answer
    assert result.http_status == 200
    assert "100000 bytes" in result.message
    assert server.count("/api/v2/generate/check/x") == 1


async def test_a_streamed_body_without_length_is_cut_at_the_cap() -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"done": true, "wait_time": 0, "padding": "')
        try:
            for _ in range(1000):  # 64 MB if it were read to the end
                await response.write(b"x" * 65536)
                sent += 65536
        except (ConnectionError, RuntimeError):
            pass
        return response

    async with serve({("GET", CHECK_PATH): endless}) as server:
        t = transport(server, max_response_bytes=200_000)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.unexpected_answer
    assert sent < 64 * 1024 * 1024


async def test_a_body_within_the_cap_is_read() -> None:
    body: dict[str, Any] = {"done": True, "wait_time": 0, "padding": "x" * 50_000}
    async with serve({("GET", CHECK_PATH): replies(respond(200, body))}) as server:
        t = transport(server, max_response_bytes=100_000)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, Check)
