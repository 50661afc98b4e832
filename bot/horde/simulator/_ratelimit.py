"""Fixed-window rate limiting in the manner of flask-limiter (horde-api.md §2)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.horde.simulator.config import Limit, RateLimits

# (rule name in RateLimits, what the bucket is keyed on)
#  "path":  client IP + method + full path, so every request id gets its own bucket
#  "key":   hashed API key + method + path
#  "route": client IP + endpoint (flask-limiter's default per-route limit)
_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "generate_async": (("generate_async_ip", "path"), ("generate_async_ip_burst", "path"), ("@key", "key")),
    "text_async": (("generate_async_ip", "path"), ("generate_async_ip_burst", "path"), ("@key", "key")),
    "generate_check": (("check", "path"),),
    "generate_status": (("image_status", "path"),),
    "generate_delete": (("image_status", "path"),),
    "text_status": (("text_status", "path"),),
    "text_delete": (("text_status", "path"),),
    "interrogate_status": (("interrogate_status", "path"),),
    "interrogate_delete": (("interrogate_status", "path"),),
    "kudos_transfer": (("kudos_transfer", "key"), ("kudos_transfer_hourly", "key")),
    "user_details": (("user_details", "path"),),
    "heartbeat": (),
    "r2_image": (),
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: Limit
    remaining: int
    reset_in: float


@dataclass
class _Window:
    start: float
    count: int


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

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
        """Count this call; the verdict of the tightest rule, or ``None`` when none applies."""
        if not limits.enabled:
            return None
        hashed_key = hashlib.sha256((api_key or "0000000000").encode()).hexdigest()[:16]
        rules: list[tuple[Limit, str]] = []
        for name, keyed_on in _RULES.get(endpoint, (("default", "route"),)):
            if name == "@key":
                name = "generate_async_key_anon" if anonymous else "generate_async_key"
            limit = limits.limit(name)
            if limit is None:
                continue
            key = {
                "path": f"{ip}@{method}@{path}",
                "key": f"{hashed_key}@{method}@{path}",
                "route": f"{ip}@{endpoint}",
            }
            rules.append((limit, key[keyed_on]))
        return self._hit(rules) if rules else None

    def _hit(self, rules: Sequence[tuple[Limit, str]]) -> Verdict:
        now = self._clock()
        with self._lock:
            windows = [self._window(limit, key, now) for limit, key in rules]
            for (limit, _), window in zip(rules, windows, strict=True):
                if window.count >= limit.amount:
                    return Verdict(False, limit, 0, window.start + limit.seconds - now)
            verdicts = []
            for (limit, _), window in zip(rules, windows, strict=True):
                window.count += 1
                verdicts.append(
                    Verdict(True, limit, limit.amount - window.count, window.start + limit.seconds - now)
                )
            return min(verdicts, key=lambda v: v.remaining)

    def _window(self, limit: Limit, key: str, now: float) -> _Window:
        window = self._windows.get((limit.text, key))
        if window is None or now >= window.start + limit.seconds:
            window = _Window(now, 0)
            self._windows[(limit.text, key)] = window
        return window
