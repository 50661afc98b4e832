"""Base classes shared by every AI Horde request and response model.

A request knows how to put itself on the wire (method, path, headers, query, body);
the transport only sends what :meth:`HordeRequest.to_wire` returns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, field_validator

from bot.horde.consts import (
    ANON_API_KEY,
    APIKEY_HEADER,
    GENERATION_STATE,
    METADATA_TYPE,
    METADATA_VALUE,
)

HTTPMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

T = TypeVar("T")


def _none_as_empty(value: object) -> object:
    return [] if value is None else value


ResponseList = Annotated[list[T], BeforeValidator(_none_as_empty)]
"""A list in a response body; the server marshals a missing list as ``null``, read here as ``[]``."""

E = TypeVar("E", bound=StrEnum)


def enum_or_raw(enum_cls: type[E]) -> Callable[[object], object]:
    """A before-validator: a known value becomes the enum member, anything else stays as sent.

    Response fields use it so a value added by a newer server still parses.
    """
    known = {member.value: member for member in enum_cls}

    def convert(value: object) -> object:
        if isinstance(value, str) and not isinstance(value, enum_cls):
            return known.get(value, value)
        return value

    return convert


class HordeModel(BaseModel):
    """Frozen model; wire names go through aliases (``id_`` is sent as ``id``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class HordeResponse(HordeModel):
    """A response body. Unknown fields are kept, so a newer server never breaks parsing."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")


RootT = TypeVar("RootT")


class HordeRootResponse(RootModel[RootT], HordeResponse):
    """A response whose body is a bare JSON array (or other non-object); read it from ``root``."""

    # RootModel refuses any ``extra`` setting, including the inherited one.
    model_config = ConfigDict(frozen=True, extra=None)


@dataclass(frozen=True, slots=True)
class WireRequest:
    method: HTTPMethod
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | list[Any] | None = None


class HordeRequest(HordeModel):
    """A request to one endpoint.

    Subclasses set ``http_method`` and ``path`` (a template such as ``v2/generate/check/{id}``).
    Fields named in ``path_fields`` fill the template, those in ``query_fields`` become query
    parameters, ``header_fields`` map fields to headers, and everything the caller *set* becomes
    the JSON body: the server's defaults differ from the swagger's, so unset fields are never sent.
    """

    http_method: ClassVar[HTTPMethod] = "GET"
    path: ClassVar[str]
    path_fields: ClassVar[tuple[str, ...]] = ()
    query_fields: ClassVar[tuple[str, ...]] = ()
    header_fields: ClassVar[dict[str, str]] = {}
    has_body: ClassVar[bool] = False

    @classmethod
    def get_default_success_response_type(cls) -> type[HordeResponse]:
        raise NotImplementedError

    @classmethod
    def get_success_status_response_pairs(cls) -> dict[int, type[HordeResponse]]:
        return {200: cls.get_default_success_response_type()}

    def with_fields(self, **changes: Any) -> Self:
        """This request with ``changes``, validated again (a :class:`~pydantic.ValidationError` when
        they don't fit). The fields the caller set stay set, so :meth:`to_wire` still sends them."""
        fields = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self).model_validate({**fields, **changes})

    def to_wire(self) -> WireRequest:
        fields = type(self).model_fields
        values = self.model_dump(by_alias=False, exclude_none=True)
        # Each value fills one path segment, so a "/" or "#" in a name must not split it.
        path_values = {
            (fields[name].alias or name): quote(str(values[name]), safe="") for name in self.path_fields
        }
        headers = {header: str(values[name]) for name, header in self.header_fields.items() if name in values}
        query = {
            (fields[name].alias or name): _query_value(values[name])
            for name in self.query_fields
            if name in values
        }
        body: dict[str, Any] | None = None
        if self.has_body:
            skip = set(self.path_fields) | set(self.query_fields) | set(self.header_fields)
            body = self.model_dump(
                mode="json", by_alias=True, exclude_unset=True, exclude_none=True, exclude=skip
            )
        return WireRequest(
            method=self.http_method,
            path=self.path.format(**path_values),
            headers=headers,
            query=query,
            json=body,
        )


_API_KEY_RE = re.compile(r"[A-Za-z0-9_-]{22}")


class APIKeyRequest(HordeRequest):
    """A request that authenticates with the ``apikey`` header (anonymous by default).

    The key is kept out of ``repr`` and validation errors never echo the input, so a key cannot
    leak into logs through a model or an exception.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    header_fields: ClassVar[dict[str, str]] = {"apikey": APIKEY_HEADER}

    apikey: str = Field(default=ANON_API_KEY, repr=False)

    @field_validator("apikey")
    @classmethod
    def _check_apikey(cls, value: str) -> str:
        if value == ANON_API_KEY or _API_KEY_RE.fullmatch(value) or _is_uuid(value):
            return value
        raise ValueError(
            "apikey must be the anonymous key, a 22-character AI Horde API key or a shared-key UUID"
        )

    @property
    def is_anonymous(self) -> bool:
        return self.apikey == ANON_API_KEY


class BaseJobRequest(HordeRequest):
    """A request about one generation, addressed by the id the async request returned."""

    path_fields: ClassVar[tuple[str, ...]] = ("id_",)

    id_: str = Field(alias="id", min_length=1)


J = TypeVar("J", bound=BaseJobRequest)


class BaseAsyncRequest(APIKeyRequest):
    """A request that queues work on the Horde and answers with the id to follow it by.

    A session builds the follow-up requests from that id: ``check_request_type`` is what to
    poll, ``status_request_type`` fetches the results, and ``cleanup_request_type`` cancels
    the work (and returns the partial results) when the caller gives up.
    """

    http_method: ClassVar[HTTPMethod] = "POST"
    has_body: ClassVar[bool] = True

    check_request_type: ClassVar[type[BaseJobRequest]]
    status_request_type: ClassVar[type[BaseJobRequest]]
    cleanup_request_type: ClassVar[type[BaseJobRequest]]
    dry_run_response_type: ClassVar[type[HordeResponse] | None] = None

    @classmethod
    def get_success_status_response_pairs(cls) -> dict[int, type[HordeResponse]]:
        pairs = {202: cls.get_default_success_response_type()}
        if cls.dry_run_response_type is not None:
            pairs[200] = cls.dry_run_response_type
        return pairs

    def get_number_of_results_expected(self) -> int:
        raise NotImplementedError

    def build_check_request(self, gen_id: str) -> BaseJobRequest:
        return self._follow_up(self.check_request_type, gen_id)

    def build_status_request(self, gen_id: str) -> BaseJobRequest:
        return self._follow_up(self.status_request_type, gen_id)

    def build_cleanup_request(self, gen_id: str) -> BaseJobRequest:
        return self._follow_up(self.cleanup_request_type, gen_id)

    def _follow_up(self, request_type: type[J], gen_id: str) -> J:
        # Follow-ups that authenticate (alchemy status) reuse the key the work was queued with.
        data: dict[str, str] = {"id": gen_id}
        if "apikey" in request_type.model_fields:
            data["apikey"] = self.apikey
        return request_type.model_validate(data)


class BaseGenerateAsyncRequest(BaseAsyncRequest):
    """The worker-selection and accounting fields image and text requests share."""

    trusted_workers: bool = False
    validated_backends: bool = False
    slow_workers: bool = True
    """False costs 20% more kudos and always requires them upfront."""
    extra_slow_workers: bool = False
    workers: list[str] = Field(default_factory=list)
    worker_blacklist: bool = False
    """Treat ``workers`` as the ones to avoid rather than the only ones to use."""
    dry_run: bool = False
    disable_batching: bool = False
    allow_downgrade: bool = False
    """Shrink the request instead of failing with ``KudosUpfront``."""
    style: str | None = Field(default=None, min_length=3, max_length=1024)
    """A style id or name; it replaces the prompt, models and params."""
    proxied_account: str | None = None


class BaseGenerateAsyncResponse(HordeResponse):
    """Queued (202), even when no worker can serve it yet: ``message`` then says so."""

    id_: str = Field(alias="id")
    kudos: float
    message: str | None = None


class BaseGenerateDryRunResponse(HordeResponse):
    """The price of a ``dry_run`` request (200); nothing was queued."""

    kudos: float


class GenMetadataEntry(HordeResponse):
    """A note about one generation: a lora that failed to download, a censored image…"""

    type_: Annotated[METADATA_TYPE | str, BeforeValidator(enum_or_raw(METADATA_TYPE))] = Field(alias="type")
    value: Annotated[METADATA_VALUE | str, BeforeValidator(enum_or_raw(METADATA_VALUE))]
    ref: str | None = None


class BaseGeneration(HordeResponse):
    """What image and text generations share in a status response."""

    worker_id: str | None = None
    worker_name: str | None = None
    model: str | None = None
    state: Annotated[GENERATION_STATE | str, BeforeValidator(enum_or_raw(GENERATION_STATE))] = (
        GENERATION_STATE.ok
    )
    gen_metadata: ResponseList[GenMetadataEntry] = Field(default_factory=list)

    @property
    def is_censored(self) -> bool:
        return self.state in (GENERATION_STATE.censored, GENERATION_STATE.csam) or any(
            entry.type_ == METADATA_TYPE.censorship for entry in self.gen_metadata
        )


class BaseGenerationProgressResponse(HordeResponse):
    """The progress fields of ``generate/check`` (and of the status responses that include them).

    ``done`` turns true once nothing is left to deliver, and also when the request faulted.
    """

    finished: int
    processing: int
    restarted: int
    waiting: int
    done: bool
    faulted: bool = False
    wait_time: int
    queue_position: int
    kudos: float
    is_possible: bool = True

    @property
    def is_final(self) -> bool:
        """Polling can stop: everything asked for was delivered, or the request faulted."""
        return self.done or self.faulted

    @property
    def is_faulted(self) -> bool:
        return self.faulted

    def is_job_complete(self, number_of_results_expected: int) -> bool:
        return self.is_final


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
