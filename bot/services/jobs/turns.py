"""This process's side of the bot's one fair queue for sending generations to the AI Horde.

The queue and the budget live in the database (``bot/storage/submit_queue.py``), shared by every
process of the bot; here one task per process claims turns for the jobs this process holds and
tells each waiting job its place in the bot's queue. A waiting job has no task of its own (a
thousand waiting jobs cost a dict entry each, not a task and a timer): its ``start`` is called
when its turn comes, or at once when it is withdrawn (cancelled, shut down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bot.clock import monotonic
from bot.horde import Wakeup
from bot.storage import SubmitQueue, Window

log = logging.getLogger(__name__)

# How often a process looks again when the next turn is another process's (or the database failed).
DEFAULT_POLL_S: Final = 0.25
# Places are shown again at most this often, and only once a job's place has at least halved since
# it was last shown (a job new to the queue is shown its place at once): each grant moves every
# waiting job's place, and 1,000 waiting jobs shown every 15 s made 10.5 edits per message and
# thousands of Discord 429s (bench/bot_path.py 1000x50), against ~3.7 without places.
DEFAULT_PLACE_INTERVAL_S: Final = 15.0

ShowPlace = Callable[[int], Coroutine[Any, Any, None]]
"""Shows a waiting job its place in the bot's queue (1 = next)."""


@dataclass(slots=True)
class _Waiter:
    start: Callable[[], None]
    show_place: ShowPlace
    shown: int | None = None


class SubmitTurns:
    """Hands out turns to send a generation: :meth:`enqueue` a job with the ``start`` to call on
    its turn in the bot's fair queue, once the Horde's ``generate/async`` budget has room."""

    def __init__(
        self,
        queue: SubmitQueue,
        windows: Sequence[Window],
        *,
        clock: Callable[[], float] = monotonic,
        poll_s: float = DEFAULT_POLL_S,
        place_interval_s: float = DEFAULT_PLACE_INTERVAL_S,
    ) -> None:
        self._queue = queue
        self._windows = tuple(windows)
        self._clock = clock
        self._poll_s = poll_s
        self._place_interval_s = place_interval_s
        # One per process: the tickets this process can send.
        self.owner: Final = uuid.uuid4().hex
        self._waiting: dict[str, _Waiter] = {}
        self._withdrawn: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._showing: set[asyncio.Task[None]] = set()
        self._places_shown_at: float | None = None
        self._arrived = Wakeup()
        self._used = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enqueue(
        self,
        job_id: str,
        *,
        user_id: int,
        guild_id: int | None,
        start: Callable[[], None],
        show_place: ShowPlace,
    ) -> None:
        """Queue ``job_id``; ``start()`` is called (once) on its turn or when it is withdrawn."""
        self._used = True
        await self._queue.enqueue(job_id, owner=self.owner, user_id=user_id, guild_id=guild_id)
        self._waiting[job_id] = _Waiter(start, show_place)
        self._wake()

    def withdraw(self, job_id: str) -> None:
        """Take a waiting job out of the queue and start it now (it will see why: a cancel)."""
        waiter = self._waiting.pop(job_id, None)
        if waiter is None:
            return
        self._withdrawn.add(job_id)
        self._wake()
        waiter.start()

    async def close(self) -> None:
        """Stop claiming; this process's tickets leave the queue (withdraw every job first)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for showing in list(self._showing):
            showing.cancel()
        if not self._used:
            return  # nothing of this process's was ever queued (the storage may not even be open)
        try:
            await self._queue.leave(self.owner)
        except Exception:
            log.exception("Could not take this process's tickets out of the submit queue")

    def _wake(self) -> None:
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch(), name="SubmitTurns.dispatch")

    async def _dispatch(self) -> None:
        while self._waiting or self._withdrawn:
            self._arrived.clear()
            try:
                await self._forget_withdrawn()
                if not self._waiting:
                    break
                claim = await self._queue.claim(self.owner, self._windows, now=self._clock())
            except Exception:
                log.exception("Could not claim a turn in the submit queue")
                await asyncio.sleep(self._poll_s)
                continue
            if claim.job_id is not None:
                waiter = self._waiting.pop(claim.job_id, None)
                if waiter is not None:
                    waiter.start()
                continue
            await self._show_places()
            delay = claim.wait_s if claim.wait_s > 0 else self._poll_s
            # A new ticket may be next at once (an idle budget, a member not served yet).
            await self._arrived.sleep(delay)

    async def _forget_withdrawn(self) -> None:
        while self._withdrawn:
            job_id = self._withdrawn.pop()
            try:
                await self._queue.remove(job_id)
            except Exception:
                self._withdrawn.add(job_id)
                raise

    async def _show_places(self) -> None:
        now = self._clock()
        due = self._places_shown_at is None or now - self._places_shown_at >= self._place_interval_s
        if not due and all(waiter.shown is not None for waiter in self._waiting.values()):
            return
        try:
            places = await self._queue.positions(self.owner)
        except Exception:
            log.exception("Could not read the places in the submit queue")
            return
        if due:
            self._places_shown_at = now
        for job_id, place in places.items():
            waiter = self._waiting.get(job_id)
            if waiter is None or (waiter.shown is not None and not (due and place * 2 <= waiter.shown)):
                continue
            waiter.shown = place
            showing = asyncio.create_task(waiter.show_place(place), name=f"SubmitTurns.show-{job_id}")
            self._showing.add(showing)
            showing.add_done_callback(self._showing.discard)
