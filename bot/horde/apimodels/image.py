"""Image generation: ``v2/generate/async``, ``check``, ``status`` and its DELETE.

Bounds are the server's (swagger.json plus the checks in the server's ``validation.py``), so a
payload the Horde would reject with a 400 fails here first, with a message naming the field.
Python defaults are the values the server uses when a field is absent; they are never sent.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from bot.horde.apimodels.base import (
    BaseGenerateAsyncRequest,
    BaseGenerateAsyncResponse,
    BaseGenerateDryRunResponse,
    BaseGeneration,
    BaseGenerationProgressResponse,
    BaseJobRequest,
    HordeModel,
    HordeResponse,
    HTTPMethod,
    ResponseList,
    enum_or_raw,
)
from bot.horde.consts import (
    KNOWN_CONTROL_TYPES,
    KNOWN_IMAGE_SAMPLERS,
    KNOWN_POST_PROCESSORS,
    KNOWN_SOURCE_PROCESSING,
    KNOWN_UPSCALERS,
    KNOWN_WORKFLOWS,
    MAX_EXTRA_SOURCE_IMAGES,
    MAX_LORAS,
    MAX_PROMPT_WORDS,
    MAX_TIS,
    MAX_UPSCALERS,
    TI_INJECT,
    WarningCode,
)

_UPSCALERS = frozenset(member.value for member in KNOWN_UPSCALERS)
_POST_PROCESSORS = frozenset(member.value for member in KNOWN_POST_PROCESSORS)


def _int_seed_as_text(value: object) -> object:
    # The server hashes any text into a seed; an int is just the obvious text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


SeedText = Annotated[str, BeforeValidator(_int_seed_as_text)]


class LorasPayloadEntry(HordeModel):
    name: str = Field(min_length=1, max_length=255)
    model: float = Field(default=1.0, ge=-5.0, le=5.0)
    clip: float = Field(default=1.0, ge=-5.0, le=5.0)
    inject_trigger: str | None = Field(default=None, min_length=1, max_length=30)
    is_version: bool = False

    @model_validator(mode="after")
    def _version_is_an_id(self) -> LorasPayloadEntry:
        if self.is_version and not self.name.isdigit():
            raise ValueError(
                "a lora with is_version must be named by its numeric version id (BadLoraVersion)"
            )
        return self


class TIPayloadEntry(HordeModel):
    name: str = Field(min_length=1, max_length=255)
    inject_ti: TI_INJECT | None = None
    strength: float = Field(default=1.0, ge=-5.0, le=5.0)


class ExtraText(HordeModel):
    text: str = Field(min_length=1)
    reference: str = Field(min_length=3)


class ExtraSourceImage(HordeModel):
    image: str = Field(min_length=1)
    strength: float = 1.0


class ImageGenerationInputPayload(HordeModel):
    """``params`` of an image request (``ModelGenerationInputStable``)."""

    n: int = Field(default=1, ge=1, le=20)
    steps: int = Field(default=30, ge=1, le=500)
    width: int = Field(default=512, ge=64, le=3072, multiple_of=64)
    height: int = Field(default=512, ge=64, le=3072, multiple_of=64)
    sampler_name: KNOWN_IMAGE_SAMPLERS = KNOWN_IMAGE_SAMPLERS.k_euler_a
    cfg_scale: float = Field(default=5.0, ge=0, le=100)
    karras: bool = True
    seed: SeedText | None = None
    seed_variation: int | None = Field(default=None, ge=1, le=1000)
    denoising_strength: float | None = Field(default=None, ge=0.01, le=1.0)
    hires_fix: bool = False
    hires_fix_denoising_strength: float | None = Field(default=None, ge=0.01, le=1.0)
    tiling: bool = False
    transparent: bool = False
    clip_skip: int | None = Field(default=None, ge=1, le=12)
    facefixer_strength: float | None = Field(default=None, ge=0, le=1.0)
    post_processing: list[KNOWN_POST_PROCESSORS] = Field(default_factory=list)
    loras: list[LorasPayloadEntry] = Field(default_factory=list)
    tis: list[TIPayloadEntry] = Field(default_factory=list)
    control_type: KNOWN_CONTROL_TYPES | None = None
    image_is_control: bool = False
    return_control_map: bool = False
    workflow: KNOWN_WORKFLOWS | None = None
    extra_texts: list[ExtraText] = Field(default_factory=list)
    special: dict[str, Any] | None = None

    @field_validator("cfg_scale")
    @classmethod
    def _two_decimals(cls, value: float) -> float:
        if round(value, 2) != value:
            raise ValueError("cfg_scale must have at most 2 decimal places (BadCFGDecimals)")
        return value

    @field_validator("post_processing")
    @classmethod
    def _post_processors(cls, value: list[KNOWN_POST_PROCESSORS]) -> list[KNOWN_POST_PROCESSORS]:
        if len(set(value)) != len(value):
            raise ValueError("post_processing must not name a post-processor twice")
        upscalers = [name.value for name in value if name in _UPSCALERS]
        if len(upscalers) > MAX_UPSCALERS:
            raise ValueError(
                f"post_processing may hold at most {MAX_UPSCALERS} upscaler, got {len(upscalers)}: "
                f"{', '.join(upscalers)} (TooManyUpscalers)"
            )
        return value

    @field_validator("loras")
    @classmethod
    def _few_loras(cls, value: list[LorasPayloadEntry]) -> list[LorasPayloadEntry]:
        if len(value) > MAX_LORAS:
            raise ValueError(f"at most {MAX_LORAS} loras per request, got {len(value)} (TooManyLoras)")
        return value

    @field_validator("tis")
    @classmethod
    def _few_tis(cls, value: list[TIPayloadEntry]) -> list[TIPayloadEntry]:
        if len(value) > MAX_TIS:
            raise ValueError(
                f"at most {MAX_TIS} textual inversions per request, got {len(value)} (TooManyTIs)"
            )
        return value


class SingleWarningEntry(HordeResponse):
    code: Annotated[WarningCode | str, BeforeValidator(enum_or_raw(WarningCode))]
    message: str


class ImageGenerateAsyncResponse(BaseGenerateAsyncResponse):
    warnings: ResponseList[SingleWarningEntry] = Field(default_factory=list)
    """``NoAvailableWorker`` and model-mismatch notes; the request is queued regardless."""


class ImageGenerateAsyncDryRunResponse(BaseGenerateDryRunResponse):
    """The price is the whole batch's: per-image estimate × n × the model's baseline multiplier."""


class ImageGenerateCheckResponse(BaseGenerationProgressResponse):
    """``v2/generate/check/{id}``: progress only, cheap to poll."""


class ImageGeneration(BaseGeneration):
    id_: str = Field(alias="id")
    img: str
    """A presigned URL when the request had ``r2`` (the default), else base64 webp."""
    seed: SeedText
    censored: bool = False

    @property
    def is_url(self) -> bool:
        return self.img.startswith(("http://", "https://"))


class ImageGenerateStatusResponse(BaseGenerationProgressResponse):
    """``v2/generate/status/{id}`` (GET or DELETE): progress plus every image finished so far."""

    generations: ResponseList[ImageGeneration] = Field(default_factory=list)
    shared: bool | None = None

    def is_job_complete(self, number_of_results_expected: int) -> bool:
        return len(self.generations) >= number_of_results_expected


class ImageGenerateCheckRequest(BaseJobRequest):
    path: ClassVar[str] = "v2/generate/check/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageGenerateCheckResponse]:
        return ImageGenerateCheckResponse


class ImageGenerateStatusRequest(BaseJobRequest):
    """Heavily rate-limited (10 per minute per id): poll ``check`` and fetch this once."""

    path: ClassVar[str] = "v2/generate/status/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageGenerateStatusResponse]:
        return ImageGenerateStatusResponse


class DeleteImageGenerateRequest(ImageGenerateStatusRequest):
    """Cancel: the server stops handing out jobs and answers with the images finished so far."""

    http_method: ClassVar[HTTPMethod] = "DELETE"


class ImageGenerateAsyncRequest(BaseGenerateAsyncRequest):
    """``POST v2/generate/async`` (``GenerationInputStable``)."""

    path: ClassVar[str] = "v2/generate/async"
    check_request_type: ClassVar[type[BaseJobRequest]] = ImageGenerateCheckRequest
    status_request_type: ClassVar[type[BaseJobRequest]] = ImageGenerateStatusRequest
    cleanup_request_type: ClassVar[type[BaseJobRequest]] = DeleteImageGenerateRequest
    dry_run_response_type: ClassVar[type[HordeResponse] | None] = ImageGenerateAsyncDryRunResponse

    prompt: str = Field(min_length=1)
    """``###`` separates the negative prompt."""
    params: ImageGenerationInputPayload | None = None
    models: list[str] = Field(default_factory=lambda: ["stable_diffusion"])
    nsfw: bool = True
    censor_nsfw: bool = True
    """Only applies when ``nsfw`` is false."""
    source_image: str | None = None
    source_mask: str | None = None
    source_processing: KNOWN_SOURCE_PROCESSING = KNOWN_SOURCE_PROCESSING.img2img
    extra_source_images: list[ExtraSourceImage] | None = None
    r2: bool = True
    shared: bool = False
    replacement_filter: bool = True
    webhook: str | None = Field(default=None, min_length=10, max_length=1024)

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageGenerateAsyncResponse]:
        return ImageGenerateAsyncResponse

    def get_number_of_results_expected(self) -> int:
        return self.params.n if self.params is not None else 1

    @field_validator("prompt")
    @classmethod
    def _prompt_size(cls, value: str) -> str:
        if len(value.split()) > MAX_PROMPT_WORDS:
            raise ValueError(f"the prompt may hold at most {MAX_PROMPT_WORDS} words (InvalidPromptSize)")
        return value

    @field_validator("models")
    @classmethod
    def _no_post_processor_models(cls, value: list[str]) -> list[str]:
        misplaced = [name for name in value if name in _POST_PROCESSORS]
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} is a post-processor, not a model: "
                "put it in params.post_processing (UnexpectedModelName)"
            )
        return value

    @field_validator("extra_source_images")
    @classmethod
    def _few_extra_images(cls, value: list[ExtraSourceImage] | None) -> list[ExtraSourceImage] | None:
        if value is not None and len(value) > MAX_EXTRA_SOURCE_IMAGES:
            raise ValueError(
                f"at most {MAX_EXTRA_SOURCE_IMAGES} extra source images, got {len(value)} "
                "(TooManyExtraSourceImages)"
            )
        return value

    @field_validator("webhook")
    @classmethod
    def _https_webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("webhook must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _source_image_needed(self) -> ImageGenerateAsyncRequest:
        if self.source_mask is not None and self.source_image is None:
            raise ValueError("source_mask needs a source_image (SourceMaskUnnecessary)")
        if self.params is not None and self.params.control_type is not None and self.source_image is None:
            raise ValueError("params.control_type needs a source_image (ControlNetSourceMissing)")
        return self
