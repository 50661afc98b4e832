"""How often a job's message may be edited: :class:`ChannelEditBudget` per channel (Discord's
bucket, shared by every job there) and :class:`EditThrottle` per message (only what changed, at
most once an interval)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Final

from bot.clock import monotonic
from bot.horde import RateLimit, Wakeup
from bot.horde.ratelimit import SlidingWindow

CHANNEL_EDITS: Final = 5
CHANNEL_WINDOW_S: Final = 5.0
"""Discord's per-channel message bucket is 5 requests per 5 s; every job in a channel shares it."""


class ChannelEditBudget:
    """Every job in a channel shares one edit budget: at most ``edits`` edits in any ``window_s``
    seconds (a sliding window over the times of the channel's last ``edits`` edits), which keeps
    the bot inside Discord's per-channel bucket (fixed windows of the same size).

    * Progress (:meth:`try_spend`) goes out only if a turn is free *now* and no result is waiting
      for one: otherwise it is skipped (the next poll shows the news).
    * Results (:meth:`acquire`) wait for their turn, first come first served: each call reserves
      the earliest turn after every earlier reservation, so none can be overtaken, and none is
      dropped however long the queue (it moves ``edits`` per ``window_s`` whatever happens).
    * Once :meth:`stop_waiting` was called (the bot shuts down: there is no later), nothing waits.
    """

    def __init__(
        self,
        edits: int = CHANNEL_EDITS,
        window_s: float = CHANNEL_WINDOW_S,
        *,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        max_channels: int = 4096,
    ) -> None:
        if edits < 1 or window_s <= 0:
            raise ValueError("edits must be at least 1 and window_s positive")
        self.edits = edits
        self.window_s = window_s
        self.longest_wait_s = 0.0
        """The longest a result waited for its turn (for benchmarks)."""
        self._clock = clock
        self._sleep = sleep
        self._stopped = Wakeup()
        self._max_channels = max_channels
        self._limit = RateLimit(edits, window_s)
        # Channel id -> its window over the times of its last `edits` edits; a time in the future
        # is the turn a result is waiting for.
        self._turns: dict[int, SlidingWindow] = {}

    def __repr__(self) -> str:
        return f"ChannelEditBudget({self.edits}/{self.window_s:g}s, channels={len(self._turns)})"

    def available(self, channel_id: int) -> int:
        """Edits the channel could make now without waiting (0 while anything waits)."""
        now = self._clock()
        window = self._turns.get(channel_id)
        if window is None:
            return self.edits
        if window.starts and window.starts[-1] > now:
            return 0  # a result is waiting for its turn
        return self.edits - window.used(now)

    def try_spend(self, channel_id: int) -> bool:
        """Take the channel's next turn for a progress edit if it is now; ``False`` (nothing taken)
        when the channel is busy or a result is waiting."""
        now = self._clock()
        if self.next_turn(channel_id, now) > now:
            return False
        self._take(channel_id, now, now)
        return True

    def reserve(self, channel_id: int) -> float:
        """Reserve the channel's next turn for an edit that must go out (a result): the time it
        may go out."""
        now = self._clock()
        turn = self.next_turn(channel_id, now)
        self._take(channel_id, turn, now)
        self.longest_wait_s = max(self.longest_wait_s, turn - now)
        return turn

    async def acquire(self, channel_id: int) -> None:
        """Wait for the channel's next turn (see :meth:`reserve`), or until :meth:`stop_waiting`."""
        if self._stopped.is_set():
            return
        delay = self.reserve(channel_id) - self._clock()
        if delay <= 0:
            return
        if self._sleep is not None:
            await self._sleep(delay)
        else:
            # On an asyncio.sleep timer, which SimCord's virtual clock runs in tests.
            await self._stopped.sleep(delay)

    def stop_waiting(self) -> None:
        """From now on nothing waits, and every edit waiting for its turn goes out at once: the bot
        is shutting down, and a result still waiting would be cut off (it stays journalled as
        undelivered, for the next start)."""
        self._stopped.set()

    def next_turn(self, channel_id: int, now: float) -> float:
        """The earliest time the channel's next edit may go out: after every reserved turn, and a
        whole window after the edit ``edits`` back."""
        window = self._turns.get(channel_id)
        return now if window is None else window.earliest(now)

    def _take(self, channel_id: int, turn: float, now: float) -> None:
        window = self._turns.get(channel_id)
        if window is None:
            window = self._turns[channel_id] = SlidingWindow(self._limit)
        window.record(turn)
        if len(self._turns) > self._max_channels:
            for key in [key for key, kept in self._turns.items() if kept.idle(now)]:
                del self._turns[key]


class EditThrottle:
    """Decides when a message edit may go out: only when what it shows changed, and at most once
    every ``interval_s`` seconds. A forced edit (the final one) always goes out."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last_at: float | None = None
        self._last_shown: Hashable | None = None

    def changed(self, shown: Hashable) -> bool:
        return self._last_at is None or shown != self._last_shown

    def ready(self) -> bool:
        return self._last_at is None or self._clock() - self._last_at >= self._interval_s

    def should_edit(self, shown: Hashable, *, force: bool = False) -> bool:
        return force or (self.changed(shown) and self.ready())

    def sent(self, shown: Hashable) -> None:
        self._last_at = self._clock()
        self._last_shown = shown
