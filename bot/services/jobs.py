"""Generation jobs: one :class:`JobManager` runs, journals, cancels and resumes every generation.

No Discord here: the Discord side implements a :class:`JobListener` per job (it edits the job's
message) and calls the manager.

The contract
------------
``JobManager(storage, horde, *, generation_timeout_s, shard_count=1, shard_ids=None, clock=utcnow,
image_delivery=...)``
(or ``JobManager.from_settings(storage, horde, settings)``):

* ``await start_image_job(*, request, key, key_owner, user_id, guild_id, channel_id, message_id,
  params, listener) -> JobRecord`` journals a PENDING job (``request_json`` is the wire body,
  which never holds the key; ``params_json`` the user's options for reruns) and starts one task
  for it. The task submits through the shared simple client; the Horde's id is journalled
  (SUBMITTED) before the first poll. Each poll becomes a :class:`JobProgress` for
  ``listener.on_progress``; when the ``check`` shows more finished images, the status is fetched
  (at most every ``ImageDeliverySettings.status_interval_s``) and the new images are downloaded
  (retried a little) and handed to ``listener.on_images`` at once, each image once. At the end the
  job is journalled DONE / CANCELLED / FAILED with ``result_json`` (ids, seeds, models, workers,
  censored flags, lost images, notes: never image bytes), kudos and a user-safe error, then
  ``listener.on_finished(job, JobOutcome)``. Raises :class:`JobsShuttingDownError` (a
  ``BotError``) once shutdown began.
* Ends: all images in → DONE. ``done`` and ``faulted`` → FAILED with the partial images and
  "The Horde could not finish this request (workers faulted)". A submit error → FAILED with
  :func:`describe_horde_error`'s text (the one rc → text mapping); nothing is left on the Horde.
  The Horde forgetting the id (404) → FAILED "expired on the AI Horde". The time limit → the
  client DELETEs and the job ends CANCELLED with the partial images and a note.
* ``await cancel(job_id) -> bool``: the request is DELETEd on the Horde and the job ends CANCELLED
  with its finished images delivered. Returns at once; idempotent; ``False`` when not running.
  ``await wait(job_id)`` waits for a running job's :class:`JobOutcome`.
* Listener calls never break a job: their exceptions are logged with the traceback and ignored,
  except :class:`JobAbandoned` (the message is gone), which cancels the job on the Horde.
* Delivery is journalled apart from the generation (``_jobs/ends.py``): an end is journalled with
  ``delivery = pending``, then ``on_finished`` shows it (no time limit of its own but a 30-minute
  safety net; the listener bounds its Discord calls). Returning journals ``delivered``;
  :class:`DeliveryDeferred` (or the safety net) tries again later (30 s, 1, 2, then every 5
  minutes); :class:`DeliveryFailed` or :class:`JobAbandoned` journals ``failed`` with why. Ends
  still pending at a restart are shown again by ``resume_unfinished``: from the journal, with the
  images fetched again by the Horde id while the Horde keeps them (about 20 minutes), else saying
  that they expired. ``deliveries_pending()`` counts this process's ends not yet shown.
* ``await shutdown(deadline_s)``: refuses new jobs, cancels every running job on the Horde and
  waits (most of) the deadline for them to deliver what is finished and end CANCELLED ("the bot
  was shut down", ``on_finished`` included); tasks still running are then cancelled (the client
  still DELETEs) and every job is journalled. No task is left behind.
* Sharding: every job is journalled with its guild's shard, ``(guild_id >> 22) % shard_count``
  (DMs: shard 0; discord.py's rule). ``shard_ids`` are the shards this process runs.
* ``set_listener_factory(kind, factory)``: each kind's cog registers how to rebuild a listener.
* ``await resume_unfinished(listener_factory=None) -> int``, once at start (the bot calls it on its
  first READY): the unfinished jobs of ``shard_ids`` (every job when ``None``; untagged jobs count
  as shard 0) whose kind has a factory. SUBMITTED jobs are followed again by their Horde id into
  ``factory(record)`` (sync or async); PENDING jobs have no id to follow or cancel and are marked
  FAILED (see the method for the crash window). Kinds without a factory stay in the journal.
* ``active_jobs(user_id=None)``, ``get_active(job_id)`` → :class:`ActiveJob`; ``count_active(user_id)``.

The kind-specific work sits behind :class:`~bot.services._jobs.kinds.JobKindHandler` (image now in
``_jobs/image.py``); text and alchemy plug in there without touching the core.
"""

from bot.services._jobs.image import ImageDeliverySettings
from bot.services._jobs.kinds import JobContext, JobKindHandler, JobRun, RunEnd
from bot.services._jobs.manager import JobManager, JobPlacement, ListenerFactory
from bot.services._jobs.messages import describe_horde_error
from bot.services._jobs.models import (
    ActiveJob,
    CancelReason,
    DeliveredImage,
    DeliveryDeferred,
    DeliveryFailed,
    JobAbandoned,
    JobListener,
    JobOutcome,
    JobProgress,
    JobsShuttingDownError,
    ProgressState,
)

__all__ = [
    "ActiveJob",
    "CancelReason",
    "DeliveredImage",
    "DeliveryDeferred",
    "DeliveryFailed",
    "ImageDeliverySettings",
    "JobAbandoned",
    "JobContext",
    "JobKindHandler",
    "JobListener",
    "JobManager",
    "JobOutcome",
    "JobPlacement",
    "JobProgress",
    "JobRun",
    "JobsShuttingDownError",
    "ListenerFactory",
    "ProgressState",
    "RunEnd",
    "describe_horde_error",
]
