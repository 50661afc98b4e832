"""Text generation: ``v2/generate/text/async`` and ``v2/generate/text/status/{id}`` (GET, DELETE).

There is no text ``check`` endpoint: the status is what a client polls (60 per minute per id).
Bounds are the server's (``ModelPayloadRootKobold`` and ``validate_text_params``), which are
looser than horde_sdk's.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

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
)
from bot.horde.consts import MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES, TEXT_SAMPLER_COUNT


class ModelGenerationInputKobold(HordeModel):
    """``params`` of a text request."""

    n: int = Field(default=1, ge=1, le=20)
    max_context_length: int = Field(default=2048, ge=80, le=1_048_576)
    max_length: int = Field(default=80, ge=16, le=4096)
    frmtadsnsp: bool | None = None
    frmtrmblln: bool | None = None
    frmtrmspch: bool | None = None
    frmttriminc: bool | None = None
    rep_pen: float | None = Field(default=None, ge=1, le=3)
    rep_pen_range: int | None = Field(default=None, ge=0, le=4096)
    rep_pen_slope: float | None = Field(default=None, ge=0, le=10)
    singleline: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=5)
    tfs: float | None = Field(default=None, ge=0, le=1)
    top_a: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=200)
    top_p: float | None = Field(default=None, ge=0.001, le=1)
    typical: float | None = Field(default=None, ge=0, le=1)
    sampler_order: list[int] | None = None
    use_default_badwordsids: bool | None = None
    stop_sequence: list[str] | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    smoothing_factor: float | None = Field(default=None, ge=0, le=10)
    dynatemp_range: float | None = Field(default=None, ge=0, le=5)
    dynatemp_exponent: float | None = Field(default=None, ge=0, le=5)

    @model_validator(mode="after")
    def _server_checks(self) -> ModelGenerationInputKobold:
        # The defaults equal the server's, so comparing the effective values is what it does.
        if self.max_length > self.max_context_length:
            raise ValueError(
                f"max_length ({self.max_length}) must not exceed max_context_length "
                f"({self.max_context_length}) (TokenOverflow)"
            )
        if self.sampler_order is not None and len(set(self.sampler_order)) < TEXT_SAMPLER_COUNT:
            raise ValueError(
                f"a custom sampler_order must name all {TEXT_SAMPLER_COUNT} samplers "
                "(MissingFullSamplerOrder)"
            )
        if self.stop_sequence is not None:
            # The server counts each distinct sequence once.
            distinct = set(self.stop_sequence)
            if len(distinct) > MAX_STOP_SEQUENCES:
                raise ValueError(
                    f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(distinct)} (TooManyStopSequences)"
                )
            total = sum(len(sequence) for sequence in distinct)
            if total > MAX_STOP_SEQUENCE_CHARS:
                raise ValueError(
                    f"the stop sequences may hold at most {MAX_STOP_SEQUENCE_CHARS} characters in all, "
                    f"got {total} (ExcessiveStopSequence)"
                )
        return self


class TextGenerateAsyncResponse(BaseGenerateAsyncResponse):
    """Unlike images, text requests get no ``warnings``."""


class TextGenerateAsyncDryRunResponse(BaseGenerateDryRunResponse):
    pass


class TextGeneration(BaseGeneration):
    text: str
    seed: int = 0
    id_: str | None = Field(default=None, alias="id")


class TextGenerateStatusResponse(BaseGenerationProgressResponse):
    generations: ResponseList[TextGeneration] = Field(default_factory=list)

    def is_job_complete(self, number_of_results_expected: int) -> bool:
        return len(self.generations) >= number_of_results_expected


class TextGenerateStatusRequest(BaseJobRequest):
    path: ClassVar[str] = "v2/generate/text/status/{id}"

    @classmethod
    def get_default_success_response_type(cls) -> type[TextGenerateStatusResponse]:
        return TextGenerateStatusResponse


class DeleteTextGenerateRequest(TextGenerateStatusRequest):
    """Cancel. Unlike images, ``done`` may then stay false until the record expires."""

    http_method: ClassVar[HTTPMethod] = "DELETE"


class TextGenerateAsyncRequest(BaseGenerateAsyncRequest):
    """``POST v2/generate/text/async`` (``GenerationInputKobold``)."""

    path: ClassVar[str] = "v2/generate/text/async"
    check_request_type: ClassVar[type[BaseJobRequest]] = TextGenerateStatusRequest
    status_request_type: ClassVar[type[BaseJobRequest]] = TextGenerateStatusRequest
    cleanup_request_type: ClassVar[type[BaseJobRequest]] = DeleteTextGenerateRequest
    dry_run_response_type: ClassVar[type[HordeResponse] | None] = TextGenerateAsyncDryRunResponse

    prompt: str
    params: ModelGenerationInputKobold | None = None
    models: list[str] = Field(default_factory=list)
    softprompt: str | None = Field(default=None, min_length=1)
    webhook: str | None = None

    @classmethod
    def get_default_success_response_type(cls) -> type[TextGenerateAsyncResponse]:
        return TextGenerateAsyncResponse

    def get_number_of_results_expected(self) -> int:
        return self.params.n if self.params is not None else 1
