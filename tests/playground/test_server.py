"""The playground's web server (bot/playground/server.py) in front of a stand-in for SimCord's preview."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.playground.server import BadRequest, PlaygroundServer, Upstream

TOKEN = "page-token-0123456789"
UPSTREAM_CAPABILITY = "simcord-capability-secret"
BIG_FILE = 16 * 1024 * 1024
INDEX = "<html><head><title>SimCord Preview</title></head><body><main></main></body></html>"


@dataclass
class FakePreview:
    """What SimCord's preview server saw, and the page revisions it holds."""

    url: str = ""
    _pages: dict[str, Any] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeApi:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def state(self) -> Mapping[str, Any]:
        return {"channels": []}

    async def switch_channel(self, channel_id: int) -> None:
        self.calls.append(("channel", channel_id))

    async def message_action(self, viewer_id: int, message_id: int, action: str) -> None:
        if action == "react:nope":
            raise BadRequest("No such reaction.")
        self.calls.append(("message", viewer_id, message_id, action))


@pytest.fixture
async def upstream() -> AsyncIterator[FakePreview]:
    preview = FakePreview(_pages={"ctx-1": SimpleNamespace(revision=7)})

    async def record(request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"path": request.path, "headers": dict(request.headers)}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            parts = {}
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                parts[part.name] = (part.filename, await part.read())
            entry["parts"] = parts
        else:
            entry["body"] = await request.read()
        preview.seen.append(entry)
        if request.path == "/":
            return web.Response(text=INDEX, content_type="text/html", headers={"X-Frame-Options": "DENY"})
        if request.path == "/fonts/big.ttf":
            return web.Response(body=b"f" * BIG_FILE, content_type="font/ttf")
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    preview.url = f"http://127.0.0.1:{port}/#{UPSTREAM_CAPABILITY}"
    try:
        yield preview
    finally:
        await runner.cleanup()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def server(upstream: FakePreview, api: FakeApi) -> AsyncIterator[PlaygroundServer]:
    server = PlaygroundServer(
        token=TOKEN,
        upstream=lambda: Upstream.of(upstream),
        api=api,
        lock=asyncio.Lock(),  # type: ignore[arg-type]
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def origin(server: PlaygroundServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def status(
    client: aiohttp.ClientSession, server: PlaygroundServer, path: str, *, method: str = "GET", **headers: str
) -> int:
    names = {"token": "X-Simcord-Capability", "context": "X-Simcord-Context"}
    sent = {names.get(name, name): value for name, value in headers.items()}
    async with client.request(
        method, origin(server) + path, headers=sent, json={} if method == "POST" else None
    ) as answer:
        return answer.status


def test_the_url_carries_the_token_in_its_fragment_on_loopback(server: PlaygroundServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/#{TOKEN}"


@pytest.mark.parametrize(
    "path", ["/", "/app.js", "/playground/playground.js", "/api/state", "/playground/api/state"]
)
async def test_a_foreign_host_is_refused(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview, path: str
) -> None:
    assert await status(client, server, path, Host="evil.example", token=TOKEN) == 403
    assert await status(client, server, path, Host=f"evil.example:{server.port}", token=TOKEN) == 403
    assert await status(client, server, path, Host=f"localhost:{server.port}", token=TOKEN) == 200
    assert [seen["path"] for seen in upstream.seen] in ([], [path])  # the refused ones never got there


async def test_a_cross_site_request_is_refused(
    server: PlaygroundServer, client: aiohttp.ClientSession
) -> None:
    assert await status(client, server, "/api/state", token=TOKEN, Origin="http://evil.example") == 403
    assert await status(client, server, "/api/state", token=TOKEN, Origin=origin(server)) == 200


@pytest.mark.parametrize("path", ["/api/state", "/api/assets/a_1", "/playground/api/state"])
async def test_the_api_needs_the_page_token(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview, path: str
) -> None:
    assert await status(client, server, path) == 401
    assert await status(client, server, path, token=TOKEN[:-1]) == 401
    assert await status(client, server, path, token=UPSTREAM_CAPABILITY) == 401
    assert upstream.seen == []
    assert await status(client, server, path, token=TOKEN) == 200


async def test_requests_reach_simcord_with_its_own_capability(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview
) -> None:
    assert await status(client, server, "/api/state?x=1", token=TOKEN, context="ctx-1", Cookie="c=1") == 200

    [seen] = upstream.seen
    assert seen["headers"]["X-Simcord-Capability"] == UPSTREAM_CAPABILITY
    assert seen["headers"]["X-Simcord-Context"] == "ctx-1"
    assert "Cookie" not in seen["headers"]
    assert TOKEN not in json.dumps(seen["headers"])


async def test_the_page_gets_the_playground_bar(
    server: PlaygroundServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(origin(server) + "/") as answer:
        page = await answer.text()
        assert answer.headers["X-Frame-Options"] == "DENY"  # SimCord's own headers are kept
    assert "<title>Horde bot playground</title>" in page
    assert '<script type="module" src="/playground/playground.js"></script>' in page
    assert '<link rel="stylesheet" href="/playground/playground.css">' in page
    async with client.get(origin(server) + "/playground/playground.js") as answer:
        assert answer.status == 200
        assert "X-Simcord-Capability" in await answer.text()
    assert await status(client, server, "/playground/secrets.txt") == 404


async def test_an_action_is_stated_against_the_newest_revision(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview
) -> None:
    headers = {"X-Simcord-Capability": TOKEN, "X-Simcord-Context": "ctx-1"}
    for stated in (5, 7, 9):
        action = {"kind": "click", "published_revision": stated, "sequence": 2}
        async with client.post(origin(server) + "/api/action", json=action, headers=headers) as answer:
            assert answer.status == 200

    assert [json.loads(seen["body"])["published_revision"] for seen in upstream.seen] == [7, 7, 9]
    assert {json.loads(seen["body"])["sequence"] for seen in upstream.seen} == {2}


async def test_an_upload_is_stated_against_the_newest_revision_with_its_file_intact(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview
) -> None:
    form = aiohttp.FormData()
    form.add_field("payload", json.dumps({"kind": "run_command", "published_revision": 3}))
    form.add_field("file:image", b"\x89PNG...", filename="cat.png", content_type="image/png")
    headers = {"X-Simcord-Capability": TOKEN, "X-Simcord-Context": "ctx-1"}
    async with client.post(origin(server) + "/api/action", data=form, headers=headers) as answer:
        assert answer.status == 200

    [seen] = upstream.seen
    payload = json.loads(seen["parts"]["payload"][1])
    assert payload == {"kind": "run_command", "published_revision": 7}
    assert seen["parts"]["file:image"] == ("cat.png", b"\x89PNG...")


async def test_actions_wait_while_the_world_moves(
    server: PlaygroundServer, client: aiohttp.ClientSession, upstream: FakePreview
) -> None:
    headers = {"X-Simcord-Capability": TOKEN, "X-Simcord-Context": "ctx-1"}
    async with server.lock:
        action = asyncio.create_task(client.post(origin(server) + "/api/action", json={}, headers=headers))
        await asyncio.sleep(0.3)
        assert upstream.seen == []
    answer = await action
    answer.release()
    assert [seen["path"] for seen in upstream.seen] == ["/api/action"]


async def test_the_bar_asks_the_playground(
    server: PlaygroundServer, client: aiohttp.ClientSession, api: FakeApi
) -> None:
    headers = {"X-Simcord-Capability": TOKEN}
    url = origin(server) + "/playground/api/"
    async with client.post(url + "channel", json={"channel_id": "123"}, headers=headers) as answer:
        assert answer.status == 200
    body = {"viewer_id": "1", "message_id": 2, "action": "react:🔁"}
    async with client.post(url + "message", json=body, headers=headers) as answer:
        assert answer.status == 200
    async with client.post(url + "message", json={**body, "action": "react:nope"}, headers=headers) as answer:
        assert (answer.status, await answer.text()) == (400, "No such reaction.")
    async with client.post(url + "message", json={**body, "viewer_id": "x"}, headers=headers) as answer:
        assert answer.status == 400
    async with client.post(url + "channel", data="[1]", headers=headers) as answer:
        assert answer.status == 400

    assert api.calls == [("channel", 123), ("message", 1, 2, "react:🔁")]


async def test_a_browser_leaving_mid_answer_is_no_error(
    server: PlaygroundServer, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    for _ in range(3):
        answer = await client.get(origin(server) + "/fonts/big.ttf")
        assert answer.status == 200
        await answer.content.read(1024)
        answer.close()  # the page aborted its request
    await asyncio.sleep(0.3)
    async with client.get(origin(server) + "/fonts/big.ttf") as answer:
        assert len(await answer.read()) == BIG_FILE  # streamed whole to a browser that stays

    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
