"""The async client session: a manual client that cancels what it left unfinished."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.horde._clients.estimate import QueueEstimate
from bot.horde._clients.manual import AIHordeAPIAsyncManualClient
from bot.horde._clients.scheduler import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RATE, PollScheduler
from bot.horde.apimodels.alchemy import AlchemyStatusResponse
from bot.horde.apimodels.base import (
    BaseAsyncRequest,
    BaseGenerationProgressResponse,
    BaseJobRequest,
    HordeRequest,
    HordeResponse,
)
from bot.horde.apimodels.errors import RequestErrorResponse

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=HordeResponse)

DEFAULT_CLEANUP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PendingFollowUp:
    """A generation the Horde accepted and nobody has collected or cancelled yet."""

    gen_id: str
    request: BaseAsyncRequest
    expected_results: int

    @property
    def cleanup_request(self) -> BaseJobRequest:
        """The DELETE that cancels it (made when needed: a thousand pending generations should
        not each hold one)."""
        return self.request.build_cleanup_request(self.gen_id)


class AIHordeAPIAsyncClientSession(AIHordeAPIAsyncManualClient):
    """Tracks every generation submitted through it and DELETEs the unfinished ones on exit.

    A generation stops being tracked when a final status arrives (images: ``done``; text: all
    ``n`` generations; alchemy: every form finished), when its cleanup succeeds, or when the
    Horde no longer knows it (404). ``__aexit__`` runs the cleanups concurrently, whether or
    not the body raised, waits for them (at most ``cleanup_timeout`` seconds), and never
    suppresses the exception, ``CancelledError`` included. :meth:`close` does the same, then
    stops the :attr:`poll_scheduler`.
    """

    def __init__(
        self,
        *args: Any,
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
        max_checks_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_checks_per_second: float = DEFAULT_MAX_RATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cleanup_timeout = cleanup_timeout
        self.max_checks_in_flight = max_checks_in_flight
        self.max_checks_per_second = max_checks_per_second
        self._pending: dict[str, PendingFollowUp] = {}
        self._scheduler: PollScheduler | None = None
        self.queue_estimate = QueueEstimate()
        """How fast the Horde's queues move, learnt from every generation polled here."""

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending)

    @property
    def poll_scheduler(self) -> PollScheduler:
        """The one scheduler polling every generation followed through this session.

        Made on first use (its task starts with the first poll); :meth:`close` stops it, and a
        later use makes a new one.
        """
        if self._scheduler is None:
            self._scheduler = PollScheduler(
                max_in_flight=self.max_checks_in_flight, max_rate=self.max_checks_per_second
            )
        return self._scheduler

    def pending_follow_up(self, gen_id: str) -> PendingFollowUp | None:
        return self._pending.get(gen_id)

    def release(self, gen_id: str) -> None:
        """Stop tracking ``gen_id``: it is left running on the Horde on purpose (a later process
        follows it), so :meth:`close` must not DELETE it."""
        self._pending.pop(gen_id, None)

    async def submit_request(
        self, request: HordeRequest, expected_response_type: type[R]
    ) -> R | RequestErrorResponse:
        response = await super().submit_request(request, expected_response_type)
        self._track(request, response)
        return response

    async def cancel(self, gen_id: str) -> HordeResponse | RequestErrorResponse:
        """Send the cleanup of a tracked generation; returns its status with the partial results."""
        follow_up = self._pending.get(gen_id)
        if follow_up is None:
            raise KeyError(f"generation {gen_id} is not pending in this session")
        cleanup = follow_up.cleanup_request
        return await self.submit_request(cleanup, cleanup.get_default_success_response_type())

    async def cancel_all_pending(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """DELETE every pending generation concurrently and wait for the answers, at most
        ``timeout`` seconds (``cleanup_timeout`` when not given, never more)."""
        gen_ids = self.pending
        if not gen_ids:
            return
        limit = self.cleanup_timeout if timeout is None else max(0.0, min(timeout, self.cleanup_timeout))
        logger.info("Cancelling %d unfinished AI Horde request(s)", len(gen_ids))
        cleanup = asyncio.ensure_future(
            asyncio.gather(*(self.cancel(gen_id) for gen_id in gen_ids), return_exceptions=True)
        )
        try:
            # Shielded, so a second cancellation of the caller does not abort the DELETEs.
            results = await asyncio.wait_for(asyncio.shield(cleanup), limit)
        except TimeoutError:
            logger.warning("Cancelling AI Horde requests took longer than %.1fs; left running", limit)
            cleanup.cancel()  # the connection pool closes next: nothing will answer them
            return
        for gen_id, result in zip(gen_ids, results, strict=True):
            if isinstance(result, BaseException | RequestErrorResponse):
                logger.warning("Could not cancel AI Horde request %s: %s", gen_id, _describe(result))

    async def close(self, *, cleanup_timeout: float | None = None) -> None:
        """Cancel every pending generation (waiting at most ``cleanup_timeout`` seconds, the
        session's own when not given), stop polling, then close the connection pool if this
        session owns it."""
        try:
            await self.cancel_all_pending(cleanup_timeout)
        finally:
            scheduler, self._scheduler = self._scheduler, None
            try:
                if scheduler is not None:
                    await scheduler.close()
            finally:
                await super().close()

    def _track(self, request: HordeRequest, response: HordeResponse | RequestErrorResponse) -> None:
        if isinstance(request, BaseAsyncRequest):
            gen_id = getattr(response, "id_", None)
            if isinstance(gen_id, str) and gen_id and not isinstance(response, RequestErrorResponse):
                self._pending[gen_id] = PendingFollowUp(
                    gen_id=gen_id, request=request, expected_results=request.get_number_of_results_expected()
                )
            return
        if not isinstance(request, BaseJobRequest):
            return
        follow_up = self._pending.get(request.id_)
        if follow_up is None:
            return
        if isinstance(response, RequestErrorResponse):
            if response.http_status == 404:
                del self._pending[request.id_]
            return
        if request.http_method == "DELETE" or is_final_status(response, follow_up.expected_results):
            del self._pending[request.id_]


def is_final_status(response: HordeResponse, expected_results: int) -> bool:
    """True once the Horde will not add anything more to this generation."""
    if isinstance(response, BaseGenerationProgressResponse | AlchemyStatusResponse):
        return response.is_final or response.is_job_complete(expected_results)
    return False


def _describe(result: object) -> str:
    if isinstance(result, RequestErrorResponse):
        return f"{result.message} (HTTP {result.http_status})"
    return f"{type(result).__name__}: {result}"
