"""Horde styles in /imagine and /write: the styles list (cached for the autocomplete), finding one
by name, and applying it by the AI Horde's own rules.

AI-Horde 5.1.5 accepts ``style`` in a generation request, but then *replaces* the request's prompt,
models and params with the style's (``apply_style`` in ``horde/apis/v2/stable.py`` and
``kobold.py``: ``self.params = copy.deepcopy(style.params)``, keeping only ``n``, and for images the
width and height when the style has none). Nothing the member set would survive. So the bot applies
the style itself, by the same rules, with what the member set explicitly on top, and sends the
result without ``style``: the prompt goes through the style's template (``{p}`` the prompt, ``{np}``
the negative prompt), the style's first model and its params are the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.errors import UserInputError
from bot.horde import (
    AIHordeAPIAsyncSimpleClient,
    AIHordeRequestError,
    BaseStyleResponse,
    ImageStyleResponse,
    TextStyleResponse,
)
from bot.horde.apimodels.styles import (
    SingleStyleImageByNameRequest,
    SingleStyleTextByNameRequest,
    image_style_prompt,
    text_style_prompt,
)
from bot.horde.consts import MODEL_TYPE, RC, STYLE_SORT
from bot.services.formatting import clip
from bot.services.models_cache import MAX_CHOICE_LENGTH, MAX_CHOICES, ListCache, match_score

__all__ = ["AppliedStyle", "StylesCache", "image_style_prompt", "text_style_prompt"]

StyleKind = Literal["image", "text"]

STYLE_PAGES: Final = 4
LIST_WAIT_S: Final = 1.0
"""How long finding a style waits for the styles list before asking for the style by name."""
"""Pages (25 styles each, most used first) the autocomplete offers: the popular styles. Any other
style still works by its exact name (looked up on its own)."""
UNKNOWN_STYLE: Final = "The AI Horde has no {kind} style called “{name}”. Start typing to see the styles."
STYLE_NOT_ALLOWED: Final = "The style “{name}” isn't allowed on this server."


NO_STYLE: Final = "none"
"""Typed as a style: no style, not even the server's default."""


class AppliedStyle(BaseModel):
    """A style as it is applied and journalled: its name, prompt template, models and params."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    prompt: str = "{p}{np}"
    models: tuple[str, ...] = ()
    params: dict[str, Any] = {}

    @classmethod
    def from_response(cls, style: BaseStyleResponse) -> AppliedStyle:
        return cls(
            name=style.name,
            prompt=style.prompt or "{p}{np}",
            models=tuple(style.models),
            params=dict(style.params or {}),
        )

    def param(self, name: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
        """The style's ``name`` param when it has the type the request needs, else None (a
        style is anyone's input: a wrong type is ignored, not sent)."""
        value = self.params.get(name)
        if isinstance(value, bool) != (kind is bool):  # to Python a bool is an int too
            return None
        return value if isinstance(value, kind) else None


@dataclass(frozen=True, slots=True)
class StyleChoice:
    name: str
    """What the picker shows: the style and its model."""
    value: str
    """The style's name."""


def style_label(style: BaseStyleResponse) -> str:
    """``sim-photoreal — stable_diffusion`` (with ``+2`` more models), cut to what Discord takes."""
    models = list(style.models)
    details = f" — {models[0]}" + (f" +{len(models) - 1}" if len(models) > 1 else "") if models else ""
    return clip(style.name + clip(details, 60), MAX_CHOICE_LENGTH)


class StylesCache:
    """The popular image and text styles, each list kept ``ttl_s`` seconds (as the models list)."""

    def __init__(self, horde: AIHordeAPIAsyncSimpleClient, *, ttl_s: float) -> None:
        self._horde = horde
        self._lists: dict[StyleKind, ListCache[BaseStyleResponse]] = {
            "image": _StylesList(lambda: self._fetch(MODEL_TYPE.image), ttl_s=ttl_s),
            "text": _StylesList(lambda: self._fetch(MODEL_TYPE.text), ttl_s=ttl_s),
        }

    async def close(self) -> None:
        for cached in self._lists.values():
            await cached.close()

    async def suggest(
        self, kind: StyleKind, typed: str, *, allowed: Callable[[str], bool] = lambda _: True
    ) -> list[StyleChoice]:
        """The styles matching ``typed`` (best first, most used first among equals) this server allows."""
        needle = typed.strip().casefold()
        scored: list[tuple[int, int, BaseStyleResponse]] = []
        for order, style in enumerate(await self._lists[kind].items()):
            if len(style.name) > MAX_CHOICE_LENGTH or not allowed(style.name):
                continue
            score = match_score(style.name.casefold(), needle)
            if score is not None:
                scored.append((score, order, style))
        scored.sort(key=lambda entry: entry[:2])
        return [StyleChoice(name=style_label(style), value=style.name) for *_, style in scored[:MAX_CHOICES]]

    async def find(self, kind: StyleKind, name: str) -> AppliedStyle:
        """The style called ``name``: from the cached list, else asked by name. Unknown: a
        :class:`UserInputError`; the Horde failing: :class:`AIHordeRequestError`."""
        wanted = name.strip()
        try:
            # The list may take several pages of requests to fetch, and the command runs before
            # its interaction is answered (3 s): past LIST_WAIT_S the style is asked by name (one
            # request) while the list goes on loading for the next callers.
            cached = await asyncio.wait_for(self._lists[kind].items(), LIST_WAIT_S)
        except (AIHordeRequestError, TimeoutError):
            cached = ()
        for style in cached:
            if style.name == wanted:
                return AppliedStyle.from_response(style)
        for style in cached:
            if style.name.casefold() == wanted.casefold():
                return AppliedStyle.from_response(style)
        return AppliedStyle.from_response(await self._by_name(kind, wanted))

    async def _by_name(self, kind: StyleKind, name: str) -> BaseStyleResponse:
        unknown = UserInputError(UNKNOWN_STYLE.format(kind=kind, name=clip(name, 60)))
        if not name:
            raise unknown
        try:
            if kind == "text":
                return await self._horde.call(
                    SingleStyleTextByNameRequest(style_name=name), TextStyleResponse
                )
            return await self._horde.call(SingleStyleImageByNameRequest(style_name=name), ImageStyleResponse)
        except AIHordeRequestError as exc:
            # 404: no such style; StyleGetMistmatch (sic): a style of the other kind by that name.
            if exc.http_status == 404 or exc.rc == RC.StyleGetMistmatch:
                raise unknown from None
            raise

    async def _fetch(self, type_: MODEL_TYPE) -> Sequence[BaseStyleResponse]:
        styles: list[BaseStyleResponse] = []
        for page in range(1, STYLE_PAGES + 1):
            if type_ == MODEL_TYPE.text:
                found: Sequence[BaseStyleResponse] = (
                    await self._horde.styles(MODEL_TYPE.text, sort=STYLE_SORT.popular, page=page)
                ).root
            else:
                found = (await self._horde.styles(MODEL_TYPE.image, sort=STYLE_SORT.popular, page=page)).root
            styles += found
            if len(found) < 25:
                break
        return styles


class _StylesList(ListCache[BaseStyleResponse]):
    what = "styles"


_T = TypeVar("_T")


def first_of(typed: _T | None, styled: _T | None, default: _T) -> _T:
    """What the member typed, else the style's, else the default: what the member sets wins."""
    if typed is not None:
        return typed
    return styled if styled is not None else default


def style_param(style: AppliedStyle | None, name: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    return None if style is None else style.param(name, kind)


def style_model(style: AppliedStyle | None) -> str | None:
    """The style's first model: the one a generation uses when the member names none."""
    return style.models[0] if style is not None and style.models else None


def check_style_allowed(name: str, allowed: Callable[[str], bool]) -> None:
    if not allowed(name):
        raise UserInputError(STYLE_NOT_ALLOWED.format(name=clip(name, 60)))


def style_params(style: AppliedStyle | None, payload: type[BaseModel]) -> dict[str, Any]:
    """The style's params that ``payload`` (the request's params model) takes, each valid on its own,
    but ``n`` and the seed (the member's own). A style is anyone's input: a value the Horde would
    refuse is left out rather than refusing the member's request."""
    if style is None:
        return {}
    kept: dict[str, Any] = {}
    for name, value in style.params.items():
        if name not in payload.model_fields or name in ("n", "seed", "seed_variation"):
            continue
        try:
            payload.model_validate({name: value})
        except ValidationError:
            continue
        kept[name] = value
    return kept
