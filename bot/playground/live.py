"""Keeping the simulated world live: its clock on the wall clock, the browser's pages current.

SimCord moves its virtual clock only when told to (or when one of the bot's own timers falls
due), and publishes a page only after a browser action. A member watching ``/imagine`` would see
"⏳ Waiting for a worker" forever, with a timestamp of 1 January 2026. :class:`LiveSync` runs
beside the bot and, a few times a second, under the same lock as browser actions (so SimCord
never sees two operations at once):

1. moves the virtual clock to the wall clock's time (``Env.advance_time``): the bot's polls,
   edit throttles, cooldowns and "elapsed" times then follow real seconds;
2. republishes the pages when the bot did something (or every ``refresh_s``, for relative times).

A step that cannot settle in time (the bot is busy) is left for the next one: the time it could
not cover is covered then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from simcord import Env, SetupError

from bot.playground._simcord_live import activity, clock_lag, republish

log = logging.getLogger(__name__)

TICK_S = 0.2
REFRESH_S = 5.0
# Lags below this are not worth a settle.
MIN_STEP_S = 0.05


class LiveSync:
    def __init__(
        self,
        env: Env,
        preview: Callable[[], Any],
        lock: asyncio.Lock,
        *,
        tick_s: float = TICK_S,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.env = env
        self.preview = preview
        self.lock = lock
        self.tick_s = tick_s
        self.refresh_s = refresh_s
        self.steps_cut_short = 0
        self._seen = -1
        self._published_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="playground.LiveSync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            async with self.lock:
                await self.step()

    async def step(self) -> None:
        """Catch the clock up and republish if needed. The caller holds ``lock``."""
        lag = clock_lag(self.env)
        if lag >= MIN_STEP_S:
            try:
                await self.env.advance_time(lag)
            except TimeoutError:
                # The bot is busy; the clock stays where it got to and the next step goes on.
                self.steps_cut_short += 1
                log.debug("The simulated world did not settle within a step", exc_info=True)
            except SetupError:
                log.debug("SimCord was busy with another operation", exc_info=True)
        seen = activity(self.env)
        now = time.monotonic()
        if seen != self._seen or now - self._published_at >= self.refresh_s:
            republish(self.preview())
            self._seen = seen
            self._published_at = now
