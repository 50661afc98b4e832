"""Fixed-window rate limiting as the server's flask-limiter 3.12 (Redis storage) does it.

- A window starts at its first hit and lasts its length (a Redis key with a TTL).
- The rules of an endpoint are tried shortest unit first (second before minute, in the order
  they are declared within a unit); each is counted, and the first one over its amount refuses
  the request, so the rules after it are not counted (``fail_on_first_breach``).
- Every answer of a limited endpoint carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``
  (epoch seconds) and ``Retry-After`` (whole seconds), for the rule that refused it or, when
  none did, the first one tried.  Both come from the Redis TTL, rounded to the nearest second, so
  ``Retry-After`` is ``0`` in the last half second of a window: ``Retry-After: 0`` on a 429 does
  not mean the window is over.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from horde_simulator.config import Limit, RateLimits

# (rule name in RateLimits, what the bucket is keyed on), in the server's declaration order.
#  "path":  client IP + method + full path, so every request id gets its own bucket
#  "key":   hashed API key + method + path
#  "route": client IP + endpoint (flask-limiter's default per-route limit)
_ASYNC = (("generate_async_ip", "path"), ("generate_async_ip_burst", "path"), ("@key", "key"))
_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "generate_async": _ASYNC,
    "text_async": _ASYNC,
    "generate_check": (("check", "path"),),
    "generate_status": (("image_status", "path"),),
    "generate_delete": (("image_status", "path"),),
    "text_status": (("text_status", "path"),),
    "text_delete": (("text_status", "path"),),
    "interrogate_status": (("interrogate_status", "path"),),
    "interrogate_delete": (("interrogate_status", "path"),),
    "kudos_transfer": (("kudos_transfer", "key"), ("kudos_transfer_hourly", "key")),
    "user_details": (("user_details", "path"),),
    "status_modes": (("status_modes", "route"),),
    "heartbeat": (),
    "r2_image": (),
    "not_found": (),
}
_WHITELISTED = {
    "generate_async_ip": "generate_async_ip_whitelisted",
    "generate_async_ip_burst": "generate_async_ip_burst_whitelisted",
}


@dataclass(frozen=True)
class Verdict:
    """``reset_in``: seconds (simulator clock) until the window of ``limit`` ends."""

    allowed: bool
    limit: Limit
    remaining: int
    reset_in: float

    def headers(self, wall_clock: Callable[[], float] = time.time) -> dict[str, str]:
        """The four headers flask-limiter adds to every answer of a limited endpoint."""
        ttl = redis_ttl(self.reset_in)
        now = wall_clock()
        reset_at = int(now + ttl + 1)
        return {
            "X-RateLimit-Limit": str(self.limit.amount),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(reset_at),
            "Retry-After": str(int(reset_at - now)),
        }


def redis_ttl(seconds: float) -> int:
    """Redis's ``TTL``: the milliseconds left, rounded to the nearest second."""
    return max(0, math.floor((max(seconds, 0.0) * 1000 + 500) / 1000))


@dataclass
class _Window:
    start: float
    count: int


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._whitelisted: dict[str, float] = {}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._whitelisted.clear()

    def whitelist(self, ip: str, seconds: float) -> None:
        """A trusted user generated from ``ip``: lift its limits for ``seconds``."""
        with self._lock:
            self._whitelisted[ip] = self._clock() + seconds

    def is_whitelisted(self, ip: str) -> bool:
        with self._lock:
            return self._whitelisted.get(ip, -math.inf) > self._clock()

    def check(
        self,
        limits: RateLimits,
        endpoint: str,
        *,
        ip: str,
        method: str,
        path: str,
        api_key: str | None,
        anonymous: bool,
    ) -> Verdict | None:
        """Count this call; the verdict of the rule that refused it or of the first one tried,
        or ``None`` when no rule applies."""
        if not limits.enabled:
            return None
        whitelisted = self.is_whitelisted(ip)
        hashed_key = hashlib.sha256((api_key or "0000000000").encode()).hexdigest()[:16]
        rules: list[tuple[Limit, str]] = []
        for name, keyed_on in _RULES.get(endpoint, (("default", "route"),)):
            if name == "@key":
                name = "generate_async_key_anon" if anonymous or whitelisted else "generate_async_key"
            elif whitelisted:
                name = _WHITELISTED.get(name, name)
            limit = limits.limit(name)
            if limit is None:
                continue
            key = {
                "path": f"{ip}@{method}@{path}",
                "key": f"{hashed_key}@{method}@{path}",
                "route": f"{ip}@{endpoint}",
            }
            rules.append((limit, key[keyed_on]))
        # Shortest unit first; sorted() keeps the declaration order within a unit.
        rules.sort(key=lambda rule: rule[0].unit_seconds)
        return self._hit(rules) if rules else None

    def _hit(self, rules: Sequence[tuple[Limit, str]]) -> Verdict:
        now = self._clock()
        with self._lock:
            first: Verdict | None = None
            for limit, key in rules:
                window = self._window(limit, key, now)
                window.count += 1
                reset_in = window.start + limit.seconds - now
                verdict = Verdict(
                    window.count <= limit.amount, limit, max(0, limit.amount - window.count), reset_in
                )
                if not verdict.allowed:
                    return verdict
                first = first or verdict
            assert first is not None
            return first

    def _window(self, limit: Limit, key: str, now: float) -> _Window:
        window = self._windows.get((limit.text, key))
        if window is None or now >= window.start + limit.seconds:
            window = _Window(now, 0)
            self._windows[(limit.text, key)] = window
        return window
