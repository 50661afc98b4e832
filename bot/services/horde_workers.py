"""Who does the Horde's work: its workers, by kind and by name (/workers), and its teams (/team).

The Horde finds a worker only by its exact name and a team only by its id, so both are looked up
in the whole list (one request): a member may type part of a name, and an unknown one gets the
names that come closest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from bot.errors import UserInputError
from bot.horde import AIHordeAPIAsyncSimpleClient, WorkerDetailsResponse
from bot.horde.apimodels.teams import AllTeamsDetailsRequest, AllTeamsDetailsResponse, TeamDetailsResponse
from bot.horde.consts import WORKER_TYPE
from bot.services.formatting import plain_line

T = TypeVar("T")

MAX_NAME_LENGTH: Final = 100
"""Longer than any worker or team name the Horde accepts."""
MAX_SUGGESTIONS: Final = 5
KIND_NAMES: Final[dict[WORKER_TYPE, str]] = {
    WORKER_TYPE.image: "image",
    WORKER_TYPE.text: "text",
    WORKER_TYPE.interrogation: "alchemy",
}
"""What members call each kind of worker (an interrogation worker does /alchemy)."""


@dataclass(frozen=True, slots=True)
class NameMatch(Generic[T]):
    """What a typed name points at among listed things."""

    found: T | None
    """The one meant: the exact name (any case), or the only name that contains what was typed."""
    candidates: tuple[T, ...]
    """When none is meant: every name containing what was typed (possibly none)."""


def match_name(items: Sequence[T], typed: str, name: Callable[[T], str | None]) -> NameMatch[T]:
    needle = typed.strip().casefold()
    named = [(item, (name(item) or "").casefold()) for item in items]
    exact = [item for item, folded in named if folded == needle]
    if len(exact) == 1:
        return NameMatch(found=exact[0], candidates=())
    containing = [item for item, folded in named if needle and needle in folded]
    if len(containing) == 1:
        return NameMatch(found=containing[0], candidates=())
    return NameMatch(found=None, candidates=tuple(containing))


def _by_name(item: WorkerDetailsResponse | TeamDetailsResponse) -> tuple[str, str]:
    label = item.name or ""
    return (label.casefold(), label)


@dataclass(frozen=True, slots=True)
class WorkerSearch:
    kind: WORKER_TYPE | None
    workers: tuple[WorkerDetailsResponse, ...]
    """Sorted by name: every worker of the kind, or those whose name matched."""
    found: WorkerDetailsResponse | None = None
    """The one worker a name pointed at."""


def kind_label(kind: WORKER_TYPE | None) -> str:
    """``"image "``, ``"alchemy "``…, or ``""`` for every kind: to put before "worker"."""
    return "" if kind is None else KIND_NAMES[kind] + " "


async def find_workers(
    horde: AIHordeAPIAsyncSimpleClient, kind: WORKER_TYPE | None = None, name: str | None = None
) -> WorkerSearch:
    """The workers online now, of ``kind`` (all kinds when ``None``); with ``name``, the one it
    points at, else those containing it. Raises :class:`UserInputError` when no name matches and
    ``AIHordeRequestError`` when the Horde fails."""
    workers = sorted((await horde.workers(kind)).root, key=_by_name)
    if name is None or not name.strip():
        return WorkerSearch(kind=kind, workers=tuple(workers))
    match = match_name(workers, name, lambda worker: worker.name)
    if match.found is not None:
        return WorkerSearch(kind=kind, workers=(match.found,), found=match.found)
    if not match.candidates:
        kind_name = kind_label(kind)
        raise UserInputError(
            f"No {kind_name}worker online is called “{_shown(name)}”. "
            f"/workers lists the {kind_name}workers online now."
        )
    return WorkerSearch(kind=kind, workers=match.candidates)


async def list_teams(horde: AIHordeAPIAsyncSimpleClient) -> tuple[TeamDetailsResponse, ...]:
    """Every team, sorted by name; raises ``AIHordeRequestError`` when the Horde fails."""
    teams = await horde.call(AllTeamsDetailsRequest(), AllTeamsDetailsResponse)
    return tuple(sorted(teams.root, key=_by_name))


async def find_team(horde: AIHordeAPIAsyncSimpleClient, name: str) -> TeamDetailsResponse:
    """The team ``name`` points at. Raises :class:`UserInputError` naming the closest teams when
    none or several match, and ``AIHordeRequestError`` when the Horde fails."""
    teams = await list_teams(horde)
    match = match_name(teams, name, lambda team: team.name)
    if match.found is not None:
        return match.found
    shown = _shown(name)
    if match.candidates:
        names = _names(match.candidates)
        raise UserInputError(f"Several teams match “{shown}”: {names}. Type more of the name.")
    raise UserInputError(f"No team is called “{shown}”. /team without a name lists every team.")


def _names(items: Sequence[TeamDetailsResponse]) -> str:
    names = [f"“{_shown(item.name or '')}”" for item in items[:MAX_SUGGESTIONS]]
    more = len(items) - MAX_SUGGESTIONS
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _shown(name: str) -> str:
    return plain_line(name, MAX_NAME_LENGTH)
