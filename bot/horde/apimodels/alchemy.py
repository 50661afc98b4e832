"""Alchemy (interrogation and post-processing of an existing image): ``v2/interrogate/…``.

Each form's ``result`` is kept as sent (``{"caption": "…"}``, ``{"RealESRGAN_x2plus": "<url>"}``…);
the ``all_*_results`` properties read the finished ones into typed models.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BeforeValidator, Field, ValidationError

from bot.horde.apimodels.base import (
    APIKeyRequest,
    BaseAsyncRequest,
    BaseJobRequest,
    HordeModel,
    HordeResponse,
    HTTPMethod,
    ResponseList,
    enum_or_raw,
)
from bot.horde.consts import (
    GENERATION_STATE,
    KNOWN_ALCHEMY_TYPES,
    KNOWN_FACEFIXERS,
    KNOWN_MISC_POST_PROCESSORS,
    KNOWN_UPSCALERS,
)

_FINAL_STATES = frozenset({GENERATION_STATE.done, GENERATION_STATE.faulted, GENERATION_STATE.partial})


class AlchemyAsyncRequestFormItem(HordeModel):
    name: KNOWN_ALCHEMY_TYPES
    payload: dict[str, Any] | None = None


class AlchemyAsyncResponse(HordeResponse):
    """202 from ``v2/interrogate/async``. There is no kudos estimate and no dry run."""

    id_: str = Field(alias="id")
    message: str | None = None


class AlchemyCaptionResult(HordeResponse):
    caption: str


class AlchemyNSFWResult(HordeResponse):
    nsfw: bool


class AlchemyInterrogationResultItem(HordeResponse):
    text: str
    confidence: float


class AlchemyInterrogationDetails(HordeResponse):
    tags: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    sites: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    artists: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    flavors: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    mediums: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    movements: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)
    techniques: ResponseList[AlchemyInterrogationResultItem] = Field(default_factory=list)


class AlchemyUpscaleResult(HordeResponse):
    upscaler_used: KNOWN_UPSCALERS
    url: str


class AlchemyFacefixResult(HordeResponse):
    facefixer_used: KNOWN_FACEFIXERS
    url: str


class AlchemyStripBackgroundResult(HordeResponse):
    url: str


class AlchemyValueResult(HordeResponse):
    """The result of a form whose value has no fixed shape (vectorize, palette, describe, aesthetic)."""

    form: KNOWN_ALCHEMY_TYPES
    value: Any


class AlchemyFormStatus(HordeResponse):
    form: Annotated[KNOWN_ALCHEMY_TYPES | str, BeforeValidator(enum_or_raw(KNOWN_ALCHEMY_TYPES))]
    state: Annotated[GENERATION_STATE | str, BeforeValidator(enum_or_raw(GENERATION_STATE))]
    result: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.state == GENERATION_STATE.done


class AlchemyStatusResponse(HordeResponse):
    """``v2/interrogate/status/{id}`` (GET or DELETE).

    The overall ``state`` is ``faulted`` when every form faulted, ``done`` when every form is
    done, ``processing`` or ``waiting`` while work remains, and ``partial`` otherwise (after a
    cancel, or when some forms faulted).
    """

    state: Annotated[GENERATION_STATE | str, BeforeValidator(enum_or_raw(GENERATION_STATE))]
    forms: ResponseList[AlchemyFormStatus] = Field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.state in _FINAL_STATES

    @property
    def is_faulted(self) -> bool:
        return self.state == GENERATION_STATE.faulted

    def is_job_complete(self, number_of_results_expected: int) -> bool:
        return len(self.forms) >= number_of_results_expected and all(form.done for form in self.forms)

    @property
    def all_caption_results(self) -> list[AlchemyCaptionResult]:
        return _parsed(AlchemyCaptionResult, (result for _, result in self._finished(_CAPTION)))

    @property
    def all_nsfw_results(self) -> list[AlchemyNSFWResult]:
        return _parsed(AlchemyNSFWResult, (result for _, result in self._finished(_NSFW)))

    @property
    def all_interrogation_results(self) -> list[AlchemyInterrogationDetails]:
        return _parsed(
            AlchemyInterrogationDetails, (result[form] for form, result in self._finished(_INTERROGATION))
        )

    @property
    def all_upscale_results(self) -> list[AlchemyUpscaleResult]:
        return _parsed(
            AlchemyUpscaleResult,
            ({"upscaler_used": form, "url": result[form]} for form, result in self._finished(_UPSCALERS)),
        )

    @property
    def all_facefix_results(self) -> list[AlchemyFacefixResult]:
        return _parsed(
            AlchemyFacefixResult,
            ({"facefixer_used": form, "url": result[form]} for form, result in self._finished(_FACEFIXERS)),
        )

    @property
    def all_strip_background_results(self) -> list[AlchemyStripBackgroundResult]:
        return _parsed(
            AlchemyStripBackgroundResult, ({"url": result[form]} for form, result in self._finished(_STRIP))
        )

    @property
    def all_vectorize_results(self) -> list[AlchemyValueResult]:
        return self._value_results(KNOWN_ALCHEMY_TYPES.vectorize)

    @property
    def all_palette_results(self) -> list[AlchemyValueResult]:
        return self._value_results(KNOWN_ALCHEMY_TYPES.palette)

    @property
    def all_describe_results(self) -> list[AlchemyValueResult]:
        return self._value_results(KNOWN_ALCHEMY_TYPES.describe)

    @property
    def all_aesthetic_results(self) -> list[AlchemyValueResult]:
        return self._value_results(KNOWN_ALCHEMY_TYPES.aesthetic)

    def _value_results(self, form: KNOWN_ALCHEMY_TYPES) -> list[AlchemyValueResult]:
        finished = self._finished(frozenset({form.value}))
        return [AlchemyValueResult(form=form, value=result[name]) for name, result in finished]

    def _finished(self, forms: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
        """``(form name, result)`` of the done forms of these kinds whose result is keyed by that name."""
        return [
            (str(status.form), status.result)
            for status in self.forms
            if status.done
            and status.form in forms
            and status.result is not None
            and str(status.form) in status.result
        ]


R = TypeVar("R", bound=HordeResponse)


def _parsed(model: type[R], raw_results: Iterable[object]) -> list[R]:
    # A malformed result is left out rather than raised from a property; ``forms`` still has it.
    parsed = []
    for raw in raw_results:
        try:
            parsed.append(model.model_validate(raw))
        except ValidationError:
            continue
    return parsed


_CAPTION = frozenset({KNOWN_ALCHEMY_TYPES.caption.value})
_NSFW = frozenset({KNOWN_ALCHEMY_TYPES.nsfw.value})
_INTERROGATION = frozenset({KNOWN_ALCHEMY_TYPES.interrogation.value})
_UPSCALERS = frozenset(member.value for member in KNOWN_UPSCALERS)
_FACEFIXERS = frozenset(member.value for member in KNOWN_FACEFIXERS)
_STRIP = frozenset({KNOWN_MISC_POST_PROCESSORS.strip_background.value})


class AlchemyStatusRequest(BaseJobRequest, APIKeyRequest):
    """Unlike image and text, the alchemy status takes the ``apikey`` header."""

    path: ClassVar[str] = "v2/interrogate/status/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[AlchemyStatusResponse]:
        return AlchemyStatusResponse


class AlchemyDeleteRequest(BaseJobRequest):
    """Cancel: every form not yet done becomes ``cancelled``."""

    http_method: ClassVar[HTTPMethod] = "DELETE"
    path: ClassVar[str] = "v2/interrogate/status/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[AlchemyStatusResponse]:
        return AlchemyStatusResponse


class AlchemyAsyncRequest(BaseAsyncRequest):
    """``POST v2/interrogate/async``; the form names are :class:`KNOWN_ALCHEMY_TYPES`."""

    path: ClassVar[str] = "v2/interrogate/async"
    check_request_type: ClassVar[type[BaseJobRequest]] = AlchemyStatusRequest
    status_request_type: ClassVar[type[BaseJobRequest]] = AlchemyStatusRequest
    cleanup_request_type: ClassVar[type[BaseJobRequest]] = AlchemyDeleteRequest

    forms: list[AlchemyAsyncRequestFormItem] = Field(min_length=1)
    source_image: str = Field(min_length=1)
    """A URL or base64 webp."""
    trusted_workers: bool = False
    slow_workers: bool = True
    webhook: str | None = Field(default=None, min_length=10, max_length=1024)

    @classmethod
    def get_default_success_response_type(cls) -> type[AlchemyAsyncResponse]:
        return AlchemyAsyncResponse

    def get_number_of_results_expected(self) -> int:
        # The server drops duplicate form names.
        return len({form.name for form in self.forms})
