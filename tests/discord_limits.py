"""Discord's rate limits for SimCord tests, applied where Discord applies them, so that discord.py's
own rate-limit handling runs.

SimCord 3.2.1 replaces discord.py's ``HTTPClient.request`` and its webhook adapter wholesale, so
discord.py's buckets, its pre-emptive waits and its 429 retries never run, and SimCord answers no
429 at all. :func:`install` puts the real ``HTTPClient.request`` and the real
``AsyncWebhookAdapter.request`` back (interaction responses, followups and edits go through the
latter) and gives both a fake aiohttp session, :class:`LimitedDiscord`, which:

* applies Discord's limits, by the virtual clock SimCord's loop runs on:

  - per-route buckets, answered with ``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket``
    on every response: a channel's messages (sends and edits together, :data:`CHANNEL_MESSAGES`),
    reactions, each interaction webhook (:data:`WEBHOOK`), and every other route
    (:data:`OTHER_ROUTES`) per route and major parameter;
  - the global limit, 50 requests a second (:data:`GLOBAL`); interaction endpoints are exempt;
  - an interaction token lives 15 minutes: later, its webhook answers 401 Invalid Webhook Token
    (50027);

  and answers 429 with a JSON ``retry_after`` (and ``global``) when one is exceeded, with
  ``X-RateLimit-Global``/``X-RateLimit-Scope`` and the ``Via`` header discord.py needs to retry;
* otherwise hands the request to SimCord's router, so SimCord's world stays the source of truth
  (and its ``inject_error`` faults still apply).

Every 429 is counted (:attr:`LimitedDiscord.stats`), and so is every 429 that got past discord.py
to the bot's code (``escaped_429``): a test asserts that none did.

One more piece makes the waits virtual. SimCord settles only when every bot task waits on
something it recognises as parked (a sleep timer beyond the settle deadline, a listener...).
discord.py waits for a bucket on a future that another request's ``asyncio.sleep`` resolves, on a
lock held by a sleeping request, or on its global-limit event: to SimCord those look like busy
work. :func:`install` teaches SimCord's settlement that a task waiting *inside discord.py's
rate-limit code* is parked: the task that will release it is either running (then SimCord waits
for it anyway) or asleep on a timer SimCord knows. The internals this relies on are checked by
:func:`check_pinned_internals` (and its test).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import types
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import discord
import simcord
from discord.http import HTTPClient, Ratelimit
from discord.webhook.async_ import AsyncDeferredLock, AsyncWebhookAdapter
from simcord import _settlement
from simcord.backend.errors import BackendError
from simcord.http import router

API_PREFIX: Final = "/api/v"


@dataclass(frozen=True, slots=True)
class Limit:
    """``calls`` per ``period_s`` seconds, in fixed windows that start with a window's first call
    (as Discord's buckets do)."""

    calls: int
    period_s: float


CHANNEL_MESSAGES: Final = Limit(5, 5.0)
"""A channel's message bucket: sends and edits of its messages together."""
REACTIONS: Final = Limit(1, 0.25)
"""Adding or removing reactions in a channel."""
WEBHOOK: Final = Limit(5, 2.0)
"""One webhook (an interaction's token): followups and edits of its messages."""
OTHER_ROUTES: Final = Limit(50, 1.0)
"""Any other route, per route and major parameter."""
GLOBAL: Final = Limit(50, 1.0)
"""Every request of the bot, except interaction endpoints."""
TOKEN_LIFETIME_S: Final = 15 * 60.0
INVALID_WEBHOOK_TOKEN: Final = 50027

_SNOWFLAKE_EPOCH_MS: Final = 1_420_070_400_000
_ROUTE_PARAMS = re.compile(r"/\d{15,21}(?=/|$)")


def _snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + _SNOWFLAKE_EPOCH_MS) / 1000


@dataclass(slots=True)
class _Window:
    limit: Limit
    reset_at: float = -math.inf
    remaining: int = 0

    def take(self, now: float) -> float:
        """Spend one call; 0 if allowed, else the seconds until the window resets."""
        if now >= self.reset_at:
            self.reset_at, self.remaining = now + self.limit.period_s, self.limit.calls
        if self.remaining <= 0:
            return self.reset_at - now
        self.remaining -= 1
        return 0.0


@dataclass
class LimitStats:
    """What the model answered. ``escaped_429`` counts the 429s discord.py gave up on and raised
    into the bot's code; the model's promise to tests is that discord.py retries every other one."""

    requests: int = 0
    responses_429: Counter[str] = field(default_factory=Counter)
    """By scope: ``global``, ``user`` (a route bucket)."""
    by_bucket_429: Counter[str] = field(default_factory=Counter)
    escaped_429: int = 0
    expired_tokens: int = 0

    @property
    def total_429(self) -> int:
        return sum(self.responses_429.values())


class _Response:
    """Just enough of an ``aiohttp.ClientResponse`` for discord.py."""

    def __init__(self, status: int, body: Any, headers: dict[str, str], method: str, url: str) -> None:
        self.status = status
        self.reason = {200: "OK", 204: "No Content", 401: "Unauthorized", 429: "Too Many Requests"}.get(
            status, "Error"
        )
        self.headers = {"Via": "1.1 google", **headers}
        self.method = method
        self.url = url
        self._text = "" if body is None else json.dumps(body)
        if body is not None:
            self.headers["content-type"] = "application/json"

    async def text(self, encoding: str = "utf-8") -> str:
        return self._text

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Request:
    def __init__(self, pending: Awaitable[_Response]) -> None:
        self._pending = pending

    async def __aenter__(self) -> _Response:
        return await self._pending

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _UploadedFile:
    """What SimCord's router reads of a ``discord.File``."""

    fp: Any
    filename: str
    description: str | None = None


class LimitedDiscord:
    """The fake aiohttp session: Discord's limits in front of SimCord's router. See the module."""

    closed = False

    def __init__(self, env: simcord.Env, *, channel_messages: Limit = CHANNEL_MESSAGES) -> None:
        self.env = env
        self.channel_messages = channel_messages
        self.stats = LimitStats()
        self._buckets: dict[str, _Window] = {}
        self._global = _Window(GLOBAL)
        self._tokens: dict[str, float] = {}
        """Interaction token -> when its interaction was created (epoch seconds)."""

    def now(self) -> float:
        """Epoch seconds on SimCord's clock (the one the bot's loop runs on)."""
        return self.env.now().timestamp()

    def request(self, method: str, url: str, **kwargs: Any) -> _Request:
        return _Request(self._handle(method, str(url), kwargs))

    async def close(self) -> None:
        return None

    # -- the limits --------------------------------------------------------------------------

    def bucket_of(self, method: str, path: str) -> tuple[str, Limit] | None:
        """The bucket hash (with its major parameter) and limit of a request; ``None`` for the
        interaction callback, which has no bucket."""
        parts = path.strip("/").split("/")
        if parts[0] == "interactions":
            return None
        if parts[0] == "webhooks" and len(parts) >= 3:
            return f"webhook:{parts[1]}/{parts[2]}", WEBHOOK
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "messages":
            if len(parts) >= 5 and parts[4] == "reactions":
                return f"reactions:{parts[1]}", REACTIONS
            if method in ("POST", "PATCH") and len(parts) <= 4:
                return f"channel-messages:{parts[1]}", self.channel_messages
        major = parts[1] if len(parts) > 1 and parts[0] in ("channels", "guilds") else ""
        template = _ROUTE_PARAMS.sub("/{id}", "/" + "/".join(parts))
        return f"{method} {template}:{major}", OTHER_ROUTES

    def _limit(self, method: str, path: str) -> _Response | dict[str, str]:
        """The rate-limit headers of a request that may go on, or the 429 that refuses it."""
        now = self.now()
        interaction = path.startswith(("/interactions/", "/webhooks/"))
        if not interaction:
            wait = self._global.take(now)
            if wait > 0:
                self.stats.responses_429["global"] += 1
                body = {"message": "You are being rate limited.", "retry_after": wait, "global": True}
                headers = {
                    "X-RateLimit-Global": "true",
                    "X-RateLimit-Scope": "global",
                    "Retry-After": str(math.ceil(wait)),
                }
                return _Response(429, body, headers, method, path)
        bucket = self.bucket_of(method, path)
        if bucket is None:
            return {}
        key, limit = bucket
        window = self._buckets.get(key)
        if window is None:
            window = self._buckets[key] = _Window(limit)
        wait = window.take(now)
        headers = {
            "X-RateLimit-Limit": str(limit.calls),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": f"{window.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{max(0.0, window.reset_at - now):.3f}",
            # The hash Discord sends names the bucket without its major parameter.
            "X-RateLimit-Bucket": key.split(":", 1)[0].replace(" ", "_"),
        }
        if wait > 0:
            self.stats.responses_429["user"] += 1
            self.stats.by_bucket_429[key.split(":", 1)[0]] += 1
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
            headers |= {"X-RateLimit-Scope": "user", "Retry-After": str(math.ceil(wait))}
            return _Response(429, body, headers, method, path)
        return headers

    def _token_expired(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        if parts[0] == "interactions" and len(parts) >= 3:
            self._tokens.setdefault(parts[2], _snowflake_time(int(parts[1])))
            return False
        if parts[0] == "webhooks" and len(parts) >= 3:
            created = self._tokens.get(parts[2])
            return created is not None and self.now() >= created + TOKEN_LIFETIME_S
        return False

    # -- a request ---------------------------------------------------------------------------

    async def _handle(self, method: str, url: str, kwargs: dict[str, Any]) -> _Response:
        path = path_of(url)
        self.stats.requests += 1
        if self._token_expired(path):
            self.stats.expired_tokens += 1
            body = {"message": "Invalid Webhook Token", "code": INVALID_WEBHOOK_TOKEN}
            return _Response(401, body, {}, method, url)
        limited = self._limit(method, path)
        if isinstance(limited, _Response):
            return limited
        payload, files = _body(kwargs.get("data"))
        params = kwargs.get("params")
        try:
            result = router.dispatch(
                self.env.backend,
                method,
                path,
                json=payload,
                params=dict(params) if params else None,
                files=files,
                reason=kwargs.get("headers", {}).get("X-Audit-Log-Reason"),
            )
        except (router.RouteNotImplemented, router.UnsupportedField):
            raise  # a parity gap must stay loud, as in SimCord's own transport
        except BackendError as exc:
            return _Response(exc.status, exc.to_json(), limited, method, url)
        if result is None:
            return _Response(204, None, limited, method, url)
        return _Response(200, result, limited, method, url)


def path_of(url: str) -> str:
    """``/channels/1/messages`` from ``https://discord.com/api/v10/channels/1/messages?x=1``."""
    path = url.split("?", 1)[0]
    at = path.find(API_PREFIX)
    if at != -1:
        path = path[at + len(API_PREFIX) :]
        path = path[path.find("/") :]
    return path


def _body(data: Any) -> tuple[Any, list[_UploadedFile]]:
    """The JSON payload and the files of what discord.py sent (a JSON string or a form)."""
    if data is None:
        return None, []
    if isinstance(data, str | bytes):
        return json.loads(data), []
    payload: Any = None
    files: list[_UploadedFile] = []
    # aiohttp.FormData keeps its parts as (type options, headers, value); see check_pinned_internals.
    for options, _headers, value in data._fields:
        name = options.get("name")
        if name == "payload_json":
            payload = json.loads(value)
        elif "filename" in options:
            files.append(_UploadedFile(value, options["filename"]))
    if isinstance(payload, dict):
        described = {
            int(item["id"]): item.get("description")
            for item in payload.get("attachments", ())
            if isinstance(item, dict) and str(item.get("id", "")).isdigit()
        }
        files = [
            _UploadedFile(file.fp, file.filename, described.get(index)) for index, file in enumerate(files)
        ]
    return payload, files


# -- installing it in a running SimCord ------------------------------------------------------


def _counting_429(stats: LimitStats, request: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(request)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return await request(*args, **kwargs)
        except discord.RateLimited:
            stats.escaped_429 += 1
            raise
        except discord.HTTPException as exc:
            if exc.status == 429:
                stats.escaped_429 += 1
            raise

    return counted


def install(env: simcord.Env, *, channel_messages: Limit = CHANNEL_MESSAGES) -> LimitedDiscord:
    """Put discord.py's real REST handling, behind Discord's limits, into ``env``'s current bot.

    Call it after the bot is attached (``env.start()``, and again after ``env.restart_bot``),
    before the interactions whose webhooks should be limited (each captures the session when it
    is created)."""
    check_pinned_internals()
    _teach_settlement()
    model = LimitedDiscord(env, channel_messages=channel_messages)
    http = env.bot.http
    http._HTTPClient__session = model  # type: ignore[attr-defined]
    global_over = asyncio.Event()
    global_over.set()
    http._global_over = global_over
    http.request = types.MethodType(_counting_429(model.stats, HTTPClient.request), http)  # type: ignore[method-assign]
    adapter = env._webhook_adapter
    adapter._locks = weakref.WeakValueDictionary()
    adapter.request = types.MethodType(_counting_429(model.stats, AsyncWebhookAdapter.request), adapter)
    return model


# -- SimCord's settlement and discord.py's rate-limit waits -----------------------------------

_RATE_LIMIT_WAITS: Final = frozenset(
    {
        Ratelimit.acquire.__code__,
        Ratelimit._refresh.__code__,
        AsyncDeferredLock.__aenter__.__code__,
        HTTPClient.request.__code__,
        AsyncWebhookAdapter.request.__code__,
    }
)
_SLEEP_CALLBACKS: Final = frozenset({"_set_result_unless_cancelled", "_release_waiter"})
_original_park_reason: Callable[..., str | None] | None = None


def _awaited_frames(task: asyncio.Task[Any]) -> Iterator[types.FrameType]:
    coroutine: Any = task.get_coro()
    seen: set[int] = set()
    while coroutine is not None and id(coroutine) not in seen:
        seen.add(id(coroutine))
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            yield frame
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)


def _rate_limit_park(state: Any, task: asyncio.Task[Any], deadline: float) -> str | None:
    """Why ``task`` counts as parked while it waits in discord.py's rate-limit code, or ``None``.

    Its wait ends by a timer (a bucket's reset, a 429's ``retry_after``: parked if that timer is
    beyond the settle deadline, like any sleep) or by another request (a lock, the bucket's
    future, the global event: that request is either running, which keeps SimCord settling, or
    asleep on such a timer)."""
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None or waiter.done():
        return None
    frames = [frame.f_code for frame in _awaited_frames(task)]
    if not any(code in _RATE_LIMIT_WAITS for code in frames):
        return None
    # Only a wait of the rate-limit machinery itself, not a request on its way (the fake session
    # answers at once; a real sleep of the bot's would be somewhere else).
    innermost = frames[-1].co_name if frames else ""
    timers = [
        record
        for record in state.work.callbacks
        if record.handle is not None
        and not record.handle.cancelled()
        and any(arg is waiter for arg in getattr(record.handle, "_args", ()))
    ]
    if timers:
        names = {getattr(_original_callback(record.handle._callback), "__name__", "") for record in timers}
        if not names <= _SLEEP_CALLBACKS:
            return None
        if all(_settlement._callback_fire_time(state, record) > deadline for record in timers):
            return "discord.py rate-limit timer beyond settlement deadline"
        return None
    if innermost in ("acquire", "wait", "_refresh", "__aenter__", "_wait"):
        return "discord.py rate-limit wait for another request"
    return None


def _original_callback(callback: Any) -> Any:
    while True:
        original = getattr(callback, "__simcord_original_callback__", callback)
        if original is callback:
            return callback
        callback = original


def _teach_settlement() -> None:
    global _original_park_reason
    if _original_park_reason is not None:
        return
    original = _original_park_reason = _settlement._park_reason

    def park_reason(
        state: Any, task: asyncio.Task[Any], deadline: float, seen: set[int] | None = None
    ) -> str | None:
        reason = original(state, task, deadline, seen)
        return reason if reason is not None else _rate_limit_park(state, task, deadline)

    _settlement._park_reason = park_reason


def check_pinned_internals() -> None:
    """Fail loudly if the SimCord or discord.py internals this module relies on changed."""
    problems = []
    if simcord.__version__ != "3.2.1":
        problems.append(f"simcord {simcord.__version__} (pinned: 3.2.1)")
    if discord.__version__ != "2.7.1":
        problems.append(f"discord.py {discord.__version__} (pinned: 2.7.1)")
    checks: list[tuple[str, bool]] = [
        (
            "simcord._settlement._park_reason(state, task, deadline, seen)",
            _has_params(
                _original_park_reason or _settlement._park_reason, ("self", "task", "deadline", "seen")
            ),
        ),
        (
            "simcord._settlement._callback_fire_time",
            callable(getattr(_settlement, "_callback_fire_time", None)),
        ),
        ("simcord.http.router.dispatch", callable(getattr(router, "dispatch", None))),
        ("simcord.Env._webhook_adapter", "_webhook_adapter" in simcord.Env.__init__.__code__.co_names),
        (
            "discord.http.HTTPClient._HTTPClient__session",
            "_HTTPClient__session" in HTTPClient.__init__.__code__.co_names,
        ),
        ("discord.http.HTTPClient._global_over", "_global_over" in HTTPClient.request.__code__.co_names),
        ("HTTPClient.request uses self.__session.request", "request" in HTTPClient.request.__code__.co_names),
        ("AsyncWebhookAdapter._locks", "_locks" in AsyncWebhookAdapter.__init__.__code__.co_names),
        ("aiohttp.FormData._fields", isinstance(getattr(aiohttp.FormData(), "_fields", None), list)),
        ("discord.http.Ratelimit waits with asyncio.wait", "wait" in Ratelimit.acquire.__code__.co_names),
    ]
    problems += [name for name, ok in checks if not ok]
    if problems:
        raise RuntimeError("tests/discord_limits.py relies on internals that changed: " + ", ".join(problems))


def _has_params(function: Callable[..., Any], names: tuple[str, ...]) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and code.co_varnames[: code.co_argcount] == names


def virtual_now(env: simcord.Env) -> float:
    """Seconds since SimCord's epoch (2026-01-01), as tests and the simulator count them."""
    return (env.now() - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds()


__all__ = [
    "CHANNEL_MESSAGES",
    "GLOBAL",
    "OTHER_ROUTES",
    "REACTIONS",
    "TOKEN_LIFETIME_S",
    "WEBHOOK",
    "Limit",
    "LimitStats",
    "LimitedDiscord",
    "check_pinned_internals",
    "install",
    "path_of",
    "virtual_now",
]
