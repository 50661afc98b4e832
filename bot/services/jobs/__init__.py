"""The generation jobs engine: one :class:`JobManager` runs, journals, cancels and resumes every
job of the kinds it is handed. Its contract is in docs/ARCHITECTURE.md (*Generation jobs*);
no Discord here: the Discord side implements a :class:`JobListener` per job."""

from bot.services.jobs.downloads import ImageDeliverySettings
from bot.services.jobs.ends import had_images
from bot.services.jobs.engine import JobManager, JobPlacement
from bot.services.jobs.kinds import JobContext, JobKindHandler, JobRun, RunEnd
from bot.services.jobs.messages import describe_horde_error
from bot.services.jobs.models import (
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
from bot.services.jobs.resume import ListenerFactory

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
    "had_images",
]
