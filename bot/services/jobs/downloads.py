"""Downloading a job's images from the Horde (every kind that returns images: image, alchemy)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.horde import AIHordeError, ImageGeneration
from bot.services.jobs.kinds import JobContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageDeliverySettings:
    """``status_interval_s``: least time between two mid-job status fetches (the Horde allows 10
    a minute per request; 7.5 s leaves room for the final one). A download is tried
    ``download_attempts`` times, waiting ``download_retry_delay_s`` × attempt in between."""

    status_interval_s: float = 7.5
    download_attempts: int = 3
    download_retry_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.download_attempts < 1:
            raise ValueError("download_attempts must be at least 1")
        if self.status_interval_s < 0 or self.download_retry_delay_s < 0:
            raise ValueError("intervals must not be negative")


async def download_with_retries(
    ctx: JobContext, generation: ImageGeneration, delivery: ImageDeliverySettings, what: str
) -> bytes | None:
    """The image file of ``generation``, tried ``delivery.download_attempts`` times; ``None`` (and
    a warning naming ``what``) when every attempt failed: a lost image is noted, not fatal."""
    attempts = delivery.download_attempts
    for attempt in range(1, attempts + 1):
        try:
            return await ctx.horde.download_image_bytes(generation)
        except AIHordeError as exc:
            if attempt == attempts:
                log.warning(
                    "Job %s: %s could not be downloaded (%d attempts): %s", ctx.job_id, what, attempts, exc
                )
                return None
        await asyncio.sleep(delivery.download_retry_delay_s * attempt)
    return None
