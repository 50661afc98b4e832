"""Users and kudos: ``v2/find_user``, ``v2/users/{user_id}``, ``v2/kudos/transfer``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bot.horde.apimodels.base import APIKeyRequest, HordeRequest, HordeResponse, HTTPMethod, ResponseList
from bot.horde.consts import IDEMPOTENCY_KEY_HEADER


class UserKudosDetails(HordeResponse):
    accumulated: float | None = None
    gifted: float | None = None
    donated: float | None = None
    admin: float | None = None
    received: float | None = None
    recurring: float | None = None
    awarded: float | None = None
    styled: float | None = None


class UserThingRecords(HordeResponse):
    megapixelsteps: float | None = None
    tokens: int | None = None


class UserAmountRecords(HordeResponse):
    image: int | None = None
    text: int | None = None
    interrogation: int | None = None


class UserRecords(HordeResponse):
    usage: UserThingRecords | None = None
    contribution: UserThingRecords | None = None
    fulfillment: UserAmountRecords | None = None
    request: UserAmountRecords | None = None
    style: UserAmountRecords | None = None


class UsageDetails(HordeResponse):
    megapixelsteps: float | None = None
    requests: int | None = None


class ContributionsDetails(HordeResponse):
    megapixelsteps: float | None = None
    fulfillments: int | None = None


class UserActiveGenerations(HordeResponse):
    text: ResponseList[str] = Field(default_factory=list)
    image: ResponseList[str] = Field(default_factory=list)
    alchemy: ResponseList[str] = Field(default_factory=list)


class MonthlyKudos(HordeResponse):
    amount: int | None = None
    last_received: str | None = None


class ResponseModelStylesUser(HordeResponse):
    name: str | None = None
    id_: str | None = Field(default=None, alias="id")
    type_: str | None = Field(default=None, alias="type")


class UserDetailsResponse(HordeResponse):
    """``UserDetails``. Every field is optional: which ones appear depends on who asks.

    Looking yourself up (``find_user``) adds ``worker_ids``, ``sharedkey_ids``, ``contact`` and
    ``active_generations``; with a shared key the username ends in `` (Shared Key: name)``.
    """

    username: str | None = None
    id_: int | None = Field(default=None, alias="id")
    kudos: float | None = None
    evaluating_kudos: float | None = None
    concurrency: int | None = None
    worker_invited: int | None = None
    moderator: bool | None = None
    kudos_details: UserKudosDetails | None = None
    worker_count: int | None = None
    worker_ids: list[str] | None = None
    styles: list[ResponseModelStylesUser] | None = None
    sharedkey_ids: list[str] | None = None
    active_generations: UserActiveGenerations | None = None
    monthly_kudos: MonthlyKudos | None = None
    trusted: bool | None = None
    flagged: bool | None = None
    vpn: bool | None = None
    service: bool | None = None
    education: bool | None = None
    customizer: bool | None = None
    special: bool | None = None
    deleted: bool | None = None
    suspicious: int | None = None
    pseudonymous: bool | None = None
    contact: str | None = Field(default=None, repr=False)
    admin_comment: str | None = None
    proxy_passkey: str | None = Field(default=None, repr=False)
    account_age: int | None = None
    usage: UsageDetails | None = None
    contributions: ContributionsDetails | None = None
    records: UserRecords | None = None


class FindUserRequest(APIKeyRequest):
    """Who owns this key. An unknown key is 404 ``UserNotFound``; a missing one 401."""

    path: ClassVar[str] = "v2/find_user"

    @classmethod
    def get_default_success_response_type(cls) -> type[UserDetailsResponse]:
        return UserDetailsResponse


class SingleUserDetailsRequest(HordeRequest):
    path: ClassVar[str] = "v2/users/{user_id}"
    path_fields: ClassVar[tuple[str, ...]] = ("user_id",)

    user_id: int = Field(ge=0)

    @classmethod
    def get_default_success_response_type(cls) -> type[UserDetailsResponse]:
        return UserDetailsResponse


class KudosTransferResponse(HordeResponse):
    transferred: float


class KudosTransferRequest(APIKeyRequest):
    """Every refusal is a 400 with an rc (``KudosTransferToSelf``, ``InvalidTargetUsername``…).

    ``idempotency_key`` travels as the ``Idempotency-Key`` header: a retried transfer with the
    same key is applied once.
    """

    http_method: ClassVar[HTTPMethod] = "POST"
    path: ClassVar[str] = "v2/kudos/transfer"
    has_body: ClassVar[bool] = True
    header_fields: ClassVar[dict[str, str]] = {
        **APIKeyRequest.header_fields,
        "idempotency_key": IDEMPOTENCY_KEY_HEADER,
    }

    username: str = Field(min_length=1)
    """``alias#id``, or a shared-key id."""
    amount: int = Field(gt=0)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)

    @classmethod
    def get_default_success_response_type(cls) -> type[KudosTransferResponse]:
        return KudosTransferResponse
