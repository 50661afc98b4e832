"""Teams of workers: ``v2/teams`` and ``v2/teams/{team_id}``.

Both answer ``TeamDetails`` (``skip_none``): the list has every team's full details, so finding a
team by name needs no second request. There is no lookup by name on the server.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field

from bot.horde.apimodels.base import HordeRequest, HordeResponse, HordeRootResponse, ResponseList, enum_or_raw
from bot.horde.apimodels.workers import TeamDetailsLite
from bot.horde.consts import WORKER_TYPE


class WorkerDetailsLite(HordeResponse):
    """A team's worker: who it is, not what it does."""

    name: str | None = None
    id_: str | None = Field(default=None, alias="id")
    type_: Annotated[WORKER_TYPE | str | None, BeforeValidator(enum_or_raw(WORKER_TYPE))] = Field(
        default=None, alias="type"
    )
    online: bool | None = None


class ActiveModelLite(HordeResponse):
    name: str | None = None
    count: int | None = None
    """How many of the team's workers serve it."""


class TeamDetailsResponse(TeamDetailsLite):
    """``TeamDetails``. Totals count what the workers did while in the team."""

    info: str | None = None
    requests_fulfilled: int | None = None
    kudos: float | None = None
    uptime: int | None = None
    """Seconds, summed over the team's workers."""
    creator: str | None = None
    worker_count: int | None = None
    workers: ResponseList[WorkerDetailsLite] = Field(default_factory=list)
    models: ResponseList[ActiveModelLite] = Field(default_factory=list)


class AllTeamsDetailsResponse(HordeRootResponse[list[TeamDetailsResponse]]):
    pass


class AllTeamsDetailsRequest(HordeRequest):
    """Cached 10 s on the server."""

    path: ClassVar[str] = "v2/teams"

    @classmethod
    def get_default_success_response_type(cls) -> type[AllTeamsDetailsResponse]:
        return AllTeamsDetailsResponse


class SingleTeamDetailsRequest(HordeRequest):
    """An unknown id, or one that is not a UUID, is 404 ``TeamNotFound``."""

    path: ClassVar[str] = "v2/teams/{team_id}"
    path_fields: ClassVar[tuple[str, ...]] = ("team_id",)

    team_id: str = Field(min_length=1)

    @classmethod
    def get_default_success_response_type(cls) -> type[TeamDetailsResponse]:
        return TeamDetailsResponse
