"""``horde-bot playground``: the real bot in a browser, with no Discord token and no kudos.

It needs the ``playground`` extra (SimCord with its preview server): :func:`missing_requirements`
tells, without importing them, whether it is installed. The playground itself is in
:mod:`bot.playground.runner`; docs/ARCHITECTURE.md (*Playground*) describes it.
"""

from __future__ import annotations

import importlib.util
from typing import Final

# SimCord and what its preview server imports (simcord.preview._PREVIEW_RUNTIME_MODULES).
REQUIRED_MODULES: Final = ("simcord", "aiohttp", "markdown_it", "linkify_it", "regex", "PIL", "av")


def missing_requirements() -> list[str]:
    """The modules of the playground extra that cannot be imported here."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
