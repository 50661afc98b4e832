"""The storage layer's contract: frozen row models, errors and the repository protocols."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeAlias, TypedDict, Unpack

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.crypto import is_encrypted_token
from bot.storage.submit_queue import SubmitQueue


class StorageError(Exception):
    """Base class of the storage layer's errors."""


class SchemaError(StorageError):
    """The database schema cannot be used: too new for this code, or a migration failed."""


class ConstraintError(StorageError):
    """A write broke a constraint of the schema (a duplicate key, a failed CHECK)."""


class NotFoundError(StorageError, LookupError):
    pass


class InvalidTransitionError(StorageError, ValueError):
    """A job update would leave a terminal state or go back to ``pending``."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobState(StrEnum):
    PENDING = "pending"  # created, not yet accepted by the Horde
    SUBMITTED = "submitted"  # accepted: has a horde_id
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATES


class DeliveryState(StrEnum):
    """Whether a finished job's end reached its member, journalled apart from the generation: the
    Horde may be done while Discord has not shown it yet (rate limits, an outage, a restart)."""

    PENDING = "pending"  # ended; its message does not show the end yet
    DELIVERED = "delivered"
    FAILED = "failed"  # could not be shown, for good: ``delivery_error`` says why


_TERMINAL_STATES = frozenset({JobState.DONE, JobState.CANCELLED, JobState.FAILED})
UNFINISHED_STATES: tuple[JobState, ...] = (JobState.PENDING, JobState.SUBMITTED)

JobKind: TypeAlias = Literal["image", "text", "alchemy"]
KeyOwner: TypeAlias = Literal["user", "anonymous", "sponsor"]
RowKey: TypeAlias = int | str


GuildSettingsWatcher: TypeAlias = Callable[[int | None], None]
"""Told that a guild's settings or sponsor key changed in the database (``None``: changes may have
been missed, so forget every guild). See :meth:`Storage.watch_guild_settings`."""


def guild_shard(guild_id: int | None, shard_count: int) -> int:
    """The shard that receives a guild's events (discord.py's rule); a DM's is shard 0."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def check_transition(old: JobState, new: JobState) -> None:
    if old == new:
        return
    if old.is_terminal:
        raise InvalidTransitionError(f"job state {old} is terminal; it cannot become {new}")
    if new is JobState.PENDING:
        raise InvalidTransitionError(f"job state {old} cannot go back to {new}")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UserRecord(_Record):
    """A Discord user's registered Horde account. The API key is stored only as a KeyRing token."""

    discord_id: int = Field(gt=0)
    encrypted_api_key: str = Field(repr=False)
    horde_user_id: int = Field(ge=0)
    horde_username: str
    profile_shared: bool = False
    """Whether other members may see this account with /user. Off until the member turns it on;
    only :meth:`UserRepository.set_profile_shared` changes it once the row exists."""
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)

    @field_validator("encrypted_api_key")
    @classmethod
    def _must_be_ciphertext(cls, value: str) -> str:
        # Guards against a caller handing over the plaintext key by mistake.
        if not is_encrypted_token(value):
            raise ValueError("must be a KeyRing token (v<version>:<token>), never a plaintext key")
        return value


class GuildSettingsRecord(_Record):
    """A guild's overridden settings (name → JSON value); ``updated_at`` is ``None`` when there are none."""

    guild_id: int
    values: Mapping[str, Any]
    updated_at: AwareDatetime | None


class GuildSettingAuditRecord(_Record):
    """One change of a guild setting. A ``None`` JSON side means the setting was (or became) unset."""

    id: int
    guild_id: int
    key: str
    old_value_json: str | None
    new_value_json: str | None
    actor_id: int
    at: AwareDatetime


class GuildSponsorKeyRecord(_Record):
    """A server's sponsor key: the Horde key members without their own generate with. Ciphertext only."""

    guild_id: int
    encrypted_api_key: str = Field(repr=False)
    horde_username: str
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    updated_by: int

    @field_validator("encrypted_api_key")
    @classmethod
    def _must_be_ciphertext(cls, value: str) -> str:
        if not is_encrypted_token(value):
            raise ValueError("must be a KeyRing token (v<version>:<token>), never a plaintext key")
        return value


def _check_json(value: str | None) -> str | None:
    if value is not None:
        json.loads(value)
    return value


class JobRecord(_Record):
    """One generation in the journal, enough to resume polling after a restart or to rerun it."""

    id: str = Field(default_factory=new_job_id, pattern=r"^[0-9a-f]{32}$")
    kind: JobKind
    state: JobState = JobState.PENDING
    guild_id: int | None = None
    channel_id: int
    message_id: int | None = None
    user_id: int
    key_owner: KeyOwner
    horde_id: str | None = None
    request_json: str
    params_json: str
    result_json: str | None = None
    error: str | None = None
    kudos: float | None = None
    shard_id: int | None = None
    delivery: DeliveryState | None = None
    """``None`` until the job ends (and for jobs journalled before delivery was)."""
    delivery_error: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)

    @field_validator("request_json")
    @classmethod
    def _request_without_apikey(cls, value: str) -> str:
        body = json.loads(value)
        if isinstance(body, dict) and "apikey" in body:
            raise ValueError("the journalled request must not contain the apikey")
        return value

    @field_validator("params_json", "result_json")
    @classmethod
    def _valid_json(cls, value: str | None) -> str | None:
        return _check_json(value)

    @model_validator(mode="after")
    def _submitted_has_horde_id(self) -> JobRecord:
        if self.state is JobState.SUBMITTED and not self.horde_id:
            raise ValueError("a submitted job must have a horde_id")
        return self


class JobChanges(TypedDict, total=False):
    """The job fields :meth:`JobRepository.update` may change; ``updated_at`` is set by the storage."""

    state: JobState
    channel_id: int
    message_id: int | None
    horde_id: str | None
    result_json: str | None
    error: str | None
    kudos: float | None
    shard_id: int | None
    delivery: DeliveryState | None
    delivery_error: str | None


class EncryptedColumn(Protocol):
    """A column of KeyRing tokens; ``bot.storage.keys_at_rest.rotate_all`` re-encrypts each one."""

    @property
    def name(self) -> str: ...

    def bound_to(self, row: RowKey) -> str:
        """Whose token the row holds (``bot.crypto.binding``): its ciphertext is bound to that."""
        ...

    async def read_tokens(self) -> dict[RowKey, str]: ...

    async def write_tokens(
        self, tokens: Mapping[RowKey, str], *, expected: Mapping[RowKey, str] | None = None
    ) -> int:
        """Store ``tokens``; with ``expected``, only in rows that still hold the expected token.

        Returns how many rows were written.
        """
        ...


class UserRepository(Protocol):
    async def get(self, discord_id: int) -> UserRecord | None: ...

    async def upsert(self, record: UserRecord) -> UserRecord:
        """Insert or replace; keeps the first ``created_at`` and stamps ``updated_at``.

        ``profile_shared`` is not written: a new row starts private and an existing one keeps its
        choice (a new /login, or a record read before the member changed it, never flips it).
        """
        ...

    async def set_profile_shared(self, discord_id: int, shared: bool) -> bool:
        """Turn the member's /user sharing on or off; returns whether the member has a row."""
        ...

    async def delete(self, discord_id: int) -> bool: ...

    async def update_encrypted_keys(self, keys: Mapping[int, str]) -> None:
        """Replace the encrypted keys of the given users atomically."""
        ...


class GuildSettingsRepository(Protocol):
    async def get(self, guild_id: int) -> GuildSettingsRecord: ...

    async def get_all(self, guild_id: int) -> dict[str, Any]: ...

    async def set(self, guild_id: int, key: str, value: Any, actor_id: int) -> bool:
        """Returns whether the value changed; only a change writes an audit row."""
        ...

    async def set_many(self, guild_id: int, values: Mapping[str, Any], actor_id: int) -> list[str]:
        """Atomically set several values; returns the keys that changed."""
        ...

    async def reset(self, guild_id: int, key: str, actor_id: int) -> bool:
        """Back to the default (row removed); returns whether a value was set."""
        ...

    async def audit(self, guild_id: int, limit: int = 50) -> list[GuildSettingAuditRecord]:
        """Newest first."""
        ...


class GuildSponsorKeyRepository(Protocol):
    """Each change is audited (key ``sponsor_key``) with the Horde username only, never the key."""

    async def get(self, guild_id: int) -> GuildSponsorKeyRecord | None: ...

    async def set(self, record: GuildSponsorKeyRecord) -> None:
        """Insert or replace, and audit it as ``record.updated_by``, in one transaction."""
        ...

    async def delete(self, guild_id: int, actor_id: int) -> bool:
        """Remove the key and audit it; returns whether there was one."""
        ...


class JobRepository(Protocol):
    async def create(self, record: JobRecord) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def get_by_horde_id(self, horde_id: str) -> JobRecord | None: ...

    async def get_by_message(self, channel_id: int, message_id: int) -> JobRecord | None:
        """The job whose result is (or was last) shown in that message, the newest if several."""
        ...

    async def update(self, job_id: str, **changes: Unpack[JobChanges]) -> JobRecord:
        """Raises NotFoundError, InvalidTransitionError, or ValueError for an invalid value."""
        ...

    async def list_unfinished(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        """Pending and submitted jobs, oldest first: every one (``None``) or those of ``shard_ids``.

        A job journalled without a shard (before sharding) counts as shard 0, the shard of DMs,
        so exactly one process of a sharded bot picks it up.
        """
        ...

    async def list_undelivered(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        """Ended jobs whose end is not shown yet (``delivery`` pending), oldest first; shards as in
        :meth:`list_unfinished`."""
        ...

    async def count_unfinished(self, guild_id: int | None, user_id: int) -> tuple[int, int]:
        """``(user_id``'s, everyone's``)`` pending and submitted jobs in ``guild_id`` (``None``: DMs),
        every shard's."""
        ...

    async def list_recent(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        """Newest first."""
        ...

    async def kudos_spent(
        self,
        *,
        since: datetime,
        guild_id: int | None = None,
        user_id: int | None = None,
        key_owners: Sequence[KeyOwner] | None = None,
    ) -> float:
        """The kudos the jobs created at or after ``since`` cost, filtered by whichever of guild,
        user and key owners are given. Jobs without a recorded cost count as 0."""
        ...


class MemberSettingsRepository(Protocol):
    """A member's /settings, one JSON document each (its fields are the services')."""

    async def get(self, discord_id: int) -> str | None: ...

    async def set(self, discord_id: int, settings_json: str) -> None:
        """Insert or replace the member's document."""
        ...

    async def delete(self, discord_id: int) -> bool:
        """Returns whether the member had saved settings."""
        ...


class Storage(Protocol):
    """Use as ``async with open_storage(url) as storage:`` or call connect()/close() yourself."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def guild_settings(self) -> GuildSettingsRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def sponsor_keys(self) -> GuildSponsorKeyRepository: ...

    @property
    def member_settings(self) -> MemberSettingsRepository: ...

    @property
    def submit_queue(self) -> SubmitQueue: ...

    @property
    def encrypted_columns(self) -> Sequence[EncryptedColumn]: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Atomic multi-statement work; the repositories' calls inside it join it. Nests as savepoints."""
        ...

    def watch_guild_settings(self, watcher: GuildSettingsWatcher) -> Callable[[], None]:
        """Call ``watcher`` (synchronously, on the event loop) when a guild's settings or sponsor key
        change in the database, whoever wrote them; returns a function that stops it.

        For caches shared by several processes. PostgreSQL pushes every committed change
        (LISTEN/NOTIFY) and calls ``watcher(None)`` whenever it (re)starts listening, since changes
        may have been missed meanwhile. SQLite cannot tell other processes' writes, so it never
        calls it: caches over SQLite need a time limit.
        """
        ...

    async def __aenter__(self) -> Storage: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
