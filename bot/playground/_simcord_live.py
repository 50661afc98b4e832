"""Every private SimCord API the playground touches, in one module, for SimCord 3.2.1 exactly.

SimCord's preview is a *published snapshot*: a browser page changes only after one of its own
actions or "Refresh preview", and the public ``Preview.refresh()`` cannot run while a browser
action runs ("operation overlaps"). SimCord's clock also starts at 2026-01-01 00:00 UTC. The
playground needs a live page on wall-clock time, and SimCord 3.2.1 has no public hook for either,
so this module reaches into it:

- ``Backend.clock._epoch``: the instant the virtual clock started, moved to the wall clock's now;
- ``Backend.bot_user.name``: the bot's name, "TestBot" in SimCord;
- ``Backend.transcript``: its length tells that the bot did something visible;
- ``Preview._pages``, ``_Page.revision``, ``Preview._advance_presentation_time()`` and
  ``Preview._publish(page, reason="refresh")``: republish every open page, as ``refresh()`` does
  minus its settle (the caller guarantees that no SimCord operation runs meanwhile).

:func:`verify` checks that each of them is still there and behaves as relied on; the playground
calls it before it starts, and ``tests/playground/test_simcord_live.py`` runs it, so a SimCord
upgrade that changes them fails loudly instead of freezing the page. docs/ARCHITECTURE.md
(*Playground*) says which upstream change would remove this module.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, Final

PINNED_SIMCORD: Final = "3.2.1"


class SimCordChanged(RuntimeError):
    """The installed SimCord lacks an internal the playground relies on."""


def verify(env: Any | None = None, preview: Any | None = None) -> None:
    """Raise :class:`SimCordChanged` unless SimCord's internals are as this module expects.

    Without arguments it checks the installed version and the classes; with a live ``env`` (and
    ``preview``) it checks their instances too.
    """
    from simcord import Env
    from simcord._clock import Clock
    from simcord.preview import Preview
    from simcord.preview._pages import _Page

    installed = version("simcord")
    if installed != PINNED_SIMCORD:
        raise SimCordChanged(f"the playground needs simcord=={PINNED_SIMCORD}, found {installed}")
    problems = [
        f"{owner.__name__}.{name}"
        for owner, name in (
            (Preview, "_publish"),
            (Preview, "_advance_presentation_time"),
            (Preview, "url"),
            (Env, "now"),
            (Env, "advance_time"),
        )
        if not hasattr(owner, name)
    ]
    if "reason" not in inspect.signature(Preview._publish).parameters:
        problems.append("Preview._publish(reason=...)")
    if "revision" not in {field for cls in _Page.__mro__ for field in getattr(cls, "__slots__", ())}:
        problems.append("_Page.revision")
    clock = Clock()
    if not isinstance(getattr(clock, "_epoch", None), datetime) or clock.now() != clock._epoch:
        problems.append("Clock._epoch")
    if env is not None:
        backend = env.backend
        if not isinstance(getattr(backend, "transcript", None), list):
            problems.append("Backend.transcript")
        if not isinstance(getattr(backend, "clock", None), Clock):
            problems.append("Backend.clock")
        if not isinstance(getattr(getattr(backend, "bot_user", None), "name", None), str):
            problems.append("Backend.bot_user.name")
    if preview is not None and not isinstance(getattr(preview, "_pages", None), dict):
        problems.append("Preview._pages")
    if problems:
        raise SimCordChanged(f"SimCord {installed} changed: {', '.join(problems)} not as expected")


def start_clock_now(env: Any) -> None:
    """Make the virtual clock read the wall clock's time from now on (it still moves only when
    SimCord moves it). Call before the world is built: snowflakes carry the clock's time."""
    clock = env.backend.clock
    clock._epoch = datetime.now(UTC) - timedelta(seconds=clock.elapsed)


def name_the_bot(env: Any, name: str) -> None:
    """Give the bot user ``name``. Call before ``Env.start()``, which announces the user."""
    env.backend.bot_user.name = name


def clock_lag(env: Any) -> float:
    """How many seconds the virtual clock is behind the wall clock."""
    now: datetime = env.now()
    return (datetime.now(UTC) - now).total_seconds()


def activity(env: Any) -> int:
    """A number that grows whenever the bot calls Discord or Discord sends it an event."""
    return len(env.backend.transcript)


def page_revision(preview: Any, context_id: str) -> int | None:
    """The revision a browser page's next action must name, or None for an unknown page."""
    page = preview._pages.get(context_id)
    return None if page is None else int(page.revision)


def republish(preview: Any) -> None:
    """Publish every open page again, with the current time. No SimCord operation may be running."""
    preview._advance_presentation_time()
    for page in tuple(preview._pages.values()):
        if page.id in preview._pages:  # a publish prunes expired pages
            preview._publish(page, reason="refresh")
