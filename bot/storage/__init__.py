"""Persistence: a small repository interface (``base``) and its backends, chosen by the URL scheme."""

from __future__ import annotations

from bot.storage.base import (
    DeliveryState,
    EncryptedColumn,
    GuildSettingAuditRecord,
    GuildSettingsRecord,
    GuildSettingsRepository,
    GuildSettingsWatcher,
    GuildSponsorKeyRecord,
    GuildSponsorKeyRepository,
    InvalidTransitionError,
    JobChanges,
    JobKind,
    JobRecord,
    JobRepository,
    JobState,
    KeyOwner,
    MemberSettingsRepository,
    NotFoundError,
    SchemaError,
    Storage,
    StorageError,
    UserRecord,
    UserRepository,
    guild_shard,
    new_job_id,
)
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage
from bot.storage.submit_queue import Claim, SubmitQueue, Window
from bot.storage.url import DatabaseURL, DatabaseURLError, PostgresURL, SQLiteURL, parse_database_url


def open_storage(url: str) -> Storage:
    """The storage for ``url``, not yet connected: ``async with open_storage(url) as storage: ...``.

    ``sqlite:///<file path>`` or ``sqlite://:memory:`` for SQLite, ``postgresql://…`` (or
    ``postgres://…``) for PostgreSQL. Raises :class:`DatabaseURLError` for a malformed URL or an
    unsupported scheme.
    """
    location = parse_database_url(url)
    if isinstance(location, PostgresURL):
        return PostgresStorage(location)
    return SQLiteStorage(location)


__all__ = [
    "Claim",
    "DatabaseURL",
    "DatabaseURLError",
    "DeliveryState",
    "EncryptedColumn",
    "GuildSettingAuditRecord",
    "GuildSettingsRecord",
    "GuildSettingsRepository",
    "GuildSettingsWatcher",
    "GuildSponsorKeyRecord",
    "GuildSponsorKeyRepository",
    "InvalidTransitionError",
    "JobChanges",
    "JobKind",
    "JobRecord",
    "JobRepository",
    "JobState",
    "KeyOwner",
    "MemberSettingsRepository",
    "NotFoundError",
    "PostgresStorage",
    "PostgresURL",
    "SQLiteStorage",
    "SQLiteURL",
    "SchemaError",
    "Storage",
    "StorageError",
    "SubmitQueue",
    "UserRecord",
    "UserRepository",
    "Window",
    "guild_shard",
    "new_job_id",
    "open_storage",
    "parse_database_url",
]
