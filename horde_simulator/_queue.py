"""The queue as the server reports it: ``queue_position`` and ``wait_time``.

What AI-Horde 5.1.5 does (``get_wp_queue_stats``, ``WaitingPrompt.get_status``):

- The queue holds the requests with jobs still to hand out, highest priority first, then oldest
  first.  A request's priority is its user's kudos when it was made (the anonymous account's are
  deeply negative), raised by 50 every 10 s it waits: here, 5 a second.
- A thread snapshots it once a second: each request's index and the jobs queued up to and
  including it.  ``queue_position`` is ``index + 1`` from the latest snapshot, 0 for a request
  with nothing left to hand out, and 0 for one submitted since the snapshot (unless the snapshot
  was empty; then it is computed on the spot).
- ``wait_time`` = the queued work up to and including the request, divided by the speed of
  ``min(threads, jobs queued up to it)`` threads, plus the longest expected time left of its jobs
  on workers (each job's expected duration minus the time since it started, at least 0);
  rounded.  So while a request waits behind fewer jobs than there are threads, ``wait_time`` is
  one job's duration, not the queue's; and it counts down while its jobs run.

The simulator's work unit is a job of ``speed`` seconds (its workers take the same time whatever
the size), where the server weighs jobs by their pixel-steps or tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

NOT_QUEUED = (-1, 0)
Stamp = tuple[float, float]
AGING_PER_SECOND = 5.0


class Queued(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def waiting(self) -> int: ...
    @property
    def priority(self) -> float: ...
    @property
    def created(self) -> float: ...
    @property
    def seq(self) -> int: ...


def queue_order(requests: Iterable[Queued]) -> list[Queued]:
    """Waiting requests, highest priority first (aged: the same for all, so ``- rate × created``),
    then in submission order."""
    return sorted(
        (r for r in requests if r.waiting > 0),
        key=lambda r: (-(r.priority - AGING_PER_SECOND * r.created), r.seq),
    )


def positions(ordered: Sequence[Queued]) -> dict[str, tuple[int, int]]:
    """Each request's ``(index, jobs queued up to and including it)``."""
    ahead = itertools.accumulate(r.waiting for r in ordered)
    return {r.id: (index, jobs) for index, (r, jobs) in enumerate(zip(ordered, ahead, strict=True))}


class QueueBoard:
    """The server's once-a-second snapshot of each kind's queue."""

    def __init__(self) -> None:
        self._taken: dict[str, Stamp] = {}
        self._snapshots: dict[str, dict[str, tuple[int, int]]] = {}

    def stats(
        self,
        kind: str,
        request_id: str,
        *,
        stamp: Stamp,
        age: Callable[[Stamp], float],
        refresh: float,
        live: Callable[[], Sequence[Queued]],
    ) -> tuple[int, int]:
        """``(index, jobs queued up to and including it)``, or ``(-1, 0)`` when not queued.
        ``stamp`` is now and ``age(then)`` the time since a stamp (see ``State.age``)."""
        if refresh <= 0:
            return positions(live()).get(request_id, NOT_QUEUED)
        taken = self._taken.get(kind)
        if taken is None or age(taken) >= refresh:
            self._snapshots[kind] = positions(live())
            self._taken[kind] = stamp
        snapshot = self._snapshots[kind]
        if request_id in snapshot:
            return snapshot[request_id]
        if snapshot:
            return NOT_QUEUED
        return positions(live()).get(request_id, NOT_QUEUED)

    def forget(self) -> None:
        self._taken.clear()
        self._snapshots.clear()


def wait_time(jobs_ahead: int, threads: int, per_job: float, running_left: Iterable[float]) -> int:
    """The server's estimate: the queue part plus the longest time left of the running jobs."""
    threads = min(threads, jobs_ahead)
    queued = jobs_ahead * per_job / threads if threads > 0 else jobs_ahead * per_job
    return round(queued + max((max(left, 0.0) for left in running_left), default=0.0))
