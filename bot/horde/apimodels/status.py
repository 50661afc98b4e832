"""Horde-wide information: ``v2/status/models``, ``heartbeat``, ``modes``, ``performance`` and ``news``."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field, model_validator

from bot.horde.apimodels.base import HordeRequest, HordeResponse, HordeRootResponse, ResponseList, enum_or_raw
from bot.horde.consts import MODEL_STATE, MODEL_TYPE


class ActiveModel(HordeResponse):
    name: str
    count: int | None = None
    """Workers serving this model."""
    performance: float | None = None
    queued: float | None = None
    jobs: float | None = None
    eta: int | None = None
    type_: Annotated[MODEL_TYPE | str | None, BeforeValidator(enum_or_raw(MODEL_TYPE))] = Field(
        default=None, alias="type"
    )


class HordeStatusModelsAllResponse(HordeRootResponse[list[ActiveModel]]):
    pass


class HordeStatusModelsSingleResponse(HordeRootResponse[list[ActiveModel]]):
    pass


class HordeStatusModelsAllRequest(HordeRequest):
    """The models workers serve right now. ``type_`` defaults to image, as on the server."""

    path: ClassVar[str] = "v2/status/models"
    query_fields: ClassVar[tuple[str, ...]] = ("type_", "min_count", "max_count", "model_state")

    type_: MODEL_TYPE = Field(default=MODEL_TYPE.image, alias="type")
    min_count: int | None = Field(default=None, ge=0)
    max_count: int | None = Field(default=None, ge=0)
    model_state: MODEL_STATE | None = None

    @model_validator(mode="after")
    def _count_range(self) -> HordeStatusModelsAllRequest:
        if self.min_count is not None and self.max_count is not None and self.min_count > self.max_count:
            raise ValueError("min_count must not exceed max_count")
        return self

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeStatusModelsAllResponse]:
        return HordeStatusModelsAllResponse


class HordeStatusModelsSingleRequest(HordeRequest):
    path: ClassVar[str] = "v2/status/models/{model_name}"
    path_fields: ClassVar[tuple[str, ...]] = ("model_name",)

    model_name: str = Field(min_length=1)

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeStatusModelsSingleResponse]:
        return HordeStatusModelsSingleResponse


class AIHordeHeartbeatResponse(HordeResponse):
    message: str
    """``OK``, ``DOWN`` or ``OVERLOADED``."""
    version: str
    queue: int | None = None
    threads: int | None = None
    active_count: int | None = None
    db_connection: bool | None = None


class AIHordeHeartbeatRequest(HordeRequest):
    """Never rate-limited."""

    path: ClassVar[str] = "v2/status/heartbeat"

    @classmethod
    def get_default_success_response_type(cls) -> type[AIHordeHeartbeatResponse]:
        return AIHordeHeartbeatResponse


class HordeModesResponse(HordeResponse):
    """``HordeModes``. Without a moderator's key the server leaves out ``raid_mode``."""

    maintenance_mode: bool | None = None
    """The Horde accepts no new generations; those queued are finished."""
    invite_only_mode: bool | None = None
    """Only workers the Horde's moderators invited may join."""
    raid_mode: bool | None = None


class HordeModesRequest(HordeRequest):
    """Cached 50 s on the server."""

    path: ClassVar[str] = "v2/status/modes"

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeModesResponse]:
        return HordeModesResponse


class HordePerformanceResponse(HordeResponse):
    queued_requests: int | None = None
    queued_text_requests: int | None = None
    worker_count: int | None = None
    text_worker_count: int | None = None
    thread_count: int | None = None
    text_thread_count: int | None = None
    queued_megapixelsteps: float | None = None
    past_minute_megapixelsteps: float | None = None
    queued_forms: float | None = None
    interrogator_count: int | None = None
    interrogator_thread_count: int | None = None
    queued_tokens: float | None = None
    past_minute_tokens: float | None = None


class HordePerformanceRequest(HordeRequest):
    path: ClassVar[str] = "v2/status/performance"

    @classmethod
    def get_default_success_response_type(cls) -> type[HordePerformanceResponse]:
        return HordePerformanceResponse


class Newspiece(HordeResponse):
    date_published: str | None = None
    newspiece: str | None = None
    importance: str | None = None
    tags: ResponseList[str] = Field(default_factory=list)
    title: str | None = None
    more_info_urls: ResponseList[str] = Field(default_factory=list)


class NewsResponse(HordeRootResponse[list[Newspiece]]):
    pass


class NewsRequest(HordeRequest):
    path: ClassVar[str] = "v2/status/news"

    @classmethod
    def get_default_success_response_type(cls) -> type[NewsResponse]:
        return NewsResponse
