"""An :class:`asyncio.Event` whose waiters sleep.

Polling parks a task for seconds at a time, waking early when a generation is cancelled. Waiting
on ``Event.wait()`` under a timeout leaves the task parked on a bare future; waiting in
``asyncio.sleep`` leaves it parked on a timer, which is what loop inspectors (SimCord's
settlement, debuggers, task dumps) recognise as idle. ``set()`` cancels the sleeps to wake them.
:meth:`Wakeup.wait` sleeps too (an hour at a time, until set), so no wait on a ``Wakeup`` ever
parks on a bare future.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

# How long wait() sleeps before it looks again; only a virtual clock (SimCord's advance_time)
# ever gets there, since set() ends the sleep at once.
_WAIT_RECHECK_S = 3600.0


class Wakeup(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self._sleepers: set[asyncio.Future[None]] = set()
        # Counts set() calls, so wait() notices a set() even if clear() followed before it ran.
        self._sets = 0

    def set(self) -> None:
        self._sets += 1
        super().set()
        for sleeper in self._sleepers:
            sleeper.cancel()

    async def wait(self) -> Literal[True]:
        """Until :meth:`set` is called (at once if the event is set), parked on a timer."""
        seen = self._sets
        while not self.is_set() and self._sets == seen:
            await self.sleep(_WAIT_RECHECK_S)
        return True

    async def sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds or until :meth:`set`; returns whether the event is set."""
        if self.is_set():
            return True
        sleeper = asyncio.ensure_future(asyncio.sleep(max(0.0, delay)))
        self._sleepers.add(sleeper)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
            current = asyncio.current_task()
            # A cancelled sleeper means set(); a cancelled caller must still see CancelledError.
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        finally:
            self._sleepers.discard(sleeper)
            sleeper.cancel()
        return self.is_set()


async def sleep_or_until_set(delay: float, event: asyncio.Event | None) -> bool:
    """Sleep ``delay`` seconds, waking early when ``event`` is set; returns whether it is set.

    Only a :class:`Wakeup` sleeps on a timer; a plain :class:`asyncio.Event` (a caller's own
    ``cancel_event``) is waited on under a timeout, which virtual-time harnesses cannot see.
    """
    if event is None:
        await asyncio.sleep(delay)
        return False
    if isinstance(event, Wakeup):
        return await event.sleep(delay)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await event.wait()
    return event.is_set()
