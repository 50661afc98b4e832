"""The kinds of job the bot runs, and the command that starts each.

``/imagine`` → ``image`` (``bot.services.image``), ``/write`` → ``text`` (``bot.services.text``),
``/alchemy`` (and the image context menus, and /imagine's Upscale button) → ``alchemy``
(``bot.services.alchemy``). The jobs engine (``bot.services.jobs``) knows none of them: it is
handed :func:`job_kinds`.
"""

from __future__ import annotations

from typing import Final

from bot.services.alchemy.job import AlchemyJobs
from bot.services.image.job import ImageJobs
from bot.services.jobs import ImageDeliverySettings, JobKindHandler
from bot.services.text.job import TextJobs
from bot.storage import JobKind

COMMAND_KINDS: Final[dict[str, JobKind]] = {"imagine": "image", "write": "text", "alchemy": "alchemy"}
"""The kind of job each command starts."""


def job_kinds(downloads: ImageDeliverySettings = ImageDeliverySettings()) -> tuple[JobKindHandler, ...]:  # noqa: B008 - frozen
    """One handler per kind, for the jobs engine; ``downloads`` paces the image kinds' downloads."""
    return (ImageJobs(downloads), TextJobs(), AlchemyJobs(downloads))
