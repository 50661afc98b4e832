"""The playground's web server: SimCord's preview page, behind a guard, with the playground's bar.

The browser talks to this server only. It

- answers only on 127.0.0.1, and only to requests whose ``Host`` (and ``Origin``, when sent) name
  this server: anything else gets 403, so another site cannot reach it through DNS rebinding;
- answers ``/api/…`` and ``/playground/api/…`` only with the page's token (the URL's fragment,
  sent by the page in ``X-Simcord-Capability``): 401 otherwise;
- relays everything else to SimCord's preview server (its own loopback port, its own secret
  capability, which never reaches the browser), so the page keeps working when the playground
  switches channel and starts a new preview behind it;
- adds the playground's bar to the page (``static/``), with the channels, hints, and buttons for
  what SimCord's composer cannot do (reactions, message menus).

Browser actions run one at a time with the :class:`~bot.playground.live.LiveSync` loop (``lock``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import web

from bot.playground._simcord_live import page_revision

log = logging.getLogger(__name__)

TOKEN_HEADER: Final = "X-Simcord-Capability"
CONTEXT_HEADER: Final = "X-Simcord-Context"
# The preview takes attachments up to 25 MiB; a little more for the multipart envelope.
MAX_BODY: Final = 27 * 1024 * 1024
RELAY_CHUNK: Final = 256 * 1024
STATIC: Final = {"playground.js": "application/javascript", "playground.css": "text/css"}
# Relayed answers keep SimCord's headers, except those describing the connection or the encoding.
_HOP_HEADERS: Final = frozenset(
    {"connection", "content-length", "content-encoding", "keep-alive", "transfer-encoding", "date", "server"}
)
_INJECTED_HEAD: Final = '<link rel="stylesheet" href="/playground/playground.css">\n  </head>'
_INJECTED_BODY: Final = '<script type="module" src="/playground/playground.js"></script>\n  </body>'


@dataclass(frozen=True)
class Upstream:
    """SimCord's preview server: its origin, its capability, and the preview object itself."""

    origin: str
    capability: str
    preview: Any

    @classmethod
    def of(cls, preview: Any) -> Upstream:
        origin, _, capability = str(preview.url).partition("/#")
        return cls(origin=origin, capability=capability, preview=preview)


class PlaygroundApi(Protocol):
    """What the playground's bar asks of the world (the runner's :class:`Playground`)."""

    def state(self) -> Mapping[str, Any]: ...

    async def switch_channel(self, channel_id: int) -> None: ...

    async def message_action(self, viewer_id: int, message_id: int, action: str) -> None: ...


class BadRequest(Exception):
    """The bar asked for something that cannot be done; the message is shown to the member."""


class PlaygroundServer:
    def __init__(
        self,
        *,
        token: str,
        upstream: Callable[[], Upstream],
        api: PlaygroundApi,
        lock: asyncio.Lock,
        port: int = 0,
    ) -> None:
        self.token = token
        self.upstream = upstream
        self.api = api
        self.lock = lock
        self._requested_port = port
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The page's address, with its token in the fragment: a secret, like a password."""
        return f"http://127.0.0.1:{self.port}/#{self.token}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self._index)
        app.router.add_get("/playground/{name}", self._static)
        app.router.add_get("/playground/api/state", self._state)
        app.router.add_post("/playground/api/channel", self._channel)
        app.router.add_post("/playground/api/message", self._message)
        app.router.add_route("*", "/{path:.*}", self._relay)
        self._client = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- the guard --------------------------------------------------------------------------------

    def _own_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Host", "") not in self._own_hosts():
            raise web.HTTPForbidden(text="This playground answers only on its own address.")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{host}" for host in self._own_hosts()}:
            raise web.HTTPForbidden(text="Cross-site requests are refused.")
        if request.path.startswith(("/api/", "/playground/api/")):
            supplied = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(supplied.encode(), self.token.encode()):
                raise web.HTTPUnauthorized(text="Open the playground from the address it printed.")
        return await handler(request)

    # -- the page ---------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        upstream = self.upstream()
        assert self._client is not None
        async with self._client.get(
            upstream.origin + "/", headers={TOKEN_HEADER: upstream.capability}, allow_redirects=False
        ) as answer:
            page = await answer.text()
            if answer.status != 200:
                return web.Response(text=page, status=answer.status)
            headers = _copy_headers(answer.headers)
        page = (
            page.replace("<title>SimCord Preview</title>", "<title>Horde bot playground</title>")
            .replace("</head>", _INJECTED_HEAD, 1)
            .replace("</body>", _INJECTED_BODY, 1)
        )
        return web.Response(body=page.encode(), headers=headers)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = files("bot.playground").joinpath("static", name).read_text(encoding="utf-8")
        return web.Response(text=body, content_type=STATIC[name], headers={"Cache-Control": "no-store"})

    # -- the bar's API ----------------------------------------------------------------------------

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.api.state(), headers={"Cache-Control": "no-store"})

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        async with self.lock:
            await self._answer(self.api.switch_channel(_snowflake(body, "channel_id")))
        return web.json_response({"ok": True})

    async def _message(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        action = body.get("action")
        if not isinstance(action, str):
            raise web.HTTPBadRequest(text="'action' is missing")
        viewer, message = _snapshot_ids(body)
        async with self.lock:
            await self._answer(self.api.message_action(viewer, message, action))
        return web.json_response({"ok": True})

    @staticmethod
    async def _answer(work: Awaitable[None]) -> None:
        try:
            await work
        except BadRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    # -- relaying to SimCord's preview ------------------------------------------------------------

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in {"accept", "content-type", CONTEXT_HEADER.lower()}
        }
        if request.method == "POST" and request.path == "/api/action":
            # Actions change the world: one at a time, never while the clock moves.
            async with self.lock:
                revision = page_revision(self.upstream().preview, headers.get(CONTEXT_HEADER, ""))
                data = await _action_at(request, revision)
                if isinstance(data, aiohttp.MultipartWriter):
                    headers.pop("Content-Type", None)  # the new body has its own boundary
                return await self._fetch(request, "POST", request.path_qs, headers, data)
        return await self._fetch(request, request.method, request.path_qs, headers, await request.read())

    async def _fetch(
        self,
        request: web.Request,
        method: str,
        path: str,
        headers: dict[str, str],
        data: bytes | aiohttp.MultipartWriter,
    ) -> web.StreamResponse:
        """Relay one request to SimCord's preview and stream its answer back (fonts are megabytes)."""
        upstream = self.upstream()
        assert self._client is not None
        headers = {**headers, TOKEN_HEADER: upstream.capability}
        if "Origin" in request.headers:
            headers["Origin"] = upstream.origin
        async with self._client.request(
            method, upstream.origin + path, headers=headers, data=data or None, allow_redirects=False
        ) as answer:
            response = web.StreamResponse(status=answer.status, headers=_copy_headers(answer.headers))
            response.content_length = answer.content_length
            try:
                await response.prepare(request)
                async for chunk in answer.content.iter_chunked(RELAY_CHUNK):
                    await response.write(chunk)
            except ConnectionError:
                pass  # the page gave up on it (it aborts its state reads when an action starts)
            return response  # aiohttp ends it, and takes a gone browser quietly


def _copy_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in _HOP_HEADERS}


async def _action_at(request: web.Request, revision: int | None) -> bytes | aiohttp.MultipartWriter:
    """The browser's action, stated against the page's newest revision.

    The preview refuses an action stated against an older revision than the page's ("stale
    revision"). The playground republishes pages whenever the bot edits a message, so a click
    made a moment before a progress edit would fail, where Discord would take it: the button is
    still there. SimCord still checks that the clicked component exists and is enabled.
    """
    if request.content_type.startswith("multipart/"):
        # An upload: the action is the "payload" part; the files follow it unchanged.
        writer = aiohttp.MultipartWriter("form-data")
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            content = await part.read()
            if part.name == "payload":
                content = _restated(content, revision)
            kind = part.headers.get("Content-Type", "application/octet-stream")
            added = writer.append(content, {"Content-Type": kind})
            if part.filename:
                added.set_content_disposition("form-data", name=part.name or "", filename=part.filename)
            else:
                added.set_content_disposition("form-data", name=part.name or "")
        return writer
    return _restated(await request.read(), revision)


def _restated(body: bytes, revision: int | None) -> bytes:
    try:
        action = json.loads(body)
    except ValueError:
        return body
    stated = action.get("published_revision") if isinstance(action, dict) else None
    if revision is None or not isinstance(stated, int) or isinstance(stated, bool) or stated >= revision:
        return body
    action["published_revision"] = revision
    return json.dumps(action).encode()


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="JSON object required") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="JSON object required")
    return body


def _snowflake(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    try:
        number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else -1
    except ValueError:
        number = -1
    if not 0 < number < 1 << 64:
        raise web.HTTPBadRequest(text=f"{name!r} must be a Discord id")
    return number


def _snapshot_ids(body: Mapping[str, Any]) -> tuple[int, int]:
    return _snowflake(body, "viewer_id"), _snowflake(body, "message_id")
