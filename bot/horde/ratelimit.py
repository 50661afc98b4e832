"""Client-side rate limiting, so the bot stays under the AI Horde's own limits.

The Horde answers 429 once a limit is crossed (and, for some endpoints, puts the caller's IP
in timeout), so the client waits *before* sending instead of finding out afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.horde.consts import (
    ALCHEMY_STATUS_RATE_LIMIT_PER_ID,
    ANON_API_KEY,
    ASYNC_RATE_LIMIT_PER_ANON_KEY,
    ASYNC_RATE_LIMIT_PER_KEY,
    ASYNC_RATE_LIMITS_PER_IP,
    CHECK_RATE_LIMIT_PER_ID,
    DEFAULT_RATE_LIMIT,
    IMAGE_STATUS_RATE_LIMIT_PER_ID,
    KUDOS_TRANSFER_RATE_LIMITS,
    RATE_LIMIT_EXEMPT_PATHS,
    TEXT_STATUS_RATE_LIMIT_PER_ID,
    USER_DETAILS_RATE_LIMIT_PER_ID,
    RateLimit,
)


@dataclass(slots=True)
class SlidingWindow:
    """At most ``limit.calls`` starts in any ``limit.period_s`` seconds: a sliding window over the
    latest starts, which may lie in the future (a reserved turn), so each reservation queues
    behind the ones before it. The Horde's limits here and Discord's per-channel edit budget
    (``bot.services.delivery.budget``) both count with it."""

    limit: RateLimit
    # Start times of the latest ``limit.calls`` calls, oldest first; some may lie in the future.
    starts: deque[float] = field(default_factory=deque)
    # The server refused a call in this window: nothing starts before then (see RateLimiter.block).
    blocked_until: float = float("-inf")

    def earliest(self, now: float, margin: float = 0.0) -> float:
        start = max(now, self.blocked_until, self.starts[-1] if self.starts else now)
        if len(self.starts) >= self.limit.calls:
            start = max(start, self.starts[0] + self.limit.period_s + margin)
        return start

    def record(self, start: float) -> None:
        self.starts.append(start)
        if len(self.starts) > self.limit.calls:
            self.starts.popleft()

    def used(self, now: float) -> int:
        """Starts counted against a call made now (those of the last period, reserved ones too)."""
        return sum(1 for at in self.starts if at > now - self.limit.period_s)

    def idle(self, now: float) -> bool:
        """Whether the window constrains nothing any more (forgetting it is free)."""
        if self.blocked_until > now:
            return False
        return not self.starts or self.starts[-1] + self.limit.period_s <= now


Limit = tuple[str, str, RateLimit]
"""``(bucket, key, limit)``: one window of the limiter."""


class RateLimiter:
    """A sliding-window limiter keyed by ``(bucket, key)`` that waits rather than fails.

    A call reserves the earliest start time that keeps every window it belongs to at no more
    than ``calls`` starts per ``period_s``, then sleeps until then. All windows of one call are
    reserved together at the same instant (reserving them one after another would let the
    first window count a call that only starts after waiting for the second). Reservations are
    handed out in call order, so waiters are served first come, first served; a cancelled
    waiter keeps its reservation, which wastes a slot but never overshoots a limit.

    Windows whose last call is older than their period carry no information and are forgotten,
    so memory stays proportional to the keys used recently.

    ``margin`` seconds are added to every period: calls spaced exactly one period apart can
    reach the server less than a period apart when the network delays the first one.
    """

    def __init__(
        self,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.margin = margin
        # Looked up at each call (not bound here) so a patched clock, such as SimCord's virtual
        # one, is seen: the windows must count the same seconds the sleeps last.
        self._clock = clock or (lambda: time.monotonic())
        self._sleep = sleep
        self._windows: OrderedDict[tuple[str, str], SlidingWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def reserve(self, limits: Sequence[Limit]) -> float:
        """Reserve one call in every window and return the seconds to wait before making it."""
        now = self._clock()
        self._forget_idle(now)
        windows = [self._window(bucket, key, limit) for bucket, key, limit in limits]
        start = max((window.earliest(now, self.margin) for window in windows), default=now)
        for window in windows:
            window.record(start)
        return start - now

    async def acquire(self, limits: Sequence[Limit]) -> None:
        delay = self.reserve(limits)
        if delay > 0:
            await self._sleep(delay)

    def block(self, limits: Sequence[Limit], seconds: float) -> None:
        """The server refused a call in these windows (a 429): none of them starts another call
        for ``seconds``. Its count is shared with callers this limiter does not see (another
        process on the same IP, another client), so the client's own count cannot be trusted
        until the server's window has reset."""
        until = self._clock() + max(0.0, seconds)
        for bucket, key, limit in limits:
            window = self._window(bucket, key, limit)
            window.blocked_until = max(window.blocked_until, until)

    def _window(self, bucket: str, key: str, limit: RateLimit) -> SlidingWindow:
        window = self._windows.get((bucket, key))
        if window is None or window.limit != limit:
            window = SlidingWindow(limit)
            self._windows[(bucket, key)] = window
        self._windows.move_to_end((bucket, key))
        return window

    def _forget_idle(self, now: float) -> None:
        # Least recently used first; stopping at the first busy window keeps this O(1) amortised.
        while self._windows:
            oldest_key = next(iter(self._windows))
            if not self._windows[oldest_key].idle(now):
                break
            del self._windows[oldest_key]


@dataclass(frozen=True, slots=True)
class HordeRateLimits:
    """The AI Horde's limits (horde-api.md §2), as the windows a request must fit in.

    Per-id limits are keyed by method and path (the server keys them by IP, method and path);
    per-key limits by a digest of the API key, so the key itself is never stored. A bot on a
    whitelisted IP may pass looser ``generate_async_per_ip`` limits.
    """

    check: RateLimit = CHECK_RATE_LIMIT_PER_ID
    image_status: RateLimit = IMAGE_STATUS_RATE_LIMIT_PER_ID
    text_status: RateLimit = TEXT_STATUS_RATE_LIMIT_PER_ID
    interrogate_status: RateLimit = ALCHEMY_STATUS_RATE_LIMIT_PER_ID
    generate_async_per_key: RateLimit = ASYNC_RATE_LIMIT_PER_KEY
    generate_async_per_anon_key: RateLimit = ASYNC_RATE_LIMIT_PER_ANON_KEY
    generate_async_per_ip: tuple[RateLimit, ...] = ASYNC_RATE_LIMITS_PER_IP
    kudos_transfer_per_key: tuple[RateLimit, ...] = KUDOS_TRANSFER_RATE_LIMITS
    user_details: RateLimit = USER_DETAILS_RATE_LIMIT_PER_ID
    default: RateLimit = DEFAULT_RATE_LIMIT
    exempt_paths: frozenset[str] = RATE_LIMIT_EXEMPT_PATHS

    def for_request(self, method: str, path: str, route: str, apikey: str | None) -> list[Limit]:
        """Every window a request must fit in; ``route`` is the path template."""
        path = path.strip("/")
        per_path = f"{method} {path}"
        if path in self.exempt_paths:
            return []
        if method == "GET" and _match(path, "v2/generate/check/*"):
            return [("check", per_path, self.check)]
        if _match(path, "v2/generate/status/*"):
            return [("image_status", per_path, self.image_status)]
        if _match(path, "v2/generate/text/status/*"):
            return [("text_status", per_path, self.text_status)]
        if _match(path, "v2/interrogate/status/*"):
            return [("interrogate_status", per_path, self.interrogate_status)]
        if method == "POST" and path in ("v2/generate/async", "v2/generate/text/async"):
            per_key = (
                self.generate_async_per_anon_key
                if apikey in (None, ANON_API_KEY)
                else self.generate_async_per_key
            )
            return [
                ("generate_async_key", _digest(apikey or ANON_API_KEY), per_key),
                *_numbered("generate_async_ip", "", self.generate_async_per_ip),
            ]
        if method == "POST" and path == "v2/kudos/transfer":
            return _numbered("kudos_transfer", _digest(apikey or ""), self.kudos_transfer_per_key)
        if method == "GET" and _match(path, "v2/users/*"):
            return [("user_details", per_path, self.user_details)]
        return [("default", f"{method} {route.strip('/')}", self.default)]


def _numbered(bucket: str, key: str, limits: tuple[RateLimit, ...]) -> list[Limit]:
    return [(f"{bucket}#{i}", key, limit) for i, limit in enumerate(limits)]


def _match(path: str, pattern: str) -> bool:
    """``*`` stands for exactly one non-empty path segment."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        w == p or (w == "*" and p != "") for w, p in zip(wanted, parts, strict=True)
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


DEFAULT_RATE_LIMITS = HordeRateLimits()
