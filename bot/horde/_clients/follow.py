"""Following a submitted generation to its end: the polls, the final fetch, the cleanup.

The base of :class:`~bot.horde._clients.simple.AIHordeAPIAsyncSimpleClient` (see its module
docstring for the outcomes): each generation is followed on the session's
:class:`~bot.horde._clients.scheduler.PollScheduler`, paced by a
:class:`~bot.horde._clients.polling.ProgressDelay` that shares the session's
:class:`~bot.horde._clients.estimate.QueueEstimate`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from bot.horde._clients.polling import PollEnd, PollPolicy, ProgressDelay
from bot.horde._clients.scheduler import ErrorDelay, PollSchedulerClosedError
from bot.horde._clients.session import AIHordeAPIAsyncClientSession, is_final_status
from bot.horde._clients.wakeup import sleep_or_until_set
from bot.horde.apimodels.base import BaseJobRequest, HordeRequest, HordeResponse
from bot.horde.apimodels.errors import RequestErrorResponse
from bot.horde.apimodels.image import (
    DeleteImageGenerateRequest,
    ImageGenerateCheckRequest,
    ImageGenerateCheckResponse,
    ImageGenerateStatusRequest,
    ImageGenerateStatusResponse,
)
from bot.horde.apimodels.text import (
    DeleteTextGenerateRequest,
    TextGenerateStatusRequest,
    TextGenerateStatusResponse,
)
from bot.horde.consts import GENERATION_MAX_LIFE
from bot.horde.errors import AIHordeRequestError, AIHordeRequestExpiredError

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=HordeResponse)
P = TypeVar("P", bound=HordeResponse)
F = TypeVar("F", bound=HordeResponse)
T = TypeVar("T")

ProgressCallback = Callable[[P], Awaitable[object]]

# A DELETE answered with a 5xx is sent this many times in all (within the cleanup timeout).
_CLEANUP_ATTEMPTS = 3


class GenerationFollower:
    """Polls, collects and cancels generations through ``horde_client_session``."""

    horde_client_session: AIHordeAPIAsyncClientSession
    poll_policy: PollPolicy
    cleanup_timeout: float

    async def _poll_image(
        self,
        gen_id: str,
        *,
        n: int,
        queue_key: Hashable,
        after_submit: bool,
        timeout: float,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[ImageGenerateCheckResponse] | None,
        cancel_event: asyncio.Event | None,
    ) -> ImageGenerateStatusResponse:
        # Requests are made when sent, not held: a session may follow thousands of generations.
        delays = self._progress_delay(queue_key, after_submit=after_submit)
        final: list[ImageGenerateStatusResponse] = []

        async def poll() -> ImageGenerateCheckResponse:
            if not delays.fetch_final:
                check = ImageGenerateCheckRequest(id_=gen_id)
                return await self._call_known(check, ImageGenerateCheckResponse, gen_id)
            # Aimed at the end: the status answers the check's question and brings the results.
            status = await self._call_known(
                ImageGenerateStatusRequest(id_=gen_id), ImageGenerateStatusResponse, gen_id
            )
            if is_final_status(status, n):
                final.append(status)
            else:
                delays.fetched_final()
            return _progress_of(status)

        async def collect(_: ImageGenerateCheckResponse) -> ImageGenerateStatusResponse | None:
            if final:
                return final[-1]
            status_request = ImageGenerateStatusRequest(id_=gen_id)
            return await self._fetch_known(status_request, ImageGenerateStatusResponse, gen_id, cancel_event)

        return await self._follow(
            gen_id,
            poll=poll,
            what="ImageGenerateCheckRequest",
            is_final=lambda check: is_final_status(check, n),
            next_delay=delays,
            first_delay=delays.first_delay() if after_submit else 0.0,
            collect=collect,
            cleanup=DeleteImageGenerateRequest,
            cleanup_type=ImageGenerateStatusResponse,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )

    async def _poll_text(
        self,
        gen_id: str,
        *,
        n: int,
        queue_key: Hashable,
        after_submit: bool,
        timeout: float,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[TextGenerateStatusResponse] | None,
        cancel_event: asyncio.Event | None,
    ) -> TextGenerateStatusResponse:
        status_request = TextGenerateStatusRequest(id_=gen_id)
        delays = self._progress_delay(queue_key, after_submit=after_submit)
        return await self._follow(
            gen_id,
            poll=lambda: self._call_known(status_request, TextGenerateStatusResponse, gen_id),
            what="TextGenerateStatusRequest",
            is_final=lambda status: is_final_status(status, n),
            next_delay=delays,
            first_delay=delays.first_delay() if after_submit else 0.0,
            collect=as_is,
            cleanup=DeleteTextGenerateRequest,
            cleanup_type=TextGenerateStatusResponse,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )

    async def _call_known(self, request: HordeRequest, expected: type[R], gen_id: str) -> R:
        """Like :meth:`call`, for a request about an id the Horde gave us: 404 means it is gone."""
        return known(await self.horde_client_session.submit_request(request, expected), gen_id)

    async def _fetch_known(
        self, request: HordeRequest, expected: type[R], gen_id: str, cancel_event: asyncio.Event | None
    ) -> R | None:
        """:meth:`_call_known`, asked again after a transient failure like a poll (same backoff
        and grace); ``None`` when ``cancel_event`` is set while it waits to ask again."""
        error_delay = self._poll_errors(gen_id, type(request).__name__)
        loop = asyncio.get_running_loop()
        failures, failing_since = 0, 0.0
        while True:
            try:
                return await self._call_known(request, expected, gen_id)
            except AIHordeRequestError as exc:
                now = loop.time()
                failures += 1
                if failures == 1:
                    failing_since = now
                delay = error_delay(exc, failures, now - failing_since)
                if delay is None:
                    raise
            if await sleep_or_until_set(delay, cancel_event):
                return None

    def _poll_errors(self, gen_id: str, what: str) -> ErrorDelay:
        """The scheduler's ``error_delay`` for the polls of ``gen_id``: a transient failure is
        polled again within the policy's grace (:meth:`PollPolicy.error_delay`), with a warning."""
        policy = self.poll_policy

        def error_delay(exc: Exception, failures: int, failing_for: float) -> float | None:
            if not (isinstance(exc, AIHordeRequestError) and exc.is_transient):
                return None
            delay = policy.error_delay(failures, failing_for)
            if delay is None:
                logger.warning(
                    "AI Horde request %s: %s failed %d times in a row over %.0fs; giving up: %s",
                    gen_id,
                    what,
                    failures,
                    failing_for,
                    exc,
                )
            else:
                logger.warning(
                    "AI Horde request %s: %s failed (%d in a row), asking again in %.1fs: %s",
                    gen_id,
                    what,
                    failures,
                    delay,
                    exc,
                )
            return delay

        return error_delay

    def _progress_delay(self, queue_key: Hashable, *, after_submit: bool) -> ProgressDelay:
        session = self.horde_client_session
        return ProgressDelay(
            self.poll_policy,
            estimate=session.queue_estimate,
            queue_key=queue_key,
            clock=session.poll_scheduler.now,
            first_after_submit=after_submit,
        )

    async def _follow(
        self,
        gen_id: str,
        *,
        poll: Callable[[], Awaitable[P]],
        what: str,
        is_final: Callable[[P], bool],
        next_delay: Callable[[P], float],
        first_delay: float,
        collect: Callable[[P], Awaitable[F | None]],
        cleanup: type[BaseJobRequest],
        cleanup_type: type[F],
        timeout: float,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[P] | None,
        cancel_event: asyncio.Event | None,
    ) -> F:
        try:
            outcome = await self.horde_client_session.poll_scheduler.poll(
                poll,
                is_final=is_final,
                next_delay=next_delay,
                time_limit=_time_limit(timeout),
                progress_callback=progress_callback,
                cancel_event=cancel_event,
                min_gap=self.poll_policy.min_interval,
                error_delay=self._poll_errors(gen_id, what),
                first_delay=first_delay,
            )
            end = outcome.end
            if end is PollEnd.FINAL:
                assert outcome.last is not None
                collected = await collect(outcome.last)
                if collected is not None:
                    return collected
                end = PollEnd.CANCELLED  # while the final status could not be fetched
        except (AIHordeRequestExpiredError, PollSchedulerClosedError):
            # Expired: nothing left to cancel. Closed: the session's close() cancels what it tracks.
            raise
        except BaseException:
            await self._cleanup_quietly(cleanup(id_=gen_id))
            raise
        logger.info("AI Horde request %s %s; cancelling it", gen_id, end.value.replace("_", " "))
        return known(await self._send_cleanup(cleanup(id_=gen_id), cleanup_type), gen_id)

    async def _send_cleanup(self, cleanup: BaseJobRequest, expected: type[R]) -> R | RequestErrorResponse:
        """Send a DELETE; one the Horde fails with a 5xx is sent again, up to ``_CLEANUP_ATTEMPTS``.

        The transport never retries a 500, but a DELETE is idempotent and a request left running
        spends the user's kudos on results nobody will collect. Sent again at once: this often
        runs under ``_bounded``'s timeout, where a sleep would stall virtual-time harnesses.
        """
        response = await self.horde_client_session.submit_request(cleanup, expected)
        for _ in range(_CLEANUP_ATTEMPTS - 1):
            if not (isinstance(response, RequestErrorResponse) and response.http_status >= 500):
                break
            response = await self.horde_client_session.submit_request(cleanup, expected)
        return response

    async def _cleanup_quietly(self, cleanup: BaseJobRequest) -> None:
        """Best-effort cancel while another exception (often ``CancelledError``) is on its way out."""
        response = await self._bounded(
            asyncio.ensure_future(self._send_cleanup(cleanup, cleanup.get_default_success_response_type())),
            f"cancelling request {cleanup.id_}",
        )
        if isinstance(response, RequestErrorResponse) and response.http_status != 404:
            logger.warning("Cancelling AI Horde request %s failed: %s", cleanup.id_, response.message)

    async def _bounded(self, work: asyncio.Future[T], what: str) -> T | None:
        """Wait at most ``cleanup_timeout`` for ``work``; ``None`` if it failed or is still running.

        Shielded: the caller's task is often cancelled already, and the work must still finish.
        Another cancellation of the caller stops the waiting, not the work.
        """
        work.add_done_callback(_consume_outcome)
        try:
            return await asyncio.wait_for(asyncio.shield(work), self.cleanup_timeout)
        except TimeoutError:
            logger.warning("AI Horde cleanup (%s) did not finish within %.0fs", what, self.cleanup_timeout)
        except Exception as exc:
            logger.warning("AI Horde cleanup (%s) failed: %s", what, exc)
        return None


def known(response: R | RequestErrorResponse, gen_id: str) -> R:
    """The answer about an id the Horde gave us, or the error raised: 404 means it is gone."""
    if isinstance(response, RequestErrorResponse):
        if response.http_status == 404:
            raise AIHordeRequestExpiredError(
                response,
                f"AI Horde request {gen_id} is expired or unknown: the Horde keeps a request "
                f"for about 20 minutes after its last activity ({response.message})",
            )
        raise AIHordeRequestError(response)
    return response


def queue_of(kind: str, models: Sequence[str] | None) -> Hashable:
    """Requests for the same models wait in the same queue (other models have other workers)."""
    return (kind, tuple(sorted(models or ())))


def _progress_of(status: ImageGenerateStatusResponse) -> ImageGenerateCheckResponse:
    """The check a status answers too (the same progress fields), for the progress callback."""
    return ImageGenerateCheckResponse.model_validate(
        {name: getattr(status, name) for name in ImageGenerateCheckResponse.model_fields}
    )


def _consume_outcome(work: asyncio.Future[Any]) -> None:
    # Marks the outcome as seen, so an abandoned failure is not reported as "never retrieved".
    if not work.cancelled():
        work.exception()


async def as_is(status: F) -> F:
    return status


def _time_limit(timeout: float) -> float:
    """A request lives at most ``GENERATION_MAX_LIFE`` on the Horde; waiting longer is pointless."""
    return GENERATION_MAX_LIFE if timeout <= 0 or timeout > GENERATION_MAX_LIFE else timeout
