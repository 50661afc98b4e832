"""The worker side: popping jobs and submitting results (``…/pop``, ``…/submit``).

The bot never serves jobs; these exist so tests and the simulator can play a worker over HTTP
against the same wire contract. Popping needs a registered key (anonymous is 403).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bot.horde.apimodels.base import APIKeyRequest, GenMetadataEntry, HordeResponse, HTTPMethod, ResponseList
from bot.horde.consts import KNOWN_ALCHEMY_TYPES


class JobSubmitResponse(HordeResponse):
    """``{"reward": kudos}``; a faulted submission earns 0."""

    reward: float


class BaseJobPopRequest(APIKeyRequest):
    http_method: ClassVar[HTTPMethod] = "POST"
    has_body: ClassVar[bool] = True

    name: str = Field(min_length=1)
    """The worker's name; the worker is created on its first pop."""
    priority_usernames: list[str] = Field(default_factory=list)
    bridge_agent: str = Field(default="unknown:0:unknown", max_length=1000)


class BaseGenerationJobPopRequest(BaseJobPopRequest):
    models: list[str] = Field(default_factory=list)
    nsfw: bool = True
    threads: int = Field(default=1, ge=1, le=50)
    amount: int = Field(default=1, ge=1, le=20)
    require_upfront_kudos: bool = False
    extra_slow_worker: bool = False


class BaseGenerationJobPopResponse(HordeResponse):
    """A job, or ``id: null`` with ``skipped`` counting why nothing matched."""

    id_: str | None = Field(default=None, alias="id")
    ids: ResponseList[str] = Field(default_factory=list)
    model: str | None = None
    ttl: int | None = None
    """Seconds before the job is considered stale and handed to another worker."""
    extra_source_images: list[dict[str, Any]] | None = None
    skipped: dict[str, int] = Field(default_factory=dict)
    messages: ResponseList[dict[str, Any]] = Field(default_factory=list)

    @property
    def has_job(self) -> bool:
        return self.id_ is not None


class BaseJobSubmitRequest(APIKeyRequest):
    http_method: ClassVar[HTTPMethod] = "POST"
    has_body: ClassVar[bool] = True

    id_: str = Field(alias="id", min_length=1)
    generation: str
    """``"R2"`` once the result is uploaded to the job's presigned URL, else the result itself."""
    state: Literal["ok", "censored", "faulted", "csam"] = "ok"

    @classmethod
    def get_default_success_response_type(cls) -> type[JobSubmitResponse]:
        return JobSubmitResponse


class ImageGenerateJobPopPayload(HordeResponse):
    """The job's parameters as the worker gets them: ``steps`` is ``ddim_steps`` here."""

    prompt: str
    ddim_steps: int | None = None
    n_iter: int | None = None
    seed: str | int | None = None
    sampler_name: str | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    karras: bool | None = None
    post_processing: ResponseList[str] = Field(default_factory=list)
    use_nsfw_censor: bool | None = None


class ImageGenerateJobPopResponse(BaseGenerationJobPopResponse):
    payload: ImageGenerateJobPopPayload | None = None
    source_image: str | None = None
    source_processing: str | None = None
    source_mask: str | None = None
    r2_upload: str | None = None
    r2_uploads: list[str] | None = None


class ImageGenerateJobPopRequest(BaseGenerationJobPopRequest):
    path: ClassVar[str] = "v2/generate/pop"

    max_pixels: int = Field(default=262_144, ge=1)
    blacklist: list[str] = Field(default_factory=list)
    allow_img2img: bool = True
    allow_painting: bool = True
    allow_unsafe_ipaddr: bool = True
    allow_post_processing: bool = True
    allow_controlnet: bool = True
    allow_sdxl_controlnet: bool = True
    allow_lora: bool = True
    limit_max_steps: bool = True

    @classmethod
    def get_default_success_response_type(cls) -> type[ImageGenerateJobPopResponse]:
        return ImageGenerateJobPopResponse


class ImageGenerationJobSubmitRequest(BaseJobSubmitRequest):
    path: ClassVar[str] = "v2/generate/submit"

    seed: int
    censored: bool = False
    gen_metadata: list[GenMetadataEntry] = Field(default_factory=list, max_length=50)


class TextGenerateJobPopPayload(HordeResponse):
    prompt: str
    n: int | None = None
    max_length: int | None = None
    max_context_length: int | None = None


class TextGenerateJobPopResponse(BaseGenerationJobPopResponse):
    payload: TextGenerateJobPopPayload | None = None
    softprompt: str | None = None


class TextGenerateJobPopRequest(BaseGenerationJobPopRequest):
    path: ClassVar[str] = "v2/generate/text/pop"

    max_length: int = Field(default=512, ge=1)
    max_context_length: int = Field(default=2048, ge=1)
    softprompts: list[str] = Field(default_factory=list)

    @classmethod
    def get_default_success_response_type(cls) -> type[TextGenerateJobPopResponse]:
        return TextGenerateJobPopResponse


class TextGenerationJobSubmitRequest(BaseJobSubmitRequest):
    path: ClassVar[str] = "v2/generate/text/submit"

    seed: int = 0
    gen_metadata: list[GenMetadataEntry] = Field(default_factory=list, max_length=50)


class AlchemyPopFormPayload(HordeResponse):
    id_: str = Field(alias="id")
    form: str
    payload: dict[str, Any] | None = None
    source_image: str | None = None
    """A URL to download the image from."""
    r2_upload: str | None = None
    """Post-processors only: where to PUT the resulting image."""


class AlchemyPopResponse(HordeResponse):
    forms: ResponseList[AlchemyPopFormPayload] = Field(default_factory=list)
    skipped: dict[str, int] = Field(default_factory=dict)


class AlchemyPopRequest(BaseJobPopRequest):
    path: ClassVar[str] = "v2/interrogate/pop"

    forms: list[KNOWN_ALCHEMY_TYPES] = Field(min_length=1)
    amount: int = Field(default=1, ge=1)
    threads: int = Field(default=1, ge=1, le=100)
    max_tiles: int = Field(default=80, ge=1, le=256)

    @classmethod
    def get_default_success_response_type(cls) -> type[AlchemyPopResponse]:
        return AlchemyPopResponse


class AlchemyJobSubmitRequest(APIKeyRequest):
    http_method: ClassVar[HTTPMethod] = "POST"
    path: ClassVar[str] = "v2/interrogate/submit"
    has_body: ClassVar[bool] = True

    id_: str = Field(alias="id", min_length=1)
    result: dict[str, Any]
    """``{"<form>": value}``; ``"R2"`` as the value once a post-processed image is uploaded."""
    state: Literal["ok", "faulted"] = "ok"

    @classmethod
    def get_default_success_response_type(cls) -> type[JobSubmitResponse]:
        return JobSubmitResponse
