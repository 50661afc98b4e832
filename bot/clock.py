"""The monotonic clock every pacing decision reads (throttles, budgets, caches, cooldowns).

:func:`monotonic` looks ``time.monotonic`` up at each call instead of binding it once (as a
default argument or a module-level alias would): a clock patched later, such as the virtual clock
SimCord runs a test on, is then seen everywhere. Take it as a default, ``clock=monotonic``, and let
unit tests pass their own.
"""

from __future__ import annotations

import time


def monotonic() -> float:
    """``time.monotonic()``, looked up now."""
    return time.monotonic()
