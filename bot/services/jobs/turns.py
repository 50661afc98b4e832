"""This process's side of the bot's one fair queue for sending generations to the AI Horde.

The queue and the budget live in the database (``bot/storage/submit_queue.py``), shared by every
process of the bot; here one task per process claims turns for the jobs this process holds and
tells each waiting job its place in the bot's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot.clock import monotonic
from bot.horde import Wakeup
from bot.storage import SubmitQueue, Window

log = logging.getLogger(__name__)

# How often a process looks again when the next turn is another process's (or the database failed).
DEFAULT_POLL_S: Final = 0.25

ShowPlace = Callable[[int], Coroutine[Any, Any, None]]
"""Shows a waiting job its place in the bot's queue (1 = next)."""


@dataclass(slots=True)
class _Waiter:
    wakeup: Wakeup
    show_place: ShowPlace
    granted: bool = False
    shown: int | None = None
    showing: asyncio.Task[None] | None = field(default=None)


class SubmitTurns:
    """Hands out turns to send a generation: ``await turns.turn(job_id, ...)`` returns when it is
    the job's turn in the bot's fair queue and the Horde's ``generate/async`` budget has room."""

    def __init__(
        self,
        queue: SubmitQueue,
        windows: Sequence[Window],
        *,
        clock: Callable[[], float] = monotonic,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self._queue = queue
        self._windows = tuple(windows)
        self._clock = clock
        self._poll_s = poll_s
        # One per process: the tickets this process can send.
        self.owner: Final = uuid.uuid4().hex
        self._waiting: dict[str, _Waiter] = {}
        self._task: asyncio.Task[None] | None = None
        self._arrived = Wakeup()
        self._used = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def turn(
        self,
        job_id: str,
        *,
        user_id: int,
        guild_id: int | None,
        show_place: ShowPlace,
        wakeup: Wakeup,
        cancelled: Callable[[], bool],
    ) -> bool:
        """Wait for ``job_id``'s turn; ``False`` when ``cancelled()`` became true first (whoever
        makes it true sets ``wakeup``). A job that does not get its turn leaves the queue."""
        self._used = True
        await self._queue.enqueue(job_id, owner=self.owner, user_id=user_id, guild_id=guild_id)
        waiter = _Waiter(wakeup, show_place)
        self._waiting[job_id] = waiter
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch(), name="SubmitTurns.dispatch")
        try:
            while not waiter.granted and not cancelled():
                await wakeup.wait()
                wakeup.clear()
            return waiter.granted
        finally:
            del self._waiting[job_id]
            if waiter.showing is not None:
                waiter.showing.cancel()
            if not waiter.granted:
                await self._remove(job_id)

    async def close(self) -> None:
        """Stop claiming; this process's tickets leave the queue."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._used:
            return  # nothing of this process's was ever queued (the storage may not even be open)
        try:
            await self._queue.leave(self.owner)
        except Exception:
            log.exception("Could not take this process's tickets out of the submit queue")

    async def _dispatch(self) -> None:
        while self._waiting:
            self._arrived.clear()
            try:
                claim = await self._queue.claim(self.owner, self._windows, now=self._clock())
            except Exception:
                log.exception("Could not claim a turn in the submit queue")
                await asyncio.sleep(self._poll_s)
                continue
            if claim.job_id is not None:
                waiter = self._waiting.get(claim.job_id)
                if waiter is not None:
                    waiter.granted = True
                    waiter.wakeup.set()
                continue
            await self._show_places()
            delay = claim.wait_s if claim.wait_s > 0 else self._poll_s
            # A new ticket may be next at once (an idle budget, a member not served yet).
            await self._arrived.sleep(delay)

    async def _show_places(self) -> None:
        try:
            places = await self._queue.positions(self.owner)
        except Exception:
            log.exception("Could not read the places in the submit queue")
            return
        for job_id, place in places.items():
            waiter = self._waiting.get(job_id)
            if waiter is None or waiter.shown == place:
                continue
            if waiter.showing is not None and not waiter.showing.done():
                continue  # still showing the last place; the next round shows the new one
            waiter.shown = place
            waiter.showing = asyncio.create_task(waiter.show_place(place), name=f"SubmitTurns.show-{job_id}")

    async def _remove(self, job_id: str) -> None:
        try:
            await self._queue.remove(job_id)
        except Exception:
            log.exception("Could not take job %s out of the submit queue", job_id)
