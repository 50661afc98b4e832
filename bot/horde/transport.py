"""The HTTP transport: one aiohttp session, the Horde's headers, retries and rate limits.

Retry rules (and why):

* 429 from the rate limiter (no rc) is an explicit refusal: nothing was done, so it is retried
  for every request, as often as needed until ``RetryPolicy.deadline`` (not counted against
  ``max_attempts``). The wait is for the server's window to reset: ``X-RateLimit-Reset`` (epoch
  seconds) or ``Retry-After``, whichever is later, and at least ``min_rate_limit_wait`` (the
  real Horde sends whole seconds, ``Retry-After: 0`` when under a second is left, and its reset
  time may be rounded early by half a second). Meanwhile the request's windows in the
  :class:`RateLimiter` are blocked, so the client's other requests to them wait too instead of
  being refused in turn.
* 503 is a refusal too: retried for every request within ``max_attempts``, honouring
  ``Retry-After`` (integer seconds or an HTTP date).
* 429 with rc ``TooManyPrompts`` is the user's *concurrency* limit: it only clears when their
  other generations finish, which takes far longer than a retry budget, so it is returned at
  once (``RetryPolicy.retry_too_many_prompts`` turns retrying on).
* 502, 504, timeouts and dropped connections are retried for idempotent requests only. A POST
  (``generate/async``, ``kudos/transfer`` …) may already have been accepted when the
  connection drops mid-response or a gateway times out, and retrying it would queue a duplicate
  generation and spend the user's kudos twice. Such a POST is retried only when the failure
  provably happened before the request was sent (the connection could not be opened), or when
  it carries an ``Idempotency-Key`` header.
* Other 4xx are never retried.
* A success status whose body is not JSON at all is a proxy's page (a CDN notice, a captive
  portal) standing in for the Horde's answer: retried like a 502, so for idempotent requests only.
* A success whose JSON does not fit the expected model is returned at once as an error with
  ``unexpected_answer`` set: the Horde answered, just not what this client understands.
* A body longer than ``max_response_bytes`` is not read to its end (an answer the Horde would
  never send; reading it could exhaust memory): an error with ``unexpected_answer``, not retried.

After the last attempt the last error is returned as a ``RequestErrorResponse``; a connection
failure becomes one with ``http_status`` 0.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import aiohttp
from pydantic import ValidationError

from bot.horde.apimodels.base import HordeRequest, HordeResponse, WireRequest
from bot.horde.apimodels.errors import RequestErrorResponse, body_excerpt
from bot.horde.consts import (
    BASE_URL_ENV_VAR,
    CLIENT_AGENT_HEADER,
    DEFAULT_BASE_URL,
    DEFAULT_CLIENT_AGENT,
    IDEMPOTENCY_KEY_HEADER,
    RC,
)
from bot.horde.ratelimit import DEFAULT_RATE_LIMITS, HordeRateLimits, RateLimiter

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=HordeResponse)

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_REFUSED_STATUSES = frozenset({429, 503})
_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY_HEADER.lower()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry; backoff is exponential with full jitter.

    ``max_attempts`` bounds the attempts after failures that may not be refusals (5xx, lost
    connections). A rate limiter's 429 is retried until ``deadline`` seconds after the first
    attempt instead; each wait is at least ``min_rate_limit_wait`` plus up to
    ``rate_limit_jitter`` (so clients sharing an IP do not all return at the same instant).
    ``retry_after_scale`` multiplies every server-given wait and the deadline (tests shrink
    them); a single wait longer than ``max_retry_after``, or one that would end past the
    deadline, is not waited for: the error is returned.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    retry_after_scale: float = 1.0
    retry_too_many_prompts: bool = False
    deadline: float = 150.0
    min_rate_limit_wait: float = 1.0
    rate_limit_jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.deadline < 0 or self.min_rate_limit_wait < 0 or self.rate_limit_jitter < 0:
            raise ValueError("deadline, min_rate_limit_wait and rate_limit_jitter must not be negative")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (retry_number - 1))
        return rng.uniform(0.0, ceiling)


DEFAULT_RETRY_POLICY = RetryPolicy()


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_reset(value: str | None, now: float) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch seconds), or ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    return max(0.0, reset - now) if math.isfinite(reset) else None


DEFAULT_MAX_IN_FLIGHT = 64
"""Requests one transport has open at once; more wait here, before aiohttp builds them (a burst of
a thousand submissions would otherwise hold a thousand half-made requests)."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Larger than any answer the Horde sends (a status with twenty base64 images is a few tens of MB)."""
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: str
    content_type: str
    retry_after: str | None
    rate_limit_reset: str | None = None
    too_large: bool = False


# The connection was never established, so the server cannot have seen the request.
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
_NOT_RETRYABLE_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientSSLError,
    aiohttp.ClientConnectorCertificateError,
)
_IN_FLIGHT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
)


class HordeTransport:
    """Sends :class:`HordeRequest` objects and maps the replies to response models.

    ``aiohttp_session`` is used as given and never closed here; without one, the transport
    creates its own on first use and closes it in :meth:`close`. The base URL is the argument,
    else the ``AI_HORDE_URL`` environment variable (read now), else the public AI Horde.
    ``apikey`` is used for requests that take one but were built without setting it.
    Bodies longer than ``max_response_bytes`` are not read (see the module docstring); at most
    ``max_in_flight`` requests are open at once.
    """

    def __init__(
        self,
        aiohttp_session: aiohttp.ClientSession | None = None,
        *,
        base_url: str | None = None,
        client_agent: str = DEFAULT_CLIENT_AGENT,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        apikey: str | None = None,
        rate_limits: HordeRateLimits | None = DEFAULT_RATE_LIMITS,
        rate_limiter: RateLimiter | None = None,
        request_timeout: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._session = aiohttp_session
        self._owns_session = aiohttp_session is None
        self.base_url = resolve_base_url(base_url)
        self.client_agent = client_agent
        self.retry = retry
        self._apikey = apikey
        self._rate_limits = rate_limits
        self.rate_limiter = rate_limiter or RateLimiter()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.max_response_bytes = max_response_bytes
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Looked up at each call: ``X-RateLimit-Reset`` is in epoch seconds.
        self._wall_clock = wall_clock or (lambda: time.time())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, client_agent={self.client_agent!r})"

    @property
    def closed(self) -> bool:
        return self._session is not None and self._session.closed

    async def get_session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created here, inside the running loop, if none was given)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def send(self, request: HordeRequest, expected_response_type: type[R]) -> R | RequestErrorResponse:
        wire = request.to_wire()
        headers = self._headers(request, wire)
        idempotent = wire.method != "POST" or any(h.lower() == _IDEMPOTENCY_KEY for h in headers)
        limits = (
            self._rate_limits.for_request(wire.method, wire.path, type(request).path, headers.get("apikey"))
            if self._rate_limits is not None
            else []
        )
        loop = asyncio.get_running_loop()
        attempts = 0  # failures that may have done something (refusals are not counted)
        refusals = 0
        # Time spent on this request towards the deadline for refusals: the exchanges and the
        # waits after refusals. Not the client's own pacing (the limiter), and not a clock read
        # across a wait: an injected or virtual sleep may move it by anything.
        spent = 0.0
        while True:
            await self.rate_limiter.acquire(limits)
            delay: float | None = None
            sent_at = loop.time()
            try:
                async with self._in_flight:
                    reply = await self._exchange(wire, headers)
            except _NOT_RETRYABLE_CONNECT_ERRORS as exc:
                return _connection_error(wire, exc)
            except _NOT_SENT_ERRORS as exc:
                error = _connection_error(wire, exc)
                retryable = True
            except _IN_FLIGHT_ERRORS as exc:
                error = _connection_error(wire, exc)
                retryable = idempotent
            else:
                if reply.too_large:
                    return _too_large(wire, reply, self.max_response_bytes)
                if reply.status < 400:
                    data = _json_body(reply.body)
                    if data is not _NOT_JSON:
                        return _parse_success(reply, data, expected_response_type)
                    # A proxy's page (a CDN notice, a captive portal) where the Horde's JSON should
                    # be: the Horde may never have seen the request, so it is retried like a 502.
                    error = _unreadable_success(reply)
                    retryable = idempotent
                else:
                    error = RequestErrorResponse.from_http(reply.status, reply.body, reply.content_type)
                    if _is_rate_limited(error):
                        # Refused, so nothing was done: retried until the deadline.
                        refusals += 1
                        wait = self._rate_limit_wait(reply)
                        spent += loop.time() - sent_at
                        if wait is None or spent + wait > self.retry.deadline * self.retry.retry_after_scale:
                            return error
                        spent += wait
                        self.rate_limiter.block(limits, wait)
                        self._log_retry(wire, error, f"refusal {refusals}", wait)
                        await self._sleep(wait)
                        continue
                    retryable = self._status_is_retryable(reply.status, error, idempotent)
                    if retryable and reply.retry_after is not None:
                        delay = self._retry_after_delay(reply.retry_after)
                        retryable = delay is not None
            attempts += 1
            if not retryable or attempts >= self.retry.max_attempts:
                return error
            if delay is None:
                delay = self.retry.backoff(attempts, self._rng)
            self._log_retry(wire, error, f"attempt {attempts}/{self.retry.max_attempts}", delay)
            await self._sleep(delay)

    def _log_retry(self, wire: WireRequest, error: RequestErrorResponse, which: str, delay: float) -> None:
        logger.warning(
            "%s %s failed (%s, %s); retrying in %.2fs",
            wire.method,
            wire.path,
            error.http_status or error.message,
            which,
            delay,
        )

    def _headers(self, request: HordeRequest, wire: WireRequest) -> dict[str, str]:
        headers = dict(wire.headers)
        apikey_header = type(request).header_fields.get("apikey")
        if self._apikey and apikey_header and "apikey" not in request.model_fields_set:
            headers[apikey_header] = self._apikey
        headers[CLIENT_AGENT_HEADER] = self.client_agent
        return headers

    async def _exchange(self, wire: WireRequest, headers: dict[str, str]) -> _Reply:
        session = await self.get_session()
        async with session.request(
            wire.method,
            self.base_url + wire.path.lstrip("/"),
            headers=headers,
            params=wire.query or None,
            json=wire.json,
            timeout=self._timeout,
        ) as response:
            raw = await _read_capped(response, self.max_response_bytes)
            logger.debug("%s %s -> %d", wire.method, wire.path, response.status)
            return _Reply(
                status=response.status,
                body="" if raw is None else _decode(raw, response.charset),
                content_type=response.content_type,
                retry_after=response.headers.get("Retry-After"),
                rate_limit_reset=response.headers.get("X-RateLimit-Reset"),
                too_large=raw is None,
            )

    def _status_is_retryable(self, status: int, error: RequestErrorResponse, idempotent: bool) -> bool:
        if status not in _RETRY_STATUSES:
            return False
        if status == 429 and error.rc == RC.TooManyPrompts:
            return self.retry.retry_too_many_prompts
        return idempotent or status in _REFUSED_STATUSES

    def _retry_after_delay(self, header: str) -> float | None:
        seconds = parse_retry_after(header)
        if seconds is None:
            return self.retry.backoff(1, self._rng)
        delay = seconds * self.retry.retry_after_scale
        return delay if delay <= self.retry.max_retry_after else None

    def _rate_limit_wait(self, reply: _Reply) -> float | None:
        """How long to wait after the limiter's 429: until its window resets (see the module
        docstring); ``None`` when that is longer than ``max_retry_after``."""
        policy = self.retry
        waits = [
            seconds
            for seconds in (
                parse_retry_after(reply.retry_after),
                parse_reset(reply.rate_limit_reset, self._wall_clock()),
            )
            if seconds is not None
        ]
        seconds = max([policy.min_rate_limit_wait, *waits])
        if seconds > policy.max_retry_after:
            return None
        return (seconds + self._rng.uniform(0.0, policy.rate_limit_jitter)) * policy.retry_after_scale


def _is_rate_limited(error: RequestErrorResponse) -> bool:
    """The limiter's 429 (no rc), not the user's concurrency limit (``TooManyPrompts``)."""
    return error.http_status == 429 and error.rc != RC.TooManyPrompts


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The body, or ``None`` once it is known to exceed ``max_bytes`` (the rest is not read)."""
    if response.content_length is not None and response.content_length > max_bytes:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def _connection_error(wire: WireRequest, exc: BaseException) -> RequestErrorResponse:
    reason = str(exc) or type(exc).__name__
    return RequestErrorResponse(
        message=f"Could not complete {wire.method} {wire.path} with the AI Horde: "
        f"{type(exc).__name__}: {reason}",
        rc=RC.RC_MISSING,
        http_status=0,
        errors=None,
    )


_NOT_JSON: Final = object()


def _json_body(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _unreadable_success(reply: _Reply) -> RequestErrorResponse:
    # Only the page's text: no markup reaches a log or a user.
    excerpt = body_excerpt(reply.body, reply.content_type) or "(empty)"
    return RequestErrorResponse(
        message=f"The AI Horde answered {reply.status} with a body that is not JSON "
        f"({reply.content_type or 'no content type'}): {excerpt}",
        rc=RC.RC_MISSING,
        http_status=reply.status,
        errors=None,
    )


def _parse_success(reply: _Reply, data: Any, expected: type[R]) -> R | RequestErrorResponse:
    try:
        return expected.model_validate(data)
    except ValidationError as exc:
        # The fields of the Horde's *answer*, not of the request: ``errors`` stays for the Horde's
        # verdict on what was sent, so nobody reads this as the member's settings being refused.
        details = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(body)'}: {err['msg']}" for err in exc.errors()
        )
        return RequestErrorResponse(
            message=f"The AI Horde's {reply.status} response does not match {expected.__name__}: {details}",
            rc=RC.RC_MISSING,
            http_status=reply.status,
            errors=None,
            unexpected_answer=True,
        )


def _too_large(wire: WireRequest, reply: _Reply, max_bytes: int) -> RequestErrorResponse:
    return RequestErrorResponse(
        message=f"The AI Horde's {reply.status} answer to {wire.method} {wire.path} is larger than "
        f"{max_bytes} bytes; it was not read",
        rc=RC.RC_MISSING,
        http_status=reply.status,
        errors=None,
        unexpected_answer=True,
    )
