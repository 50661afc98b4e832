"""The AI Horde clients: async manual / session / simple, and the sync trio over them.

The code lives in :mod:`bot.horde._clients`, one module per client kind; import from here
(or from :mod:`bot.horde`).
"""

from bot.horde._clients.estimate import QueueEstimate
from bot.horde._clients.manual import AIHordeAPIAsyncManualClient
from bot.horde._clients.polling import PollEnd, PollOutcome, PollPolicy, ProgressDelay, poll_until
from bot.horde._clients.scheduler import PollScheduler, PollSchedulerClosedError
from bot.horde._clients.session import AIHordeAPIAsyncClientSession, PendingFollowUp, is_final_status
from bot.horde._clients.simple import AIHordeAPIAsyncSimpleClient
from bot.horde._clients.sync import (
    AIHordeAPIClientSession,
    AIHordeAPIManualClient,
    AIHordeAPISimpleClient,
    download_image_from_generation,
)

__all__ = [
    "AIHordeAPIAsyncClientSession",
    "AIHordeAPIAsyncManualClient",
    "AIHordeAPIAsyncSimpleClient",
    "AIHordeAPIClientSession",
    "AIHordeAPIManualClient",
    "AIHordeAPISimpleClient",
    "PendingFollowUp",
    "PollEnd",
    "PollOutcome",
    "PollPolicy",
    "PollScheduler",
    "PollSchedulerClosedError",
    "ProgressDelay",
    "QueueEstimate",
    "download_image_from_generation",
    "is_final_status",
    "poll_until",
]
