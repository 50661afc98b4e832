"""The image models workers serve now (``/v2/status/models``), cached for the model autocomplete;
:class:`ListCache` caches any such list (the styles too, ``bot.services.styles``).

Autocomplete fires on every keystroke, so the list is kept for ``ttl_s`` seconds and refreshed by
one request at a time: concurrent callers share the refresh in flight. A failed refresh keeps
serving the last list (if there is one) and is retried by the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from bot.clock import monotonic
from bot.horde import ActiveModel, AIHordeRequestError

log = logging.getLogger(__name__)

MAX_CHOICES: Final = 25
"""Discord shows at most 25 autocomplete choices."""
MAX_CHOICE_LENGTH: Final = 100
"""A choice's name and value may each be at most 100 characters."""

T = TypeVar("T")
FetchModels = Callable[[], Awaitable[Sequence[ActiveModel]]]


@dataclass(frozen=True, slots=True)
class ModelChoice:
    name: str
    """What the picker shows: the model, its workers and its queue."""
    value: str
    """The model's name, which becomes the option's value."""


class ListCache(Generic[T]):
    """A list from the Horde (``fetch()``), kept ``ttl_s`` seconds; one refresh at a time."""

    what = "items"
    """What the list holds, for the log."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Sequence[T]]],
        *,
        ttl_s: float,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._models: tuple[T, ...] | None = None
        self._fetched_at = 0.0
        self._refresh: asyncio.Task[tuple[T, ...]] | None = None
        self._closed = False

    async def items(self, *, max_age_s: float | None = None) -> tuple[T, ...]:
        """The cached list, refreshed when older than the TTL (or ``max_age_s``, when shorter).

        Raises :class:`AIHordeRequestError` only when the Horde fails and nothing was ever cached.
        """
        ttl_s = self._ttl_s if max_age_s is None else min(self._ttl_s, max_age_s)
        if self._models is not None and self._clock() - self._fetched_at < ttl_s:
            return self._models
        if self._closed:
            raise RuntimeError("the cache is closed")
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._load(), name=f"{type(self).__name__}.refresh")
            self._refresh.add_done_callback(_retrieve_exception)
        refresh = self._refresh
        try:
            # Shielded: one caller giving up (an autocomplete superseded by the next keystroke)
            # must not cancel the refresh the others wait for.
            return await asyncio.shield(refresh)
        except AIHordeRequestError:
            if self._models is None:
                raise
            return self._models

    async def close(self) -> None:
        self._closed = True
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, AIHordeRequestError):
                await self._refresh
            self._refresh = None

    async def _load(self) -> tuple[T, ...]:
        try:
            models = tuple(await self._fetch())
        except AIHordeRequestError as exc:
            log.warning("Could not refresh the %s list: %s", self.what, exc)
            raise
        finally:
            self._refresh = None
        self._models = models
        self._fetched_at = self._clock()
        return models


class ModelsCache(ListCache[ActiveModel]):
    what = "models"

    async def models(self, *, max_age_s: float | None = None) -> tuple[ActiveModel, ...]:
        return await self.items(max_age_s=max_age_s)

    async def suggest(self, typed: str, *, limit: int = MAX_CHOICES) -> list[ModelChoice]:
        """The best matches for ``typed`` first, busiest models first among equals."""
        return rank_models(await self.models(), typed, limit=limit)


def _retrieve_exception(task: asyncio.Task[tuple[object, ...]]) -> None:
    # Every caller may have given up before a failed refresh ended; the failure is already logged.
    if not task.cancelled():
        task.exception()


def rank_models(models: Sequence[ActiveModel], typed: str, *, limit: int = MAX_CHOICES) -> list[ModelChoice]:
    needle = typed.strip().casefold()
    scored: list[tuple[int, int, str, ActiveModel]] = []
    for model in models:
        if len(model.name) > MAX_CHOICE_LENGTH:
            continue  # it could not be a choice's value
        score = match_score(model.name.casefold(), needle)
        if score is not None:
            scored.append((score, -(model.count or 0), model.name.casefold(), model))
    scored.sort(key=lambda entry: entry[:3])
    return [ModelChoice(name=model_label(model), value=model.name) for *_, model in scored[:limit]]


def model_label(model: ActiveModel) -> str:
    """``AlbedoBase XL (SDXL) — 12 workers, 3 queued``, cut to what Discord accepts."""
    workers = model.count or 0
    queued = round(model.jobs or 0)
    details = f" — {workers} worker{'' if workers == 1 else 's'}, {queued} queued"
    room = MAX_CHOICE_LENGTH - len(details)
    name = model.name if len(model.name) <= room else model.name[: room - 1] + "…"
    return name + details


def match_score(name: str, needle: str) -> int | None:
    """Lower is better: exact, prefix, word prefix, substring, then the letters in order."""
    if not needle:
        return 4
    if name == needle:
        return 0
    if name.startswith(needle):
        return 1
    if any(word.startswith(needle) for word in name.replace("_", " ").replace("-", " ").split()):
        return 2
    if needle in name:
        return 3
    letters = iter(name)
    if all(char in letters for char in needle):
        return 5
    return None
