"""What /horde status, modes and news, /models and /styles show: the Horde's health, load, modes,
news, models and styles."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bot.horde import (
    ActiveModel,
    AIHordeAPIAsyncSimpleClient,
    AIHordeHeartbeatResponse,
    BaseStyleResponse,
    HordeModesRequest,
    HordeModesResponse,
    HordePerformanceResponse,
    Newspiece,
)
from bot.horde.consts import MODEL_TYPE, STYLE_SORT
from bot.services.paging import Page, paginate

MODELS_PAGE_SIZE: Final = 10
STYLES_PAGE_SIZE: Final = 25
"""The Horde serves styles 25 to a page."""


@dataclass(frozen=True, slots=True)
class HordeStatus:
    heartbeat: AIHordeHeartbeatResponse
    performance: HordePerformanceResponse

    @property
    def healthy(self) -> bool:
        return self.heartbeat.message == "OK"


async def horde_status(horde: AIHordeAPIAsyncSimpleClient) -> HordeStatus:
    """The heartbeat and the performance figures, fetched together; raises ``AIHordeRequestError``."""
    async with asyncio.TaskGroup() as group:
        heartbeat = group.create_task(horde.heartbeat())
        performance = group.create_task(horde.performance())
    return HordeStatus(heartbeat=heartbeat.result(), performance=performance.result())


class ModelSort(StrEnum):
    workers = "workers"
    queue = "queue"


def sort_models(models: Sequence[ActiveModel], sort: ModelSort) -> list[ActiveModel]:
    """Busiest first by ``sort`` (workers, or queued work), then by name."""

    def key(model: ActiveModel) -> tuple[float, float, str]:
        workers, queued = float(model.count or 0), float(model.queued or 0)
        first, second = (workers, queued) if sort is ModelSort.workers else (queued, workers)
        return (-first, -second, model.name.casefold())

    return sorted(models, key=key)


def models_page(
    models: Sequence[ActiveModel], *, sort: ModelSort, page: int, page_size: int = MODELS_PAGE_SIZE
) -> Page[ActiveModel]:
    return paginate(sort_models(models, sort), page=page, page_size=page_size)


async def fetch_models(horde: AIHordeAPIAsyncSimpleClient, type_: MODEL_TYPE) -> tuple[ActiveModel, ...]:
    return tuple((await horde.get_models(type_)).root)


async def fetch_styles(
    horde: AIHordeAPIAsyncSimpleClient, type_: MODEL_TYPE, *, page: int = 1
) -> tuple[BaseStyleResponse, ...]:
    """One page of public styles, most used first."""
    if type_ == MODEL_TYPE.text:
        return tuple((await horde.styles(MODEL_TYPE.text, sort=STYLE_SORT.popular, page=page)).root)
    return tuple((await horde.styles(MODEL_TYPE.image, sort=STYLE_SORT.popular, page=page)).root)


async def horde_modes(horde: AIHordeAPIAsyncSimpleClient) -> HordeModesResponse:
    """Whether the Horde is in maintenance or invite-only mode; raises ``AIHordeRequestError``."""
    return await horde.call(HordeModesRequest(), HordeModesResponse)


async def fetch_news(horde: AIHordeAPIAsyncSimpleClient) -> tuple[Newspiece, ...]:
    """The Horde's news, newest first (pieces without a date last, in the Horde's order)."""
    news = (await horde.news()).root
    return tuple(sorted(news, key=lambda piece: piece.date_published or "", reverse=True))
