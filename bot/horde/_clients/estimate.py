"""How fast the Horde's queue moves, learnt from the queue positions a session sees.

The real Horde's ``queue_position`` counts the requests ahead of one's own, plus one, in the
order workers will take them (refreshed every second); it falls as workers pop the requests
ahead. Its ``wait_time`` while queued is an estimate from the workers' average speed and thread
count, which is rough (and only counts what is still queued), so the client measures instead:
between two checks of one request, ``(position before − position now) / seconds`` is how many
requests a second the workers take from that queue. A request found with a worker (position 0)
after being seen at position ``q`` was taken at some moment in between: ``q`` places in at most
that time, a lower bound on the rate, which counts only when it is above the estimate. Every
request the session follows adds such samples, so a job submitted after many others is aimed
with their experience from its first check on.

Samples are kept per queue key (the kind and the models asked for: other models are served by
other workers) as decayed sums, so the estimate follows a queue that speeds up or slows down
with a half-life of ``half_life_s`` seconds, in memory that does not grow with the jobs.

It also learns when to look at a new request first: a check before the workers reach it only
tells its position, one after it reads the worker's countdown, which is what aiming at the end
needs. So the first poll's delay is steered like a quantile: a little later after each first
poll that found the request still waiting, sooner after each that found it with a worker (or
done), settling where ``first_poll_target`` of them still find it waiting.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

MAX_KEYS = 256


@dataclass(slots=True)
class _Drain:
    positions: float = 0.0
    seconds: float = 0.0
    at: float = 0.0


class QueueEstimate:
    """The drain rate of the Horde's queues and the first poll's delay, shared by every generation
    of a session."""

    def __init__(
        self,
        *,
        half_life_s: float = 120.0,
        min_seconds: float = 2.0,
        first_poll_target: float = 0.6,
        first_poll_step: float = 0.25,
    ) -> None:
        if half_life_s <= 0 or min_seconds < 0:
            raise ValueError("half_life_s must be positive and min_seconds not negative")
        if not 0 < first_poll_target < 1 or first_poll_step <= 0:
            raise ValueError("first_poll_target must be within (0, 1) and first_poll_step positive")
        self.half_life_s = half_life_s
        self.min_seconds = min_seconds
        self.first_poll_target = first_poll_target
        self.first_poll_step = first_poll_step
        self._drains: OrderedDict[Hashable, _Drain] = OrderedDict()
        self._first: OrderedDict[Hashable, float] = OrderedDict()

    def first_poll_delay(self, key: Hashable, *, least: float, most: float) -> float:
        """When to look first at a request of queue ``key`` just submitted: ``least`` until the
        session has seen one, then steered by :meth:`first_poll_was` within ``[least, most]``."""
        return min(max(self._first.get(key, least), least), most)

    def first_poll_was(self, key: Hashable, *, early: bool, least: float, most: float) -> None:
        """A request's first poll found it still waiting (``early``) or not: the next first poll
        of queue ``key`` comes a little later or sooner (within ``[least, most]``)."""
        target, step = self.first_poll_target, self.first_poll_step
        factor = 1 + step * (1 - target) if early else 1 / (1 + step * target)
        self._first[key] = min(max(self._first.get(key, least) * factor, least), most)
        self._first.move_to_end(key)
        while len(self._first) > MAX_KEYS:
            self._first.popitem(last=False)

    def observe(self, key: Hashable, before: tuple[int, float], after: tuple[int, float]) -> None:
        """A request of queue ``key`` was at position ``before[0]`` at time ``before[1]`` and at
        ``after[0]`` at ``after[1]`` (positions counted from 1; 0 after: a worker has taken it by
        then, so at least ``before[0]`` places went in that time). A position that rose (a request
        with more priority went ahead) counts as negative progress."""
        (q0, t0), (q1, t1) = before, after
        if t1 <= t0 or q0 <= 0 or q1 < 0:
            return
        if q1 == 0:
            # Taken some time before t1: only a lower bound on the rate, so it counts only when it
            # shows the estimate too low (counting it always would drag the estimate down, and
            # with it every aim: later pops, later polls, ever lower samples).
            known = self.rate(key, t1)
            if known is not None and q0 / (t1 - t0) <= known:
                return
        drain = self._decayed(key, t1)
        drain.positions += q0 - q1
        drain.seconds += t1 - t0

    def rate(self, key: Hashable, now: float) -> float | None:
        """Requests a second the workers take from queue ``key``; ``None`` until at least
        ``min_seconds`` of observations (decayed) say so, ``0.0`` if the queue stands still."""
        drain = self._drains.get(key)
        if drain is None:
            return None
        drain = self._decayed(key, now)
        if drain.seconds < self.min_seconds:
            return None
        return max(0.0, drain.positions / drain.seconds)

    def _decayed(self, key: Hashable, now: float) -> _Drain:
        drain = self._drains.get(key)
        if drain is None:
            drain = self._drains[key] = _Drain(at=now)
            while len(self._drains) > MAX_KEYS:
                self._drains.popitem(last=False)
        elif now > drain.at:
            factor = math.exp(-math.log(2) * (now - drain.at) / self.half_life_s)
            drain.positions *= factor
            drain.seconds *= factor
            drain.at = now
        self._drains.move_to_end(key)
        return drain
