"""The sync trio: thin blocking wrappers that run the async clients on a private loop thread.

Each client owns one event loop in one daemon thread; every call is handed to that loop and
awaited from the calling thread. ``close()`` (also ``__exit__`` and, as a safety net, garbage
collection or interpreter exit) closes the async core (sessions cancel what is pending) and
stops the thread. A ``KeyboardInterrupt`` while waiting cancels the call, so a generation in
progress is DELETEd before the interrupt propagates.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import PIL.Image

from bot.horde._clients.download import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_IMAGE_BYTES,
    decode_base64_image,
    decode_image,
    fetch_url_bytes,
)
from bot.horde._clients.manual import AIHordeAPIAsyncManualClient
from bot.horde._clients.polling import DEFAULT_POLL_POLICY, PollPolicy
from bot.horde._clients.session import AIHordeAPIAsyncClientSession
from bot.horde._clients.simple import DEFAULT_CLEANUP_TIMEOUT, AIHordeAPIAsyncSimpleClient
from bot.horde.apimodels.alchemy import AlchemyAsyncRequest, AlchemyStatusResponse
from bot.horde.apimodels.base import HordeRequest, HordeResponse
from bot.horde.apimodels.errors import RequestErrorResponse
from bot.horde.apimodels.image import (
    ImageGenerateAsyncDryRunResponse,
    ImageGenerateAsyncRequest,
    ImageGenerateCheckResponse,
    ImageGenerateStatusResponse,
    ImageGeneration,
)
from bot.horde.apimodels.status import (
    AIHordeHeartbeatResponse,
    HordePerformanceResponse,
    HordeStatusModelsAllResponse,
    NewsResponse,
)
from bot.horde.apimodels.styles import AllStylesImageResponse, AllStylesTextResponse
from bot.horde.apimodels.text import (
    TextGenerateAsyncDryRunResponse,
    TextGenerateAsyncRequest,
    TextGenerateStatusResponse,
)
from bot.horde.apimodels.users import KudosTransferResponse, UserDetailsResponse
from bot.horde.apimodels.workers import AllWorkersDetailsResponse
from bot.horde.consts import GENERATION_MAX_LIFE, MODEL_STATE, MODEL_TYPE, STYLE_SORT, WORKER_TYPE

T = TypeVar("T")
R = TypeVar("R", bound=HordeResponse)
P = TypeVar("P", bound=HordeResponse)

_CANCEL_GRACE = 15.0
"""How long an interrupted call may take to DELETE its generation before the interrupt goes on."""
_STOP_TIMEOUT = 30.0


class _LoopThread:
    """An event loop running forever in its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._closed = False
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this client is closed")
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a sync client cannot be called from its own callbacks")
        finished = threading.Event()

        async def guarded() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                # Interrupted while waiting: cancel the call and give its cleanup time to finish.
                future.cancel()
                finished.wait(_CANCEL_GRACE)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if threading.current_thread() is self.thread:
            self.loop.call_soon(self.loop.stop)
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_STOP_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


def _shutdown(runner: _LoopThread, close_core: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        if not runner.loop.is_closed() and threading.current_thread() is not runner.thread:
            runner.run(close_core())
    finally:
        runner.close()


class _SyncClient:
    def __init__(self, close_core: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._runner = _LoopThread(f"{type(self).__name__}-loop")
        # The finalizer must not reference ``self``, or the client could never be collected.
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, close_core)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AIHordeAPIManualClient(_SyncClient):
    """Blocking :class:`AIHordeAPIAsyncManualClient`; takes the same keyword arguments."""

    def __init__(self, **client_options: Any) -> None:
        self._core = self._make_core(client_options)
        super().__init__(self._core.close)

    def _make_core(self, client_options: dict[str, Any]) -> AIHordeAPIAsyncManualClient:
        return AIHordeAPIAsyncManualClient(**client_options)

    def submit_request(
        self, request: HordeRequest, expected_response_type: type[R]
    ) -> R | RequestErrorResponse:
        return self._run(self._core.submit_request(request, expected_response_type))

    def get_generate_check(self, gen_id: str) -> ImageGenerateCheckResponse | RequestErrorResponse:
        return self._run(self._core.get_generate_check(gen_id))

    def get_generate_status(self, gen_id: str) -> ImageGenerateStatusResponse | RequestErrorResponse:
        return self._run(self._core.get_generate_status(gen_id))

    def delete_generate(self, gen_id: str) -> ImageGenerateStatusResponse | RequestErrorResponse:
        return self._run(self._core.delete_generate(gen_id))

    def get_text_status(self, gen_id: str) -> TextGenerateStatusResponse | RequestErrorResponse:
        return self._run(self._core.get_text_status(gen_id))

    def delete_text(self, gen_id: str) -> TextGenerateStatusResponse | RequestErrorResponse:
        return self._run(self._core.delete_text(gen_id))

    def get_alchemy_status(
        self, gen_id: str, *, apikey: str | None = None
    ) -> AlchemyStatusResponse | RequestErrorResponse:
        return self._run(self._core.get_alchemy_status(gen_id, apikey=apikey))

    def delete_alchemy(self, gen_id: str) -> AlchemyStatusResponse | RequestErrorResponse:
        return self._run(self._core.delete_alchemy(gen_id))


class AIHordeAPIClientSession(AIHordeAPIManualClient):
    """Blocking :class:`AIHordeAPIAsyncClientSession`: leaving the ``with`` block (or closing)
    DELETEs every generation still pending, whether or not an exception occurred."""

    _core: AIHordeAPIAsyncClientSession

    def _make_core(self, client_options: dict[str, Any]) -> AIHordeAPIAsyncClientSession:
        return AIHordeAPIAsyncClientSession(**client_options)

    @property
    def pending(self) -> tuple[str, ...]:
        return self._core.pending

    def cancel(self, gen_id: str) -> HordeResponse | RequestErrorResponse:
        return self._run(self._core.cancel(gen_id))


class AIHordeAPISimpleClient(_SyncClient):
    """Blocking :class:`AIHordeAPIAsyncSimpleClient`.

    Keyword arguments other than the simple client's own go to the client session (``base_url``,
    ``apikey``, ``client_agent``, ``retry``…). ``progress_callback`` is a plain function here;
    it runs on the client's loop thread. Stop a call with Ctrl-C: the generation is DELETEd.
    """

    def __init__(
        self,
        *,
        poll_policy: PollPolicy = DEFAULT_POLL_POLICY,
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        **session_options: Any,
    ) -> None:
        session = AIHordeAPIAsyncClientSession(**session_options)
        self._core = AIHordeAPIAsyncSimpleClient(
            session,
            poll_policy=poll_policy,
            cleanup_timeout=cleanup_timeout,
            max_image_bytes=max_image_bytes,
            download_timeout=download_timeout,
        )
        super().__init__(session.close)

    def image_generate_request(
        self,
        request: ImageGenerateAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,
        progress_callback: Callable[[ImageGenerateCheckResponse], object] | None = None,
    ) -> tuple[ImageGenerateStatusResponse, str]:
        return self._run(
            self._core.image_generate_request(
                request, timeout=timeout, progress_callback=_in_loop(progress_callback)
            )
        )

    def image_generate_request_dry_run(
        self, request: ImageGenerateAsyncRequest
    ) -> ImageGenerateAsyncDryRunResponse:
        return self._run(self._core.image_generate_request_dry_run(request))

    def text_generate_request(
        self,
        request: TextGenerateAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,
        progress_callback: Callable[[TextGenerateStatusResponse], object] | None = None,
    ) -> tuple[TextGenerateStatusResponse, str]:
        return self._run(
            self._core.text_generate_request(
                request, timeout=timeout, progress_callback=_in_loop(progress_callback)
            )
        )

    def text_generate_request_dry_run(
        self, request: TextGenerateAsyncRequest
    ) -> TextGenerateAsyncDryRunResponse:
        return self._run(self._core.text_generate_request_dry_run(request))

    def alchemy_request(
        self,
        request: AlchemyAsyncRequest,
        *,
        timeout: float = GENERATION_MAX_LIFE,
        progress_callback: Callable[[AlchemyStatusResponse], object] | None = None,
    ) -> tuple[AlchemyStatusResponse, str]:
        return self._run(
            self._core.alchemy_request(
                request, timeout=timeout, progress_callback=_in_loop(progress_callback)
            )
        )

    def download_image_from_generation(self, generation: ImageGeneration) -> PIL.Image.Image:
        image, _ = self._run(self._core.download_image_from_generation(generation))
        return image

    def download_image_bytes(self, generation: ImageGeneration) -> bytes:
        return self._run(self._core.download_image_bytes(generation))

    def download_image_from_url(self, url: str) -> PIL.Image.Image:
        return self._run(self._core.download_image_from_url(url))

    def find_user(self, apikey: str | None = None) -> UserDetailsResponse:
        return self._run(self._core.find_user(apikey))

    def get_user(self, user_id: int) -> UserDetailsResponse:
        return self._run(self._core.get_user(user_id))

    def transfer_kudos(
        self, apikey: str, username: str, amount: int, idempotency_key: str | None = None
    ) -> KudosTransferResponse:
        return self._run(self._core.transfer_kudos(apikey, username, amount, idempotency_key))

    def get_models(
        self,
        type_: MODEL_TYPE = MODEL_TYPE.image,
        *,
        min_count: int | None = None,
        max_count: int | None = None,
        model_state: MODEL_STATE | None = None,
    ) -> HordeStatusModelsAllResponse:
        return self._run(
            self._core.get_models(type_, min_count=min_count, max_count=max_count, model_state=model_state)
        )

    def heartbeat(self) -> AIHordeHeartbeatResponse:
        return self._run(self._core.heartbeat())

    def performance(self) -> HordePerformanceResponse:
        return self._run(self._core.performance())

    def news(self) -> NewsResponse:
        return self._run(self._core.news())

    def workers(
        self, type_: WORKER_TYPE | None = None, *, name: str | None = None
    ) -> AllWorkersDetailsResponse:
        return self._run(self._core.workers(type_, name=name))

    def styles(
        self,
        type_: MODEL_TYPE = MODEL_TYPE.image,
        *,
        sort: STYLE_SORT = STYLE_SORT.popular,
        page: int = 1,
        tag: str | None = None,
        model: str | None = None,
    ) -> AllStylesImageResponse | AllStylesTextResponse:
        if type_ == MODEL_TYPE.text:
            return self._run(self._core.styles(MODEL_TYPE.text, sort=sort, page=page, tag=tag, model=model))
        return self._run(self._core.styles(MODEL_TYPE.image, sort=sort, page=page, tag=tag, model=model))


def download_image_from_generation(
    generation: ImageGeneration,
    *,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
) -> PIL.Image.Image:
    """Blocking download and decode of one generated image (URL or base64)."""
    if not generation.is_url:
        return decode_image(decode_base64_image(generation, max_bytes=max_bytes))

    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as session:
            return await fetch_url_bytes(
                session, generation.img, max_bytes=max_bytes, download_timeout=download_timeout
            )

    runner = _LoopThread("horde-image-download")
    try:
        return decode_image(runner.run(fetch()))
    finally:
        runner.close()


def _in_loop(callback: Callable[[P], object] | None) -> Callable[[P], Awaitable[object]] | None:
    if callback is None:
        return None
    sync_callback = callback

    async def call(progress: P) -> object:
        return sync_callback(progress)

    return call
