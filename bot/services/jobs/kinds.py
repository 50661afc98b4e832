"""The seam between the engine and the kinds of job it is handed (``bot.services.kinds``).

The engine journals, owns the task, routes cancellation and talks to the listener. A kind only
submits (or resumes), follows the request through the Horde client and collects its results,
reporting through the :class:`JobContext` it is given. Adding a kind means writing a
:class:`JobKindHandler` and handing it to the engine; the engine does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bot.horde import (
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    AIHordeRequestExpiredError,
    BaseAsyncRequest,
    BaseGenerationProgressResponse,
    RequestErrorResponse,
)
from bot.services.jobs.models import DeliveredImage
from bot.storage import JobKind


class JobContext(Protocol):
    """What the core gives a kind for one job."""

    @property
    def job_id(self) -> str: ...

    @property
    def horde_id(self) -> str | None:
        """The Horde's id once journalled (always set for a resumed job)."""
        ...

    @property
    def n(self) -> int:
        """How many results the request asked for."""
        ...

    @property
    def horde(self) -> AIHordeAPIAsyncSimpleClient: ...

    @property
    def cancel_event(self) -> asyncio.Event: ...

    @property
    def timeout_s(self) -> float: ...

    async def submitted(self, horde_id: str) -> None:
        """Journal the id; pass as the client's ``on_submitted``."""
        ...

    async def progress(self, response: BaseGenerationProgressResponse) -> None:
        """Report one poll to the listener."""
        ...

    async def deliver_images(self, images: Sequence[DeliveredImage]) -> None:
        """Hand newly finished images to the listener (each image once)."""
        ...


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How the Horde left the request: ``complete`` when every expected result came back."""

    complete: bool
    faulted: bool
    kudos: float


class JobRun(Protocol):
    """One job's kind-specific work. Its accessors are valid at any time, also after ``run``
    raised, so a failed or cancelled job still reports what it delivered."""

    async def run(self) -> RunEnd: ...

    @property
    def images(self) -> Sequence[DeliveredImage]: ...

    @property
    def received(self) -> int:
        """Results the Horde returned so far (delivered or not)."""
        ...

    @property
    def lost(self) -> int:
        """Results the Horde returned that could not be downloaded."""
        ...

    def notes(self) -> tuple[str, ...]: ...

    async def recover(self) -> Sequence[DeliveredImage]:
        """The images of a job that already ended, fetched again by its Horde id (for showing its
        end after a restart); raises what the client raised (``AIHordeRequestExpiredError``: the
        Horde no longer keeps it)."""
        ...

    def result_json(self) -> dict[str, Any]:
        """The journal's ``result_json``: ids, seeds, models, workers, flags, never bytes."""
        ...


class JobKindHandler(Protocol):
    """A kind of job: how to submit its request, what to journal of it, how to resume it."""

    @property
    def kind(self) -> JobKind: ...

    @property
    def request_type(self) -> type[BaseAsyncRequest]:
        """The request this kind submits; the engine refuses any other."""
        ...

    def journal_body(self, request: BaseAsyncRequest) -> Any:
        """What the journal keeps of the request (its wire body; never the key, a header)."""
        ...

    def expected_results(self, request_body: Mapping[str, Any]) -> int:
        """How many results a journalled request (its wire body) asked for."""
        ...

    def submit(self, ctx: JobContext, request: BaseAsyncRequest) -> JobRun:
        """Send ``request`` (of :attr:`request_type`, with its key) and follow it."""
        ...

    def resume(self, ctx: JobContext) -> JobRun:
        """Follow ``ctx.horde_id`` again, without submitting anything."""
        ...


_Expected = TypeVar("_Expected", bound=BaseAsyncRequest)


def expect(request: BaseAsyncRequest, request_type: type[_Expected]) -> _Expected:
    """``request`` as the kind's own request type; a ``TypeError`` for any other."""
    if not isinstance(request, request_type):
        raise TypeError(f"expected a {request_type.__name__}, not a {type(request).__name__}")
    return request


def params_n(request_body: Mapping[str, Any]) -> int:
    """``params.n`` of a journalled image or text request (1 when absent or not a count)."""
    params = request_body.get("params")
    n = params.get("n", 1) if isinstance(params, Mapping) else 1
    return n if isinstance(n, int) and n >= 1 else 1


def error_of(response: RequestErrorResponse) -> AIHordeRequestError:
    """The client layer's exception for an error answer (a 404: the Horde no longer knows it)."""
    if response.http_status == 404:
        return AIHordeRequestExpiredError(response)
    return AIHordeRequestError(response)


def known_horde_id(ctx: JobContext) -> str:
    """The Horde id of a job being resumed; only a submitted job is ever resumed."""
    if ctx.horde_id is None:
        raise RuntimeError(f"job {ctx.job_id} has no Horde id yet")
    return ctx.horde_id


_Request_contra = TypeVar("_Request_contra", contravariant=True)
_Status_co = TypeVar("_Status_co", covariant=True)
_Progress_co = TypeVar("_Progress_co", covariant=True)
_Status = TypeVar("_Status")
_Progress = TypeVar("_Progress")
_Request = TypeVar("_Request")


class SubmitCall(Protocol[_Request_contra, _Progress_co, _Status_co]):
    """A client call that submits a request and follows it (``image_generate_request``…)."""

    def __call__(
        self,
        request: _Request_contra,
        /,
        *,
        timeout: float,
        progress_callback: Callable[[_Progress_co], Awaitable[object]] | None,
        cancel_event: asyncio.Event | None,
        on_submitted: Callable[[str], Awaitable[object]] | None,
    ) -> Awaitable[tuple[_Status_co, str]]: ...


class ResumeCall(Protocol[_Progress_co, _Status_co]):
    """A client call that follows a submitted request by its id (``poll_image_request``…)."""

    def __call__(
        self,
        gen_id: str,
        /,
        *,
        n: int,
        timeout: float,
        progress_callback: Callable[[_Progress_co], Awaitable[object]] | None,
        cancel_event: asyncio.Event | None,
    ) -> Awaitable[_Status_co]: ...


async def submit_or_resume(
    ctx: JobContext,
    request: _Request | None,
    *,
    submit: SubmitCall[_Request, _Progress, _Status],
    resume: ResumeCall[_Progress, _Status],
    on_progress: Callable[[_Progress], Awaitable[object]],
) -> _Status:
    """Submit ``request`` and follow it, or, without one, follow ``ctx.horde_id`` again; either
    way with the job's time limit and cancel event, reporting each poll to ``on_progress``.
    Returns the final status (or the DELETE's answer, with the partial results)."""
    if request is not None:
        status, _ = await submit(
            request,
            timeout=ctx.timeout_s,
            progress_callback=on_progress,
            cancel_event=ctx.cancel_event,
            on_submitted=ctx.submitted,
        )
        return status
    return await resume(
        known_horde_id(ctx),
        n=ctx.n,
        timeout=ctx.timeout_s,
        progress_callback=on_progress,
        cancel_event=ctx.cancel_event,
    )
