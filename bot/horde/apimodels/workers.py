"""Workers: ``v2/workers``, ``v2/workers/{worker_id}``, ``v2/workers/name/{worker_name}``."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field

from bot.horde.apimodels.base import HordeRequest, HordeResponse, HordeRootResponse, ResponseList, enum_or_raw
from bot.horde.consts import WORKER_TYPE


class WorkerKudosDetails(HordeResponse):
    generated: float | None = None
    uptime: float | None = None


class TeamDetailsLite(HordeResponse):
    name: str | None = None
    id_: str | None = Field(default=None, alias="id")


class WorkerDetailsResponse(HordeResponse):
    """``WorkerDetails``; which fields appear depends on the worker's type and the asker's rights."""

    id_: str = Field(alias="id")
    name: str
    type_: Annotated[WORKER_TYPE | str | None, BeforeValidator(enum_or_raw(WORKER_TYPE))] = Field(
        default=None, alias="type"
    )
    online: bool | None = None
    requests_fulfilled: int | None = None
    kudos_rewards: float | None = None
    kudos_details: WorkerKudosDetails | None = None
    performance: str | None = None
    threads: int | None = None
    uptime: int | None = None
    maintenance_mode: bool | None = None
    paused: bool | None = None
    info: str | None = None
    nsfw: bool | None = None
    owner: str | None = None
    trusted: bool | None = None
    flagged: bool | None = None
    suspicious: int | None = None
    uncompleted_jobs: int | None = None
    models: ResponseList[str] = Field(default_factory=list)
    forms: ResponseList[str] = Field(default_factory=list)
    team: TeamDetailsLite | None = None
    bridge_agent: str | None = None
    max_pixels: int | None = None
    megapixelsteps_generated: float | None = None
    img2img: bool | None = None
    painting: bool | None = None
    post_processing: bool | None = Field(default=None, alias="post-processing")
    lora: bool | None = None
    controlnet: bool | None = None
    sdxl_controlnet: bool | None = None
    max_length: int | None = None
    max_context_length: int | None = None
    tokens_generated: float | None = None


class AllWorkersDetailsResponse(HordeRootResponse[list[WorkerDetailsResponse]]):
    pass


class AllWorkersDetailsRequest(HordeRequest):
    path: ClassVar[str] = "v2/workers"
    query_fields: ClassVar[tuple[str, ...]] = ("type_", "name")

    type_: WORKER_TYPE | None = Field(default=None, alias="type")
    name: str | None = Field(default=None, min_length=1)
    """Case-insensitive exact name."""

    @classmethod
    def get_default_success_response_type(cls) -> type[AllWorkersDetailsResponse]:
        return AllWorkersDetailsResponse


class SingleWorkerDetailsRequest(HordeRequest):
    path: ClassVar[str] = "v2/workers/{worker_id}"
    path_fields: ClassVar[tuple[str, ...]] = ("worker_id",)

    worker_id: str = Field(min_length=1)

    @classmethod
    def get_default_success_response_type(cls) -> type[WorkerDetailsResponse]:
        return WorkerDetailsResponse


class SingleWorkerNameDetailsRequest(HordeRequest):
    path: ClassVar[str] = "v2/workers/name/{worker_name}"
    path_fields: ClassVar[tuple[str, ...]] = ("worker_name",)

    worker_name: str = Field(min_length=1)

    @classmethod
    def get_default_success_response_type(cls) -> type[WorkerDetailsResponse]:
        return WorkerDetailsResponse
