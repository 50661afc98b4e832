"""What a request would cost, asked of the Horde with a dry run (nothing is queued or charged).

The Horde prices a request for the key that sends it (an account's kudos state does not matter,
but the anonymous key is priced like any other), so the caller passes the key it would use.
"""

from __future__ import annotations

from typing import TypeVar

from bot.horde import (
    AIHordeAPIAsyncSimpleClient,
    BaseGenerateAsyncRequest,
    ImageGenerateAsyncRequest,
    TextGenerateAsyncRequest,
)

_R = TypeVar("_R", bound=BaseGenerateAsyncRequest)


async def estimate_image_cost(
    horde: AIHordeAPIAsyncSimpleClient, request: ImageGenerateAsyncRequest, *, key: str | None = None
) -> float:
    """The kudos ``request`` would cost; raises :class:`~bot.horde.AIHordeRequestError` like a submit."""
    response = await horde.image_generate_request_dry_run(as_dry_run(request, key))
    return response.kudos


async def estimate_text_cost(
    horde: AIHordeAPIAsyncSimpleClient, request: TextGenerateAsyncRequest, *, key: str | None = None
) -> float:
    response = await horde.text_generate_request_dry_run(as_dry_run(request, key))
    return response.kudos


def as_dry_run(request: _R, key: str | None = None) -> _R:
    """``request`` with ``dry_run`` set (and ``key``, when given)."""
    if key is None:
        return request.with_fields(dry_run=True)
    return request.with_fields(dry_run=True, apikey=key)
