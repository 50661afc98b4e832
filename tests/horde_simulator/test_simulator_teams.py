"""The simulator's teams (``v2/teams``, ``v2/teams/{id}``) and modes (``v2/status/modes``) against
the real server's shapes, and the client's models reading them without losing anything.

The real answers below come from the AI Horde 5.1.5 on loopback. No team existed there (a fresh
server has none), so a team's shape is the one ``TeamDetails`` declares in the swagger
(``tests/fixtures/horde/swagger.json``) and ``Team.get_details`` fills."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    AllTeamsDetailsRequest,
    AllTeamsDetailsResponse,
    HordeModesRequest,
    HordeModesResponse,
    SingleTeamDetailsRequest,
    TeamDetailsResponse,
)
from bot.horde.consts import WORKER_TYPE
from horde_simulator import Simulator
from horde_simulator._teams import form_team

SWAGGER = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "horde" / "swagger.json").read_text()
)
REAL_TEAMS_ON_A_FRESH_SERVER: list[Any] = []
REAL_MODES = {"maintenance_mode": False, "invite_only_mode": False}
REAL_TEAM_NOT_FOUND = {
    "message": "Team with ID '00000000-0000-0000-0000-000000000000' not found.",
    "rc": "TeamNotFound",
}


def declared(definition: str) -> set[str]:
    """The properties the swagger declares for ``definition``, inherited ones too."""
    found: set[str] = set()
    for part in SWAGGER["definitions"][definition].get("allOf", [SWAGGER["definitions"][definition]]):
        if "$ref" in part:
            found |= declared(part["$ref"].rsplit("/", 1)[1])
        found |= set(part.get("properties", {}))
    return found


@pytest.fixture
def teams(horde_sim: Simulator) -> None:
    form_team(horde_sim.state, "Sim Dreamers", ["Sim Dreamer 1", "Sim Dreamer 2"])
    form_team(horde_sim.state, "Sim Scribes", ["Sim Scribe"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, sim: Simulator, path: str) -> tuple[int, Any]:
    async with http.get(sim.url(path)) as response:
        return response.status, await response.json()


async def test_modes_answer_like_the_real_server(http: aiohttp.ClientSession, horde_sim: Simulator) -> None:
    assert await get(http, horde_sim, "v2/status/modes") == (200, REAL_MODES)

    horde_sim.state.knobs.maintenance_mode = True
    status, answer = await get(http, horde_sim, "v2/status/modes")
    assert (status, answer["maintenance_mode"]) == (200, True)
    assert HordeModesResponse.model_validate(answer).maintenance_mode is True


async def test_a_fresh_simulator_has_no_team_like_a_fresh_server(
    http: aiohttp.ClientSession, horde_sim: Simulator
) -> None:
    assert await get(http, horde_sim, "v2/teams") == (200, REAL_TEAMS_ON_A_FRESH_SERVER)
    _, workers = await get(http, horde_sim, "v2/workers")
    assert {w["name"]: w["team"] for w in workers}["Sim Dreamer 1"] == {"name": None, "id": None}


@pytest.mark.usefixtures("teams")
async def test_every_team_with_its_workers_and_models(
    http: aiohttp.ClientSession, horde_sim: Simulator
) -> None:
    status, teams = await get(http, horde_sim, "v2/teams")

    assert status == 200
    assert [team["name"] for team in teams] == ["Sim Dreamers", "Sim Scribes"]
    for team in teams:
        assert set(team) == declared("TeamDetails")
        assert {key for worker in team["workers"] for key in worker} == declared("WorkerDetailsLite")
        assert {key for model in team["models"] for key in model} == declared("ActiveModelLite")
        uuid.UUID(team["id"])
    dreamers = teams[0]
    assert [(w["name"], w["type"], w["online"]) for w in dreamers["workers"]] == [
        ("Sim Dreamer 1", "image", True),
        ("Sim Dreamer 2", "image", True),
    ]
    assert dreamers["worker_count"] == 2
    assert {model["count"] for model in dreamers["models"]} == {2}
    parsed = AllTeamsDetailsResponse.model_validate(teams)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == teams


@pytest.mark.usefixtures("teams")
async def test_a_team_by_id_and_its_workers_naming_it(
    http: aiohttp.ClientSession, horde_sim: Simulator
) -> None:
    _, teams = await get(http, horde_sim, "v2/teams")
    scribes = teams[1]

    assert await get(http, horde_sim, f"v2/teams/{scribes['id']}") == (200, scribes)
    _, workers = await get(http, horde_sim, "v2/workers")
    assert {w["name"]: w["team"] for w in workers} == {
        "Sim Dreamer 1": {"name": "Sim Dreamers", "id": teams[0]["id"]},
        "Sim Dreamer 2": {"name": "Sim Dreamers", "id": teams[0]["id"]},
        "Sim Scribe": {"name": "Sim Scribes", "id": scribes["id"]},
        "Sim Alchemist": {"name": None, "id": None},  # as a real worker without a team
    }


@pytest.mark.usefixtures("teams")
async def test_an_unknown_team_is_404_as_on_the_real_server(
    http: aiohttp.ClientSession, horde_sim: Simulator
) -> None:
    assert await get(http, horde_sim, "v2/teams/00000000-0000-0000-0000-000000000000") == (
        404,
        REAL_TEAM_NOT_FOUND,
    )
    status, answer = await get(http, horde_sim, "v2/teams/not-a-uuid")
    assert (status, answer["rc"]) == (404, "TeamNotFound")


@pytest.mark.usefixtures("teams")
async def test_the_client_reads_a_team_and_the_modes(horde_sim: Simulator) -> None:
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        horde = AIHordeAPIAsyncSimpleClient(session)
        modes = await horde.call(HordeModesRequest(), HordeModesResponse)
        [dreamers, _] = (await horde.call(AllTeamsDetailsRequest(), AllTeamsDetailsResponse)).root
        assert dreamers.id_ is not None
        again = await horde.call(SingleTeamDetailsRequest(team_id=dreamers.id_), TeamDetailsResponse)
        with pytest.raises(AIHordeRequestError) as caught:
            await horde.call(SingleTeamDetailsRequest(team_id=str(uuid.UUID(int=0))), TeamDetailsResponse)

    assert (modes.maintenance_mode, modes.invite_only_mode, modes.raid_mode) == (False, False, None)
    assert again == dreamers
    assert [worker.type_ for worker in dreamers.workers] == [WORKER_TYPE.image, WORKER_TYPE.image]
    assert (caught.value.http_status, str(caught.value.rc)) == (404, "TeamNotFound")


def test_the_client_models_read_every_declared_field() -> None:
    assert declared("TeamDetails") <= {
        field.alias or name for name, field in TeamDetailsResponse.model_fields.items()
    }
    assert declared("HordeModes") == {
        field.alias or name for name, field in HordeModesResponse.model_fields.items()
    }


def test_a_team_is_formed_of_workers_that_exist(horde_sim: Simulator) -> None:
    with pytest.raises(ValueError, match="Nobody"):
        form_team(horde_sim.state, "Ghosts", ["Nobody"])
