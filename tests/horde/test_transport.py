from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import Field

from bot.horde.apimodels.base import APIKeyRequest, BaseJobRequest, HordeRequest, HordeResponse
from bot.horde.apimodels.errors import RequestErrorResponse
from bot.horde.consts import DEFAULT_CLIENT_AGENT, RC, RateLimit
from bot.horde.ratelimit import HordeRateLimits
from bot.horde.transport import HordeTransport, RetryPolicy, parse_retry_after

API_KEY = "abcdefghijklmnopqrstuv"
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, retry_after_scale=0.2)


class Check(HordeResponse):
    done: bool
    wait_time: int


class Submitted(HordeResponse):
    id_: str = Field(alias="id")


class CheckRequest(BaseJobRequest):
    path: ClassVar[str] = "v2/generate/check/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeResponse]:
        return Check


class SubmitRequest(APIKeyRequest):
    http_method: ClassVar[Any] = "POST"
    path: ClassVar[str] = "v2/generate/async"
    has_body: ClassVar[bool] = True

    prompt: str
    n: int | None = None

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeResponse]:
        return Submitted


class TransferRequest(APIKeyRequest):
    http_method: ClassVar[Any] = "POST"
    path: ClassVar[str] = "v2/kudos/transfer"
    has_body: ClassVar[bool] = True
    header_fields: ClassVar[dict[str, str]] = {"apikey": "apikey", "idempotency_key": "Idempotency-Key"}

    username: str
    idempotency_key: str | None = None

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeResponse]:
        return Submitted


class ModelsRequest(HordeRequest):
    path: ClassVar[str] = "v2/status/models"
    query_fields: ClassVar[tuple[str, ...]] = ("type_", "min_count")

    type_: str = Field(default="image", alias="type")
    min_count: int | None = None

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeResponse]:
        return Check


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    at: float


@dataclass
class Server:
    base_url: str
    hits: list[Hit] = field(default_factory=list)

    def count(self, path: str) -> int:
        return sum(1 for hit in self.hits if hit.path == path)


@contextlib.asynccontextmanager
async def serve(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[Server]:
    server_info = Server(base_url="")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        headers, query = dict(request.headers), dict(request.query)
        server_info.hits.append(Hit(request.method, request.path, headers, query, body, time.monotonic()))
        return await handler(request)

    app = web.Application(middlewares=[record])
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server_info.base_url = str(server.make_url("/api/"))
    try:
        yield server_info
    finally:
        await server.close()


def replies(*responses: Handler) -> Handler:
    """A handler answering with each of ``responses`` in turn, then repeating the last one."""
    queue = list(responses)

    async def handler(request: web.Request) -> web.StreamResponse:
        respond = queue.pop(0) if len(queue) > 1 else queue[0]
        return await respond(request)

    return handler


def respond(
    status: int, body: dict[str, Any] | str, content_type: str = "application/json", **headers: str
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type=content_type, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    return handler


ok_check = respond(200, {"done": True, "wait_time": 0})
accepted = respond(202, {"id": "abc"})


CHECK_PATH = "/api/v2/generate/check/{id}"
ASYNC_PATH = "/api/v2/generate/async"


def transport(server: Server, **kwargs: Any) -> HordeTransport:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("rate_limits", None)
    return HordeTransport(base_url=server.base_url, **kwargs)


async def test_headers_body_and_query_are_exact() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(accepted),
        ("GET", "/api/v2/status/models"): replies(ok_check),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(apikey=API_KEY, prompt="a cat"), Submitted)
        await t.send(ModelsRequest(min_count=2), Check)
        await t.close()
    assert isinstance(result, Submitted)
    assert result.id_ == "abc"
    post, get = server.hits
    assert post.headers["apikey"] == API_KEY
    assert post.headers["Client-Agent"] == DEFAULT_CLIENT_AGENT
    assert not any("_" in name for name in post.headers)
    assert post.body == {"prompt": "a cat"}
    assert get.query == {"type": "image", "min_count": "2"}
    assert "apikey" not in get.headers
    assert get.body is None


async def test_transport_key_fills_in_only_where_the_request_did_not_set_one() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(accepted),
    }
    async with serve(routes) as server:
        t = transport(server, apikey=API_KEY, client_agent="mybot:1.2:me@example.org")
        await t.send(SubmitRequest(prompt="default key"), Submitted)
        await t.send(SubmitRequest(apikey="0000000000", prompt="explicit anon"), Submitted)
        await t.close()
    assert [hit.headers["apikey"] for hit in server.hits] == [API_KEY, "0000000000"]
    assert server.hits[0].headers["Client-Agent"] == "mybot:1.2:me@example.org"


async def test_429_waits_for_retry_after_then_succeeds() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(
            respond(429, {"message": "10 per 1 second"}, **{"Retry-After": "1"}), ok_check
        ),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, Check)
    first, second = server.hits
    # Retry-After: 1 scaled by 0.2 in the policy.
    assert 0.18 <= second.at - first.at < 0.6


async def test_503_retried_with_retry_after() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(
            respond(503, "<html>down</html>", "text/html", **{"Retry-After": "1"}),
            accepted,
        ),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, Submitted)
    assert server.count("/api/v2/generate/async") == 2
    assert server.hits[1].at - server.hits[0].at >= 0.18


async def test_too_long_retry_after_is_not_waited_for() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(429, {"message": "10 per 1 minute"}, **{"Retry-After": "60"})),
    }
    async with serve(routes) as server:
        t = transport(server, retry=RetryPolicy(max_attempts=3, max_retry_after=5))
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 429
    assert server.count("/api/v2/generate/check/x") == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 500])
async def test_client_errors_are_never_retried(status: int) -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(status, {"message": "no", "rc": "RequestNotFound"})),
        ("POST", ASYNC_PATH): replies(respond(status, {"message": "no", "rc": "KudosUpfront"})),
    }
    async with serve(routes) as server:
        t = transport(server)
        check = await t.send(CheckRequest(id="x"), Check)
        submit = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(check, RequestErrorResponse)
    assert isinstance(submit, RequestErrorResponse)
    assert check.http_status == submit.http_status == status
    assert check.rc == RC.RequestNotFound
    assert server.count("/api/v2/generate/check/x") == 1
    assert server.count("/api/v2/generate/async") == 1


async def test_retries_stop_after_max_attempts_with_the_last_error() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(
            respond(502, {"message": "first"}),
            respond(504, {"message": "second"}),
            respond(503, {"message": "last"}),
        ),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert (result.http_status, result.message) == (503, "last")
    assert server.count("/api/v2/generate/check/x") == FAST.max_attempts


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_errors_do_not_resend_a_generation(status: int) -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(respond(status, {"message": "gateway"}), accepted),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert server.count("/api/v2/generate/async") == 1


async def test_429_is_retried_for_a_generation_because_nothing_was_queued() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(respond(429, {"message": "2 per 1 second"}), accepted),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, Submitted)
    assert server.count("/api/v2/generate/async") == 2


async def test_too_many_prompts_is_returned_not_retried_unless_asked() -> None:
    body = {"message": "Too many prompts", "rc": "TooManyPrompts"}
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(respond(429, body), accepted),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        assert isinstance(result, RequestErrorResponse)
        assert result.rc == RC.TooManyPrompts
        assert server.count("/api/v2/generate/async") == 1
        patience = RetryPolicy(max_attempts=2, base_delay=0.01, retry_too_many_prompts=True)
        patient = transport(server, retry=patience)
        server.hits.clear()
        routes[("POST", ASYNC_PATH)] = replies(respond(429, body), accepted)
        result = await patient.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
        await patient.close()
    assert isinstance(result, Submitted)


def dropping() -> Handler:
    """Drops the connection on the first call, answers on the next."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if request.method == "POST":
            return await accepted(request)
        return await ok_check(request)

    return handler


def truncating() -> Handler:
    """Sends half a body then hangs up on the first call."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            return await ok_check(request)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        await response.write(b'{"done": tr')
        assert request.transport is not None
        request.transport.close()
        return response

    return handler


@pytest.mark.parametrize("make_handler", [dropping, truncating])
async def test_dropped_connection_is_retried_for_a_poll(make_handler: Callable[[], Handler]) -> None:
    async with serve({("GET", CHECK_PATH): replies(make_handler())}) as server:
        t = transport(server)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, Check)
    assert server.count("/api/v2/generate/check/x") == 2


async def test_dropped_connection_after_sending_a_generation_is_not_retried() -> None:
    async with serve({("POST", ASYNC_PATH): replies(dropping())}) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 0
    assert "ServerDisconnected" in result.message
    assert server.count("/api/v2/generate/async") == 1


async def test_dropped_connection_is_retried_with_an_idempotency_key() -> None:
    async with serve({("POST", "/api/v2/kudos/transfer"): replies(dropping())}) as server:
        t = transport(server)
        result = await t.send(TransferRequest(username="a#1", idempotency_key="k-1"), Submitted)
        await t.close()
    assert isinstance(result, Submitted)
    assert [hit.headers["Idempotency-Key"] for hit in server.hits] == ["k-1", "k-1"]


async def test_timeout_is_retried() -> None:
    calls = 0

    async def slow_then_fast(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(1)
        return await ok_check(request)

    async with serve({("GET", CHECK_PATH): replies(slow_then_fast)}) as server:
        t = transport(server, request_timeout=0.2)
        started = time.monotonic()
        result = await t.send(CheckRequest(id="x"), Check)
        elapsed = time.monotonic() - started
        await t.close()
    assert isinstance(result, Check)
    assert calls == 2
    assert elapsed < 0.9


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_retried_even_for_a_generation_and_then_reported() -> None:
    sleeps: list[float] = []

    async def record_sleep(delay: float) -> None:
        sleeps.append(delay)

    t = HordeTransport(
        base_url=f"http://127.0.0.1:{unused_port()}/api",
        retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=1.0),
        rate_limits=None,
        sleep=record_sleep,
        rng=random.Random(1),
    )
    result = await t.send(SubmitRequest(apikey=API_KEY, prompt="p"), Submitted)
    await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 0
    assert result.rc == RC.RC_MISSING
    assert "ClientConnectorError" in result.message
    assert API_KEY not in result.message
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


async def test_html_error_body_becomes_an_error_response() -> None:
    html = "<html><head><title>502</title></head><body><h1>Bad gateway</h1> cloudflare</body></html>"
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(502, html, "text/html")),
    }
    async with serve(routes) as server:
        t = transport(server, retry=RetryPolicy(max_attempts=1))
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 502
    assert "Bad gateway" in result.message
    assert "<h1>" not in result.message


async def test_non_json_success_body_becomes_an_error_response() -> None:
    page = "<html><body><h1>maintenance</h1></body></html>"
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(200, page, "text/html")),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.http_status == 200
    assert "not JSON" in result.message
    assert "maintenance" in result.message
    assert "<" not in result.message


async def test_a_proxy_page_instead_of_json_is_retried_unless_it_answered_a_post() -> None:
    # A CDN or captive portal answered for the Horde: a GET is safe to ask again, a POST may have
    # been queued behind the proxy, so it is not.
    page = "<html><body>Checking your browser</body></html>"
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(200, page, "text/html"), ok_check),
        ("POST", ASYNC_PATH): replies(respond(200, page, "text/html"), accepted),
    }
    async with serve(routes) as server:
        t = transport(server)
        check = await t.send(CheckRequest(id="x"), Check)
        submit = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(check, Check)
    assert server.count("/api/v2/generate/check/x") == 2
    assert isinstance(submit, RequestErrorResponse)
    assert submit.http_status == 200
    assert server.count("/api/v2/generate/async") == 1


async def test_schema_mismatch_names_the_fields() -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("GET", CHECK_PATH): replies(respond(200, {"done": "perhaps"})),
    }
    async with serve(routes) as server:
        t = transport(server)
        result = await t.send(CheckRequest(id="x"), Check)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    # The answer's fields, not the request's: ``errors`` is kept for the Horde's verdict on a request.
    assert result.errors is None
    assert result.unexpected_answer
    assert "done" in result.message
    assert "wait_time" in result.message
    assert "Check" in result.message
    assert server.count("/api/v2/generate/check/x") == 1


async def test_api_key_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", ASYNC_PATH): replies(
            respond(429, {"message": "2 per 1 second"}),
            respond(400, {"message": "bad", "rc": "MissingPrompt"}),
        ),
    }
    caplog.set_level(logging.DEBUG)
    async with serve(routes) as server:
        t = transport(server, apikey=API_KEY)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert "retrying" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(t)


async def test_rate_limits_space_out_polls_of_one_id() -> None:
    limits = HordeRateLimits(check=RateLimit(2, 0.3))
    async with serve({("GET", CHECK_PATH): replies(ok_check)}) as server:
        t = transport(server, rate_limits=limits)
        await asyncio.gather(*(t.send(CheckRequest(id="x"), Check) for _ in range(5)))
        await t.send(CheckRequest(id="other"), Check)
        await t.close()
    times = sorted(hit.at for hit in server.hits if hit.path.endswith("/x"))
    assert len(times) == 5
    for i in range(2, 5):
        assert times[i] - times[i - 2] >= 0.29
    other = next(hit.at for hit in server.hits if hit.path.endswith("/other"))
    assert other - times[-1] < 0.2  # a different id has its own budget


def test_base_url_comes_from_the_argument_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AI_HORDE_URL", raising=False)
    assert HordeTransport().base_url == "https://aihorde.net/api/"
    monkeypatch.setenv("AI_HORDE_URL", "http://127.0.0.1:9/api")
    from_env = HordeTransport()
    assert HordeTransport(base_url="http://127.0.0.1:8/x/").base_url == "http://127.0.0.1:8/x/"
    monkeypatch.setenv("AI_HORDE_URL", "http://127.0.0.1:10/api/")
    assert from_env.base_url == "http://127.0.0.1:9/api/"


async def test_owned_session_is_closed_and_a_given_one_is_not() -> None:
    owned = HordeTransport(base_url="http://127.0.0.1:9/api/")
    session = await owned.get_session()
    await owned.close()
    assert session.closed
    async with aiohttp.ClientSession() as given_session:
        given = HordeTransport(given_session, base_url="http://127.0.0.1:9/api/")
        assert await given.get_session() is given_session
        await given.close()
        assert not given_session.closed


def test_retry_after_parsing() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("60") == 60.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_is_full_jitter_under_a_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=5.0)
    rng = random.Random(0)
    samples = [[policy.backoff(n, rng) for _ in range(200)] for n in (1, 2, 3, 4)]
    for n, values in zip((1, 2, 3, 4), samples, strict=True):
        assert all(0 <= v <= min(5.0, 2 ** (n - 1)) for v in values)
        assert max(values) > 0.8 * min(5.0, 2 ** (n - 1))
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_schema_error_body_names_the_fields() -> None:
    body = {
        "message": "Input payload validation failed",
        "errors": {"params.width": "1000 is not a multiple of 64"},
    }
    async with serve({("POST", ASYNC_PATH): replies(respond(400, body))}) as server:
        t = transport(server)
        result = await t.send(SubmitRequest(prompt="p"), Submitted)
        await t.close()
    assert isinstance(result, RequestErrorResponse)
    assert result.errors == {"params.width": "1000 is not a multiple of 64"}
    assert "params.width" in result.message
    assert result.rc == RC.RC_MISSING
    assert server.count("/api/v2/generate/async") == 1
