from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.horde.consts import ANON_API_KEY, RateLimit
from bot.horde.ratelimit import HordeRateLimits, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)


def max_in_any_window(starts: list[float], period: float) -> int:
    starts = sorted(starts)
    best = 0
    for i, first in enumerate(starts):
        best = max(best, sum(1 for s in starts[i:] if s < first + period - 1e-9))
    return best


@settings(max_examples=200, deadline=None)
@given(
    calls=st.integers(min_value=1, max_value=5),
    period=st.floats(min_value=0.1, max_value=5.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=40),
)
def test_reservations_never_exceed_the_budget(calls: int, period: float, gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    budget = RateLimit(calls, period)
    starts = []
    for gap in gaps:
        clock.now += gap
        starts.append(clock.now + limiter.reserve([("b", "k", budget)]))
    assert max_in_any_window(starts, period) <= calls
    # Waiters are served in arrival order and nobody waits longer than necessary.
    assert starts == sorted(starts)
    assert all(s >= clock_start for s, clock_start in zip(starts, _arrivals(gaps), strict=True))


def _arrivals(gaps: list[float]) -> list[float]:
    out, now = [], 1000.0
    for gap in gaps:
        now += gap
        out.append(now)
    return out


def test_burst_is_spread_over_windows() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    delays = [limiter.reserve([("check", "id-1", RateLimit(2, 1.0))]) for _ in range(5)]
    assert delays == [0.0, 0.0, 1.0, 1.0, 2.0]


def test_keys_and_buckets_are_independent() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    budget = RateLimit(1, 10.0)
    assert limiter.reserve([("check", "a", budget)]) == 0.0
    assert limiter.reserve([("check", "b", budget)]) == 0.0
    assert limiter.reserve([("status", "a", budget)]) == 0.0
    assert limiter.reserve([("check", "a", budget)]) == 10.0


async def test_acquire_sleeps_only_when_over_budget() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await limiter.acquire([("b", "k", RateLimit(2, 60.0))])
    assert clock.sleeps == [60.0]


def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    for i in range(1000):
        limiter.reserve([("check", f"id-{i}", RateLimit(10, 1.0))])
    assert len(limiter) == 1000
    clock.now += 1.5
    limiter.reserve([("check", "fresh", RateLimit(10, 1.0))])
    assert len(limiter) == 1


def test_a_busy_key_is_kept() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.reserve([("status", "id", RateLimit(1, 60.0))])  # reserves up to now+120
    clock.now += 90
    limiter.reserve([("other", "x", RateLimit(1, 1.0))])
    assert limiter.reserve([("status", "id", RateLimit(1, 60.0))]) == pytest.approx(120 - 90 + 60)


async def test_concurrent_tasks_stay_within_budget_in_real_time() -> None:
    limiter = RateLimiter(margin=0.0)
    budget = RateLimit(3, 0.2)
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire([("b", "k", budget)])
        starts.append(time.monotonic())

    began = time.monotonic()
    await asyncio.gather(*(call() for _ in range(9)))
    assert max_in_any_window(starts, 0.2 - 0.01) <= 3
    assert time.monotonic() - began == pytest.approx(0.4, abs=0.15)


def test_windows_of_one_call_are_reserved_together() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.0, clock=clock, sleep=clock.sleep)
    per_key = ("async", "key", RateLimit(2, 1.0))
    per_ip = ("async-ip", "", RateLimit(1, 10.0))
    starts = [limiter.reserve([per_key, per_ip]) for _ in range(3)]
    assert starts == [0.0, 10.0, 20.0]
    # The per-key window saw its calls at their real start times, so it is free again at 20 s.
    clock.now += 20.0
    assert limiter.reserve([per_key]) == 0.0
    assert limiter.reserve([per_key]) == 1.0


def test_margin_widens_every_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(margin=0.25, clock=clock, sleep=clock.sleep)
    delays = [limiter.reserve([("b", "k", RateLimit(2, 1.0))]) for _ in range(3)]
    assert delays == [0.0, 0.0, 1.25]


def test_no_limits_means_no_wait() -> None:
    assert RateLimiter().reserve([]) == 0.0


class TestHordeLimits:
    limits = HordeRateLimits()

    def test_check_is_per_request_id(self) -> None:
        a = self.limits.for_request("GET", "v2/generate/check/abc", "v2/generate/check/{id}", None)
        b = self.limits.for_request("GET", "v2/generate/check/def", "v2/generate/check/{id}", None)
        assert a[0][0] == b[0][0] == "check"
        assert a[0][1] != b[0][1]
        assert a[0][2] == RateLimit(10, 1.0)
        assert len(a) == len(b) == 1

    def test_image_status_is_per_id_and_method(self) -> None:
        get = self.limits.for_request("GET", "v2/generate/status/abc", "v2/generate/status/{id}", None)
        delete = self.limits.for_request("DELETE", "v2/generate/status/abc", "v2/generate/status/{id}", None)
        assert get[0][2] == RateLimit(10, 60.0)
        assert get[0][1] != delete[0][1]

    def test_text_and_interrogate_status(self) -> None:
        limits = self.limits
        text = limits.for_request("GET", "v2/generate/text/status/x", "v2/generate/text/status/{id}", "k")
        alchemy = limits.for_request("GET", "v2/interrogate/status/x", "v2/interrogate/status/{id}", "k")
        assert text[0][2] == RateLimit(60, 60.0)
        assert alchemy[0][2] == RateLimit(10, 1.0)

    def test_async_is_per_api_key_without_storing_the_key(self) -> None:
        key = "abcdefghijklmnopqrstuv"
        mine = self.limits.for_request("POST", "v2/generate/async", "v2/generate/async", key)
        text = self.limits.for_request("POST", "v2/generate/text/async", "v2/generate/text/async", key)
        other = self.limits.for_request("POST", "v2/generate/async", "v2/generate/async", "other-key-123")
        anon = self.limits.for_request("POST", "v2/generate/async", "v2/generate/async", ANON_API_KEY)
        assert mine[0][2] == RateLimit(2, 1.0)
        assert anon[0][2] == RateLimit(60, 1.0)
        assert mine[0][:2] == text[0][:2]
        assert mine[0][1] != other[0][1]
        assert key not in repr(mine)
        # The per-IP limits are shared by every key.
        assert [limit for _, _, limit in mine[1:]] == [RateLimit(2, 1.0), RateLimit(90, 60.0)]
        assert mine[1:] == other[1:] == anon[1:]

    def test_kudos_transfer_and_defaults(self) -> None:
        kudos = self.limits.for_request("POST", "v2/kudos/transfer", "v2/kudos/transfer", "k")
        assert [limit for _, _, limit in kudos] == [RateLimit(1, 1.0), RateLimit(90, 3600.0)]
        w1 = self.limits.for_request("GET", "v2/workers/1", "v2/workers/{id}", None)
        w2 = self.limits.for_request("GET", "v2/workers/2", "v2/workers/{id}", None)
        assert w1 == w2
        assert w1[0][2] == RateLimit(90, 60.0)
        assert self.limits.for_request("GET", "v2/status/heartbeat", "v2/status/heartbeat", None) == []
