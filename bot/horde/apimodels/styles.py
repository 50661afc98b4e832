"""Styles (read-only): ``v2/styles/image…`` and ``v2/styles/text…``.

A style's ``params`` are kept as sent: they are defaults the server merges into a request, not a
request of their own. ``image_style_prompt`` and ``text_style_prompt`` fill a style's prompt template
as AI-Horde 5.1.5 does (``apply_style`` in ``horde/apis/v2/stable.py`` and ``kobold.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from bot.horde.apimodels.base import HordeRequest, HordeResponse, HordeRootResponse, ResponseList
from bot.horde.consts import STYLE_SORT


def image_style_prompt(template: str, horde_prompt: str) -> str:
    """The Horde's image rule: ``{p}`` gets the prompt and ``{np}`` the negative prompt (with its
    ``###`` when the template has none); every other brace is kept as it is."""
    prompt, negative = horde_prompt, ""
    if "###" in prompt:
        prompt, negative = prompt.split("###", 1)
    if "###" not in template and negative != "" and "###" not in negative:
        negative = "###" + negative
    return _fill(template, p=prompt, np=negative)


def text_style_prompt(template: str, prompt: str) -> str:
    """The Horde's text rule: ``{p}`` gets the prompt. Other braces are kept (the server drops
    unknown ``{names}`` and fails on stray braces; keeping them never fails)."""
    return _fill(template, p=prompt, np="")


def _fill(template: str, **values: str) -> str:
    # One pass over the template, so a prompt containing "{np}" is never filled in again.
    out: list[str] = []
    index = 0
    while index < len(template):
        for name, value in values.items():
            token = "{" + name + "}"
            if template.startswith(token, index):
                out.append(value)
                index += len(token)
                break
        else:
            out.append(template[index])
            index += 1
    return "".join(out)


class StyleExample(HordeResponse):
    id_: str | None = Field(default=None, alias="id")
    url: str
    primary: bool = False


class SharedKeyDetails(HordeResponse):
    id_: str | None = Field(default=None, alias="id")
    username: str | None = None
    name: str | None = None
    kudos: int | None = None
    expiry: str | None = None
    utilized: int | None = None
    max_image_pixels: int | None = None
    max_image_steps: int | None = None
    max_text_tokens: int | None = None


class BaseStyleResponse(HordeResponse):
    id_: str = Field(alias="id")
    name: str
    info: str | None = None
    prompt: str | None = None
    """A template: the user's prompt replaces ``{p}`` and the negative prompt ``{np}``."""
    params: dict[str, Any] | None = None
    public: bool | None = None
    nsfw: bool | None = None
    tags: ResponseList[str] = Field(default_factory=list)
    models: ResponseList[str] = Field(default_factory=list)
    creator: str | None = None
    use_count: int | None = None


class ImageStyleResponse(BaseStyleResponse):
    """``StyleStable``."""

    examples: ResponseList[StyleExample] = Field(default_factory=list)
    shared_key: SharedKeyDetails | None = None
    sharedkey: str | None = None


class TextStyleResponse(BaseStyleResponse):
    """``StyleKobold``."""


class AllStylesImageResponse(HordeRootResponse[list[ImageStyleResponse]]):
    pass


class AllStylesTextResponse(HordeRootResponse[list[TextStyleResponse]]):
    pass


class BaseAllStylesRequest(HordeRequest):
    """A page (25 styles) of public styles, optionally filtered by tag or model."""

    query_fields: ClassVar[tuple[str, ...]] = ("sort", "page", "tag", "model")

    sort: STYLE_SORT = STYLE_SORT.popular
    page: int = Field(default=1, ge=1)
    tag: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)


class AllStylesImageRequest(BaseAllStylesRequest):
    path: ClassVar[str] = "v2/styles/image"

    @classmethod
    def get_default_success_response_type(cls) -> type[AllStylesImageResponse]:
        return AllStylesImageResponse


class AllStylesTextRequest(BaseAllStylesRequest):
    path: ClassVar[str] = "v2/styles/text"

    @classmethod
    def get_default_success_response_type(cls) -> type[AllStylesTextResponse]:
        return AllStylesTextResponse


class BaseStyleByIDRequest(HordeRequest):
    path_fields: ClassVar[tuple[str, ...]] = ("style_id",)

    style_id: str = Field(min_length=1)


class BaseStyleByNameRequest(HordeRequest):
    path_fields: ClassVar[tuple[str, ...]] = ("style_name",)

    style_name: str = Field(min_length=1)


class SingleStyleImageByIDRequest(BaseStyleByIDRequest):
    path: ClassVar[str] = "v2/styles/image/{style_id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageStyleResponse]:
        return ImageStyleResponse


class SingleStyleImageByNameRequest(BaseStyleByNameRequest):
    path: ClassVar[str] = "v2/styles/image_by_name/{style_name}"

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageStyleResponse]:
        return ImageStyleResponse


class SingleStyleTextByIDRequest(BaseStyleByIDRequest):
    path: ClassVar[str] = "v2/styles/text/{style_id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[TextStyleResponse]:
        return TextStyleResponse


class SingleStyleTextByNameRequest(BaseStyleByNameRequest):
    path: ClassVar[str] = "v2/styles/text_by_name/{style_name}"

    @classmethod
    def get_default_success_response_type(cls) -> type[TextStyleResponse]:
        return TextStyleResponse
