"""The async simple client: submit, poll, collect, clean up; errors are raised.

Outcomes of a generation call:

* the Horde finishes it: the final status is returned. A request that *faulted* (``done`` and
  ``faulted``) is returned too, with whatever it produced: check ``status.faulted``
  (``is_faulted``) and ``len(status.generations)``;
* ``cancel_event`` is set or ``timeout`` passes: the request is DELETEd and the DELETE's answer
  (the status with the partial results) is returned;
* the calling task is cancelled: the request is DELETEd (shielded, bounded by
  ``cleanup_timeout``) and ``CancelledError`` propagates;
* the Horde answers 404 for a known id: :class:`AIHordeRequestExpiredError`;
* a poll (or the final status fetch) fails transiently (``AIHordeRequestError.is_transient``:
  5xx, unreachable, 429, an answer that is not the Horde's): the request is polled again with
  backoff, keeping the last progress, for ``PollPolicy.error_grace_s``; a failure after that
  is treated as below;
* any other error: the request is DELETEd and :class:`AIHordeRequestError` (or whatever was
  raised, e.g. by a callback) propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Literal, Self, TypeVar, overload

import aiohttp
import PIL.Image

from bot.horde._clients.download import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_IMAGE_BYTES,
    decode_base64_image,
    decode_image_async,
    fetch_url_bytes,
)
from bot.horde._clients.follow import GenerationFollower, ProgressCallback, as_is, queue_of
from bot.horde._clients.polling import DEFAULT_POLL_POLICY, PollPolicy
from bot.horde._clients.session import AIHordeAPIAsyncClientSession, is_final_status
from bot.horde.apimodels.alchemy import (
    AlchemyAsyncRequest,
    AlchemyAsyncResponse,
    AlchemyDeleteRequest,
    AlchemyStatusRequest,
    AlchemyStatusResponse,
)
from bot.horde.apimodels.base import (
    BaseAsyncRequest,
    BaseGenerateAsyncRequest,
    HordeRequest,
    HordeResponse,
)
from bot.horde.apimodels.errors import RequestErrorResponse
from bot.horde.apimodels.image import (
    ImageGenerateAsyncDryRunResponse,
    ImageGenerateAsyncRequest,
    ImageGenerateAsyncResponse,
    ImageGenerateCheckResponse,
    ImageGenerateStatusResponse,
    ImageGeneration,
)
from bot.horde.apimodels.status import (
    AIHordeHeartbeatRequest,
    AIHordeHeartbeatResponse,
    HordePerformanceRequest,
    HordePerformanceResponse,
    HordeStatusModelsAllRequest,
    HordeStatusModelsAllResponse,
    NewsRequest,
    NewsResponse,
)
from bot.horde.apimodels.styles import (
    AllStylesImageRequest,
    AllStylesImageResponse,
    AllStylesTextRequest,
    AllStylesTextResponse,
)
from bot.horde.apimodels.text import (
    TextGenerateAsyncDryRunResponse,
    TextGenerateAsyncRequest,
    TextGenerateAsyncResponse,
    TextGenerateStatusResponse,
)
from bot.horde.apimodels.users import (
    FindUserRequest,
    KudosTransferRequest,
    KudosTransferResponse,
    SingleUserDetailsRequest,
    UserDetailsResponse,
)
from bot.horde.apimodels.workers import AllWorkersDetailsRequest, AllWorkersDetailsResponse
from bot.horde.consts import GENERATION_MAX_LIFE, MODEL_STATE, MODEL_TYPE, STYLE_SORT, WORKER_TYPE
from bot.horde.errors import AIHordeRequestError

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=HordeResponse)

OnSubmitted = Callable[[str], Awaitable[object]]

_Submitted = ImageGenerateAsyncResponse | TextGenerateAsyncResponse | AlchemyAsyncResponse

DEFAULT_CLEANUP_TIMEOUT = 10.0


class AIHordeAPIAsyncSimpleClient(GenerationFollower):
    """High-level calls over an :class:`AIHordeAPIAsyncClientSession`.

    Without ``horde_client_session`` the client makes its own (on ``aiohttp_session`` when
    given); close it with ``async with`` or :meth:`close`, which also cancels what is pending.
    Image downloads use ``aiohttp_session`` when given, else the session's own connection pool.
    Generations are followed by the session's :class:`PollScheduler` (one task for all of them),
    with the delays of ``poll_policy``.
    """

    def __init__(
        self,
        horde_client_session: AIHordeAPIAsyncClientSession | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
        *,
        poll_policy: PollPolicy = DEFAULT_POLL_POLICY,
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    ) -> None:
        self._owns_session = horde_client_session is None
        self.horde_client_session = horde_client_session or AIHordeAPIAsyncClientSession(aiohttp_session)
        self._aiohttp_session = aiohttp_session
        self.poll_policy = poll_policy
        self.cleanup_timeout = cleanup_timeout
        self.max_image_bytes = max_image_bytes
        self.download_timeout = download_timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.horde_client_session!r})"

    async def close(self) -> None:
        """Cancel what is pending and close the session, if this client made it."""
        if self._owns_session:
            await self.horde_client_session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- any request ---------------------------------------------------------------------

    async def call(self, request: HordeRequest, expected_response_type: type[R]) -> R:
        """Send one request; raise :class:`AIHordeRequestError` instead of returning an error."""
        response = await self.horde_client_session.submit_request(request, expected_response_type)
        if isinstance(response, RequestErrorResponse):
            raise AIHordeRequestError(response)
        return response

    # -- images --------------------------------------------------------------------------

    async def image_generate_request(
        self,
        request: ImageGenerateAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[ImageGenerateCheckResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> tuple[ImageGenerateStatusResponse, str]:
        _refuse_dry_run(request, "image_generate_request_dry_run")
        gen_id = await self._submit(request, ImageGenerateAsyncResponse, on_submitted)
        status = await self._poll_image(
            gen_id,
            n=request.get_number_of_results_expected(),
            queue_key=queue_of("image", request.models),
            after_submit=True,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )
        return status, gen_id

    async def poll_image_request(
        self,
        gen_id: str,
        *,
        n: int = 1,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[ImageGenerateCheckResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
    ) -> ImageGenerateStatusResponse:
        """Follow a submitted image request (also one submitted before a restart) to its end.

        Polls the cheap ``check`` endpoint and fetches the rate-limited ``status`` once, at the
        end: a poll the countdown says finds the request done fetches the status straight away.
        """
        return await self._poll_image(
            gen_id,
            n=n,
            queue_key=queue_of("image", None),
            after_submit=False,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )

    async def image_generate_request_dry_run(
        self, request: ImageGenerateAsyncRequest
    ) -> ImageGenerateAsyncDryRunResponse:
        """The kudos cost; nothing is queued. The request must have ``dry_run=True``."""
        _require_dry_run(request)
        return await self.call(request, ImageGenerateAsyncDryRunResponse)

    # -- text ----------------------------------------------------------------------------

    async def text_generate_request(
        self,
        request: TextGenerateAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[TextGenerateStatusResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> tuple[TextGenerateStatusResponse, str]:
        _refuse_dry_run(request, "text_generate_request_dry_run")
        gen_id = await self._submit(request, TextGenerateAsyncResponse, on_submitted)
        status = await self._poll_text(
            gen_id,
            n=request.get_number_of_results_expected(),
            queue_key=queue_of("text", request.models),
            after_submit=True,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )
        return status, gen_id

    async def poll_text_request(
        self,
        gen_id: str,
        *,
        n: int = 1,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[TextGenerateStatusResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
    ) -> TextGenerateStatusResponse:
        """Follow a text request until all ``n`` generations are in (text has no ``check``)."""
        return await self._poll_text(
            gen_id,
            n=n,
            queue_key=queue_of("text", None),
            after_submit=False,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )

    async def text_generate_request_dry_run(
        self, request: TextGenerateAsyncRequest
    ) -> TextGenerateAsyncDryRunResponse:
        _require_dry_run(request)
        return await self.call(request, TextGenerateAsyncDryRunResponse)

    # -- alchemy -------------------------------------------------------------------------

    async def alchemy_request(
        self,
        request: AlchemyAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[AlchemyStatusResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> tuple[AlchemyStatusResponse, str]:
        gen_id = await self._submit(request, AlchemyAsyncResponse, on_submitted)
        status = await self.poll_alchemy_request(
            gen_id,
            # An unset key means the session's default key was used, so the status uses it too.
            apikey=request.apikey if "apikey" in request.model_fields_set else None,
            n=request.get_number_of_results_expected(),
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )
        return status, gen_id

    async def poll_alchemy_request(
        self,
        gen_id: str,
        *,
        apikey: str | None = None,
        n: int = 1,
        timeout: float = GENERATION_MAX_LIFE,  # noqa: ASYNC109 - ends in a DELETE and partial results
        progress_callback: ProgressCallback[AlchemyStatusResponse] | None = None,
        cancel_event: asyncio.Event | None = None,
    ) -> AlchemyStatusResponse:
        """Follow an alchemy request; its status takes the key it was submitted with."""
        fields = {"id": gen_id} if apikey is None else {"id": gen_id, "apikey": apikey}
        status_request = AlchemyStatusRequest.model_validate(fields)
        return await self._follow(
            gen_id,
            poll=lambda: self._call_known(status_request, AlchemyStatusResponse, gen_id),
            what="AlchemyStatusRequest",
            is_final=lambda status: is_final_status(status, n),
            next_delay=lambda _: self.poll_policy.next_delay(None),
            first_delay=0.0,
            collect=as_is,
            cleanup=AlchemyDeleteRequest,
            cleanup_type=AlchemyStatusResponse,
            timeout=timeout,
            progress_callback=progress_callback,
            cancel_event=cancel_event,
        )

    # -- images as files -----------------------------------------------------------------

    async def download_image_bytes(self, generation: ImageGeneration) -> bytes:
        """The image file as the worker made it (webp), for re-posting without re-encoding."""
        if not generation.is_url:
            return decode_base64_image(generation, max_bytes=self.max_image_bytes)
        return await self._fetch(generation.img)

    async def download_image_from_generation(
        self, generation: ImageGeneration
    ) -> tuple[PIL.Image.Image, str]:
        return await decode_image_async(await self.download_image_bytes(generation)), generation.id_

    async def download_image_from_url(self, url: str) -> PIL.Image.Image:
        return await decode_image_async(await self._fetch(url))

    # -- users, kudos and information ----------------------------------------------------

    async def find_user(self, apikey: str | None = None) -> UserDetailsResponse:
        """The user owning ``apikey`` (default: the session's key, else anonymous)."""
        request = FindUserRequest() if apikey is None else FindUserRequest(apikey=apikey)
        return await self.call(request, UserDetailsResponse)

    async def get_user(self, user_id: int) -> UserDetailsResponse:
        return await self.call(SingleUserDetailsRequest(user_id=user_id), UserDetailsResponse)

    async def transfer_kudos(
        self, apikey: str, username: str, amount: int, idempotency_key: str | None = None
    ) -> KudosTransferResponse:
        """Give ``amount`` kudos to ``username`` (``alias#id``); with ``idempotency_key`` a retry
        after a lost answer is applied once, so it is retried like any idempotent request."""
        request = KudosTransferRequest(
            apikey=apikey, username=username, amount=amount, idempotency_key=idempotency_key
        )
        return await self.call(request, KudosTransferResponse)

    async def get_models(
        self,
        type_: MODEL_TYPE = MODEL_TYPE.image,
        *,
        min_count: int | None = None,
        max_count: int | None = None,
        model_state: MODEL_STATE | None = None,
    ) -> HordeStatusModelsAllResponse:
        request = HordeStatusModelsAllRequest(
            type_=type_, min_count=min_count, max_count=max_count, model_state=model_state
        )
        return await self.call(request, HordeStatusModelsAllResponse)

    async def heartbeat(self) -> AIHordeHeartbeatResponse:
        return await self.call(AIHordeHeartbeatRequest(), AIHordeHeartbeatResponse)

    async def performance(self) -> HordePerformanceResponse:
        return await self.call(HordePerformanceRequest(), HordePerformanceResponse)

    async def news(self) -> NewsResponse:
        return await self.call(NewsRequest(), NewsResponse)

    async def workers(
        self, type_: WORKER_TYPE | None = None, *, name: str | None = None
    ) -> AllWorkersDetailsResponse:
        return await self.call(AllWorkersDetailsRequest(type_=type_, name=name), AllWorkersDetailsResponse)

    @overload
    async def styles(
        self,
        type_: Literal[MODEL_TYPE.image] = ...,
        *,
        sort: STYLE_SORT = ...,
        page: int = ...,
        tag: str | None = ...,
        model: str | None = ...,
    ) -> AllStylesImageResponse: ...

    @overload
    async def styles(
        self,
        type_: Literal[MODEL_TYPE.text],
        *,
        sort: STYLE_SORT = ...,
        page: int = ...,
        tag: str | None = ...,
        model: str | None = ...,
    ) -> AllStylesTextResponse: ...

    async def styles(
        self,
        type_: MODEL_TYPE = MODEL_TYPE.image,
        *,
        sort: STYLE_SORT = STYLE_SORT.popular,
        page: int = 1,
        tag: str | None = None,
        model: str | None = None,
    ) -> AllStylesImageResponse | AllStylesTextResponse:
        """One page (25) of public styles."""
        if type_ == MODEL_TYPE.text:
            text = AllStylesTextRequest(sort=sort, page=page, tag=tag, model=model)
            return await self.call(text, AllStylesTextResponse)
        image = AllStylesImageRequest(sort=sort, page=page, tag=tag, model=model)
        return await self.call(image, AllStylesImageResponse)

    # -- internals -----------------------------------------------------------------------

    async def _fetch(self, url: str) -> bytes:
        session = self._aiohttp_session or await self.horde_client_session.transport.get_session()
        return await fetch_url_bytes(
            session, url, max_bytes=self.max_image_bytes, download_timeout=self.download_timeout
        )

    async def _submit(
        self,
        request: BaseAsyncRequest,
        expected: type[_Submitted],
        on_submitted: OnSubmitted | None,
    ) -> str:
        submission: asyncio.Future[_Submitted] = asyncio.ensure_future(self.call(request, expected))
        try:
            response = await asyncio.shield(submission)
        except asyncio.CancelledError:
            # The Horde may accept the request anyway: learn its id, so it can be cancelled too.
            await self._abandon(submission, request)
            raise
        gen_id = response.id_
        if on_submitted is not None:
            try:
                await on_submitted(gen_id)
            except BaseException:
                await self._cleanup_quietly(request.build_cleanup_request(gen_id))
                raise
        return gen_id

    async def _abandon(self, submission: asyncio.Future[_Submitted], request: BaseAsyncRequest) -> None:
        response = await self._bounded(submission, "a cancelled submission")
        if isinstance(
            response, ImageGenerateAsyncResponse | TextGenerateAsyncResponse | AlchemyAsyncResponse
        ):
            await self._cleanup_quietly(request.build_cleanup_request(response.id_))


def _refuse_dry_run(request: BaseGenerateAsyncRequest, method: str) -> None:
    if request.dry_run:
        raise ValueError(f"this request has dry_run=True: use {method}() to get its price")


def _require_dry_run(request: BaseGenerateAsyncRequest) -> None:
    if not request.dry_run:
        raise ValueError("a dry run needs a request with dry_run=True (otherwise it would be queued)")
