"""What /horde status, /models and /styles show: the Horde's health, load, models and styles."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bot.horde import (
    ActiveModel,
    AIHordeAPIAsyncSimpleClient,
    AIHordeHeartbeatResponse,
    BaseStyleResponse,
    HordePerformanceResponse,
)
from bot.horde.consts import MODEL_TYPE, STYLE_SORT

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


@dataclass(frozen=True, slots=True)
class ModelsPage:
    models: tuple[ActiveModel, ...]
    page: int
    """Zero-based, clamped to the pages there are."""
    pages: int
    total: int
    sort: ModelSort

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages


def sort_models(models: Sequence[ActiveModel], sort: ModelSort) -> list[ActiveModel]:
    """Busiest first by ``sort`` (workers, or queued work), then by name."""

    def key(model: ActiveModel) -> tuple[float, float, str]:
        workers, queued = float(model.count or 0), float(model.queued or 0)
        first, second = (workers, queued) if sort is ModelSort.workers else (queued, workers)
        return (-first, -second, model.name.casefold())

    return sorted(models, key=key)


def models_page(
    models: Sequence[ActiveModel], *, sort: ModelSort, page: int, page_size: int = MODELS_PAGE_SIZE
) -> ModelsPage:
    ordered = sort_models(models, sort)
    pages = max(1, math.ceil(len(ordered) / page_size))
    page = min(max(0, page), pages - 1)
    start = page * page_size
    return ModelsPage(
        models=tuple(ordered[start : start + page_size]),
        page=page,
        pages=pages,
        total=len(ordered),
        sort=sort,
    )


async def fetch_models(horde: AIHordeAPIAsyncSimpleClient, type_: MODEL_TYPE) -> tuple[ActiveModel, ...]:
    return tuple((await horde.get_models(type_)).root)


async def fetch_styles(
    horde: AIHordeAPIAsyncSimpleClient, type_: MODEL_TYPE, *, page: int = 1
) -> tuple[BaseStyleResponse, ...]:
    """One page of public styles, most used first."""
    if type_ == MODEL_TYPE.text:
        return tuple((await horde.styles(MODEL_TYPE.text, sort=STYLE_SORT.popular, page=page)).root)
    return tuple((await horde.styles(MODEL_TYPE.image, sort=STYLE_SORT.popular, page=page)).root)
