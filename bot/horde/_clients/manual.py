"""The async manual client: one call, one response (or a ``RequestErrorResponse``)."""

from __future__ import annotations

from types import TracebackType
from typing import Self, TypeVar

import aiohttp

from bot.horde.apimodels.alchemy import AlchemyDeleteRequest, AlchemyStatusRequest, AlchemyStatusResponse
from bot.horde.apimodels.base import HordeRequest, HordeResponse
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
from bot.horde.consts import DEFAULT_CLIENT_AGENT
from bot.horde.ratelimit import DEFAULT_RATE_LIMITS, HordeRateLimits, RateLimiter
from bot.horde.transport import DEFAULT_RETRY_POLICY, HordeTransport, RetryPolicy

R = TypeVar("R", bound=HordeResponse)


class AIHordeAPIAsyncManualClient:
    """Sends any request and returns the parsed response or a :class:`RequestErrorResponse`.

    Nothing is cleaned up for you: a generation you submit and abandon keeps running on the
    Horde (and costs kudos) until it expires. Use :class:`AIHordeAPIAsyncClientSession` for that.
    ``transport`` lets several clients share one connection pool and one rate limiter.
    """

    def __init__(
        self,
        aiohttp_session: aiohttp.ClientSession | None = None,
        *,
        base_url: str | None = None,
        client_agent: str = DEFAULT_CLIENT_AGENT,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        apikey: str | None = None,
        rate_limits: HordeRateLimits | None = DEFAULT_RATE_LIMITS,
        rate_limiter: RateLimiter | None = None,
        request_timeout: float = 60.0,
        transport: HordeTransport | None = None,
    ) -> None:
        self.transport = transport or HordeTransport(
            aiohttp_session,
            base_url=base_url,
            client_agent=client_agent,
            retry=retry,
            apikey=apikey,
            rate_limits=rate_limits,
            rate_limiter=rate_limiter,
            request_timeout=request_timeout,
        )
        self._owns_transport = transport is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport!r})"

    async def submit_request(
        self, request: HordeRequest, expected_response_type: type[R]
    ) -> R | RequestErrorResponse:
        return await self.transport.send(request, expected_response_type)

    async def get_generate_check(self, gen_id: str) -> ImageGenerateCheckResponse | RequestErrorResponse:
        return await self.submit_request(ImageGenerateCheckRequest(id_=gen_id), ImageGenerateCheckResponse)

    async def get_generate_status(self, gen_id: str) -> ImageGenerateStatusResponse | RequestErrorResponse:
        return await self.submit_request(ImageGenerateStatusRequest(id_=gen_id), ImageGenerateStatusResponse)

    async def delete_generate(self, gen_id: str) -> ImageGenerateStatusResponse | RequestErrorResponse:
        return await self.submit_request(DeleteImageGenerateRequest(id_=gen_id), ImageGenerateStatusResponse)

    async def get_text_status(self, gen_id: str) -> TextGenerateStatusResponse | RequestErrorResponse:
        return await self.submit_request(TextGenerateStatusRequest(id_=gen_id), TextGenerateStatusResponse)

    async def delete_text(self, gen_id: str) -> TextGenerateStatusResponse | RequestErrorResponse:
        return await self.submit_request(DeleteTextGenerateRequest(id_=gen_id), TextGenerateStatusResponse)

    async def get_alchemy_status(
        self, gen_id: str, *, apikey: str | None = None
    ) -> AlchemyStatusResponse | RequestErrorResponse:
        """Alchemy status authenticates; without ``apikey`` the client's own key (or anon) is used."""
        fields = {"id": gen_id} if apikey is None else {"id": gen_id, "apikey": apikey}
        request = AlchemyStatusRequest.model_validate(fields)
        return await self.submit_request(request, AlchemyStatusResponse)

    async def delete_alchemy(self, gen_id: str) -> AlchemyStatusResponse | RequestErrorResponse:
        return await self.submit_request(AlchemyDeleteRequest(id_=gen_id), AlchemyStatusResponse)

    async def close(self) -> None:
        if self._owns_transport:
            await self.transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
