"""Showing a job's end to its member, journalled apart from the generation.

A job's end (its result, or why it failed or was cancelled) is journalled with the job's end state
and ``delivery = pending``; the listener's ``on_finished`` then shows it. Discord may keep it from
doing so for a while (rate limits, an outage) and the process may stop meanwhile, so:

* :class:`EndDelivery` calls ``on_finished`` until it returns (``delivered``) or says the end can
  never be shown (``failed``, with the reason). A listener that could not finish within its own
  deadline raises :class:`DeliveryDeferred` and is called again later (:data:`REDELIVERY_DELAYS_S`);
  a hung call is cut off after ``timeout_s`` and treated the same. A timeout never drops a result.
* After a restart the jobs still ``pending`` are delivered again (:func:`recovered_outcome`). Text
  results and every end without images are in the journal. Images are not (megabytes, and the
  journal is no image store): they are fetched again from the Horde by the request's id, which the
  Horde keeps about 20 minutes after its last image (its download URLs are signed again on every
  status call). Later than that the member is told that the images expired.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

from bot.horde import AIHordeError, AIHordeRequestExpiredError, Wakeup
from bot.services.jobs import messages
from bot.services.jobs.kinds import JobRun
from bot.services.jobs.models import (
    DeliveredImage,
    DeliveryDeferred,
    DeliveryFailed,
    JobAbandoned,
    JobListener,
    JobOutcome,
)
from bot.storage import DeliveryState, JobRecord, Storage

log = logging.getLogger(__name__)

REDELIVERY_DELAYS_S: Final[tuple[float, ...]] = (30.0, 60.0, 120.0, 300.0)
"""Pauses between deliveries of an end that could not be shown yet; the last one repeats."""
DEFAULT_DELIVERY_TIMEOUT_S: Final = 30 * 60.0
"""A safety net around one ``on_finished`` call, which bounds its own Discord calls and only waits
for its channel's turn (a queue that always moves) otherwise."""
HORDE_RESULT_RETENTION_S: Final = 20 * 60.0
"""How long the Horde keeps a finished request (and so its images) after its last image."""
MESSAGE_GONE: Final = "its message was deleted"
EXPIRED: Final = "the AI Horde no longer kept its images when the bot could show them"


class EndDelivery:
    """Shows jobs' ends and journals whether that happened; one per jobs engine."""

    def __init__(
        self,
        storage: Storage,
        *,
        timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        delays_s: tuple[float, ...] = REDELIVERY_DELAYS_S,
    ) -> None:
        if timeout_s <= 0 or not delays_s or min(delays_s) < 0:
            raise ValueError("timeout_s must be positive and delays_s non-empty and not negative")
        self._storage = storage
        self._timeout_s = timeout_s
        self._delays_s = delays_s
        self._stopping = Wakeup()
        self.pending = 0
        """Ends being shown right now, or waiting to be shown again."""

    def stop(self) -> None:
        """Shutting down: no more waiting between deliveries (what is still pending stays in the
        journal, for the next start)."""
        self._stopping.set()

    async def deliver(
        self,
        job_id: str,
        listener: JobListener,
        record: Callable[[], JobRecord],
        outcome: JobOutcome | Callable[[], Awaitable[JobOutcome]],
    ) -> None:
        """Show ``outcome`` through ``listener`` until it is shown or can never be; journal which.
        ``record`` gives the job's current journal row (it may change while this runs).
        ``outcome`` may be made by a call (after a restart), which may raise
        :class:`DeliveryDeferred` too."""
        self.pending += 1
        try:
            for attempt in itertools.count():
                shown = await self._try(job_id, listener, record(), outcome)
                if shown is not None:
                    await self._journal(job_id, *shown)
                    return
                if self._stopping.is_set():
                    return  # still pending in the journal: the next start delivers it
                delay = self._delays_s[min(attempt, len(self._delays_s) - 1)]
                await self._stopping.sleep(delay)
                if self._stopping.is_set():
                    return
        finally:
            self.pending -= 1

    async def _try(
        self,
        job_id: str,
        listener: JobListener,
        record: JobRecord,
        outcome: JobOutcome | Callable[[], Awaitable[JobOutcome]],
    ) -> tuple[DeliveryState, str | None] | None:
        """One ``on_finished``: how the delivery ended, or ``None`` to try again later."""
        try:
            async with asyncio.timeout(self._timeout_s):
                end = outcome if isinstance(outcome, JobOutcome) else await outcome()
                await listener.on_finished(record, end)
        except TimeoutError:
            log.warning("Job %s: showing its end took over %gs; trying again later", job_id, self._timeout_s)
        except DeliveryDeferred as exc:
            log.warning("Job %s: its end is not shown yet (%s); trying again later", job_id, exc)
        except JobAbandoned:
            log.info("Job %s: its message is gone; its end can't be shown", job_id)
            return DeliveryState.FAILED, MESSAGE_GONE
        except DeliveryFailed as exc:
            return DeliveryState.FAILED, str(exc)
        except Exception:
            log.exception("Job %s: the listener's on_finished failed", job_id)
            return DeliveryState.FAILED, "the bot failed unexpectedly while showing it"
        else:
            if messages.RESULT_EXPIRED in end.notes:
                return DeliveryState.FAILED, EXPIRED  # the member was told why
            return DeliveryState.DELIVERED, None
        return None

    async def _journal(self, job_id: str, state: DeliveryState, error: str | None) -> None:
        try:
            await self._storage.jobs.update(job_id, delivery=state, delivery_error=error)
        except Exception:
            log.exception("Job %s: could not journal its delivery (%s)", job_id, state)


async def recovered_outcome(run: JobRun | None, record: JobRecord, *, now: datetime) -> JobOutcome:
    """The end of a journalled job whose delivery is pending, for showing it after a restart: as
    journalled, with its images fetched again from the Horde while it still keeps them.

    Raises :class:`DeliveryDeferred` when the Horde can't be asked right now but may still have
    them (a later try may succeed)."""
    images: tuple[DeliveredImage, ...] = ()
    notes = list(_journalled_notes(record.result_json))
    if run is not None and record.horde_id is not None and had_images(record.result_json):
        try:
            images = tuple(await run.recover())
        except AIHordeRequestExpiredError:
            notes.append(messages.RESULT_EXPIRED)
        except AIHordeError as exc:
            if (now - record.updated_at).total_seconds() > HORDE_RESULT_RETENTION_S:
                notes.append(messages.RESULT_EXPIRED)
            else:
                raise DeliveryDeferred(f"the Horde could not be asked for the images: {exc}") from exc
    return JobOutcome(
        state=record.state,
        images=images,
        kudos=record.kudos or 0.0,
        workers=tuple(dict.fromkeys(image.worker_name for image in images if image.worker_name)),
        error=record.error,
        notes=tuple(notes),
    )


def _result(result_json: str | None) -> dict[str, Any]:
    try:
        result = json.loads(result_json) if result_json else {}
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def _journalled_notes(result_json: str | None) -> tuple[str, ...]:
    notes = _result(result_json).get("notes")
    return tuple(note for note in notes if isinstance(note, str)) if isinstance(notes, list) else ()


def had_images(result_json: str | None) -> bool:
    """Whether a journalled job's ``result_json`` lists images (their bytes are never journalled)."""
    images = _result(result_json).get("images")
    return isinstance(images, list) and bool(images)
