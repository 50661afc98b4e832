"""Finding workers and teams by kind and name, against the AI Horde simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.errors import UserInputError
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.horde.consts import WORKER_TYPE
from bot.services.horde_workers import find_team, find_workers, list_teams, match_name
from horde_simulator import Simulator
from horde_simulator._teams import form_team


@pytest.fixture
async def horde(horde_sim: Simulator) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        yield AIHordeAPIAsyncSimpleClient(session)


NAMES = ["Dreamer", "Dreamer 2", "Scribe", "scribe-bot", "Other"]


@pytest.mark.parametrize(
    ("typed", "found", "candidates"),
    [
        ("dreamer", "Dreamer", []),  # the exact name wins over the longer one containing it
        ("  SCRIBE ", "Scribe", []),
        ("2", "Dreamer 2", []),  # the only one containing it
        ("e", None, ["Dreamer", "Dreamer 2", "Scribe", "scribe-bot", "Other"]),
        ("crib", None, ["Scribe", "scribe-bot"]),
        ("zzz", None, []),
        ("", None, []),
    ],
)
def test_a_typed_name_points_at_one_or_lists_candidates(
    typed: str, found: str | None, candidates: list[str]
) -> None:
    match = match_name(NAMES, typed, lambda name: name)
    assert (match.found, list(match.candidates)) == (found, candidates)


def test_two_items_with_the_same_name_in_any_case_are_both_candidates() -> None:
    match = match_name(["Twin", "twin"], "TWIN", lambda name: name)
    assert (match.found, match.candidates) == (None, ("Twin", "twin"))


async def test_workers_by_kind_and_name(horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator) -> None:
    everyone = await find_workers(horde)
    images = await find_workers(horde, WORKER_TYPE.image)
    one = await find_workers(horde, WORKER_TYPE.image, "dreamer 2")
    several = await find_workers(horde, None, "sim")

    assert [w.name for w in everyone.workers] == [
        "Sim Alchemist",
        "Sim Dreamer 1",
        "Sim Dreamer 2",
        "Sim Scribe",
    ]
    assert [w.name for w in images.workers] == ["Sim Dreamer 1", "Sim Dreamer 2"]
    assert one.found is not None
    assert one.found.name == "Sim Dreamer 2"
    assert several.found is None
    assert len(several.workers) == 4
    assert horde_sim.counters.calls("workers") == 4  # one request each


async def test_an_unknown_worker_name_is_the_members_mistake(horde: AIHordeAPIAsyncSimpleClient) -> None:
    with pytest.raises(UserInputError, match="No text worker online is called “Sim Dreamer 1”"):
        await find_workers(horde, WORKER_TYPE.text, "Sim Dreamer 1")


async def test_teams_by_name(horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator) -> None:
    assert await list_teams(horde) == ()  # a fresh Horde has none
    form_team(horde_sim.state, "Sim Scribes", ["Sim Scribe"])
    form_team(horde_sim.state, "Sim Dreamers", ["Sim Dreamer 1", "Sim Dreamer 2"])

    teams = await list_teams(horde)
    team = await find_team(horde, "SCRIBES")

    assert [t.name for t in teams] == ["Sim Dreamers", "Sim Scribes"]
    assert team.name == "Sim Scribes"
    assert [w.name for w in team.workers] == ["Sim Scribe"]
    with pytest.raises(UserInputError, match="Several teams match “sim”"):
        await find_team(horde, "sim")
    with pytest.raises(UserInputError, match=r"No team is called “\\\*x\\\*”"):
        await find_team(horde, "*x*")
