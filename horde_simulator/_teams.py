"""Teams of workers: ``GET v2/teams`` and ``GET v2/teams/{team_id}``.

Like a fresh server, the simulator has no team until one is formed: ``form_team(state, name,
worker_names)`` (in process), as a trusted user would with ``POST v2/teams`` and each worker's
owner with ``PUT v2/workers/{id}``. A team's totals are its workers' (the real server counts what
they did while in the team, which here is always), and each worker's details name its team.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from horde_simulator import _errors as err
from horde_simulator._records import Kind, SimWorker
from horde_simulator._state import State
from horde_simulator._web import Route, json_response

TEAM_CREATOR = "db0#1"


def team_id(name: str) -> str:
    """A stable UUID per team name, as real team ids are UUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"horde-simulator:team:{name}"))


def form_team(state: State, name: str, worker_names: Iterable[str]) -> None:
    """Put the named workers in the team ``name`` (out of any other)."""
    wanted = set(worker_names)
    with state.lock:
        unknown = wanted - {worker.name for worker in state.workers}
        if unknown:
            raise ValueError(f"no worker is called {sorted(unknown)}")
        for worker in state.workers:
            if worker.name in wanted:
                worker.team = name


def worker_team(worker: SimWorker) -> dict[str, Any]:
    """The ``team`` of a worker's details: ``{"name": null, "id": null}`` when it has none."""
    return {"name": worker.team, "id": None if worker.team is None else team_id(worker.team)}


def team_names(state: State) -> list[str]:
    with state.lock:
        return list(dict.fromkeys(worker.team for worker in state.workers if worker.team is not None))


def team_details(state: State, name: str) -> dict[str, Any]:
    """``TeamDetails`` as a user (not a moderator) sees it."""
    with state.lock:
        members = [worker for worker in state.workers if worker.team == name]
        model_counts: dict[str, int] = {}
        for worker in members:
            if worker.type == "interrogation":
                continue
            kind: Kind = "text" if worker.type == "text" else "image"
            for model in state.listed_models(kind):
                model_counts[model] = model_counts.get(model, 0) + 1
        now = state.now()
        return {
            "name": name,
            "id": team_id(name),
            "info": f"The simulator's team {name}.",
            "requests_fulfilled": sum(worker.requests_fulfilled for worker in members),
            "kudos": float(round(sum(worker.kudos_rewards for worker in members))),
            "uptime": sum(int(now - worker.created) for worker in members),
            "creator": TEAM_CREATOR,
            "worker_count": len(members),
            "workers": [
                {"name": worker.name, "id": worker.id, "type": worker.type, "online": True}
                for worker in members
            ],
            "models": [{"name": model, "count": count} for model, count in model_counts.items()],
        }


class TeamRoutes:
    def __init__(self, state: State) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            ("GET", "/api/v2/teams", self.teams, "teams"),
            ("GET", "/api/v2/teams/{team_id}", self.team, "team"),
        ]

    async def teams(self, request: web.Request) -> web.Response:
        return json_response([team_details(self.state, name) for name in team_names(self.state)])

    async def team(self, request: web.Request) -> web.Response:
        wanted = request.match_info["team_id"]
        name = next((name for name in team_names(self.state) if team_id(name) == wanted), None)
        if name is None:
            raise err.thing_not_found("team", wanted)
        return json_response(team_details(self.state, name))
