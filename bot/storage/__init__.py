"""Persistence: a small repository interface (``base``) and its backends, chosen by the URL scheme."""

from __future__ import annotations

from bot.storage.base import (
    EncryptedColumn,
    GuildSettingAuditRecord,
    GuildSettingsRecord,
    GuildSettingsRepository,
    InvalidTransitionError,
    JobChanges,
    JobKind,
    JobRecord,
    JobRepository,
    JobState,
    KeyOwner,
    NotFoundError,
    SchemaError,
    Storage,
    StorageError,
    UserRecord,
    UserRepository,
    new_job_id,
)
from bot.storage.sqlite import SQLiteStorage
from bot.storage.url import DatabaseURLError, SQLiteURL, parse_database_url


def open_storage(url: str) -> Storage:
    """The storage for ``url``, not yet connected: ``async with open_storage(url) as storage: ...``.

    Raises :class:`DatabaseURLError` for a malformed URL or an unsupported scheme.
    """
    location = parse_database_url(url)
    return SQLiteStorage(location)


__all__ = [
    "DatabaseURLError",
    "EncryptedColumn",
    "GuildSettingAuditRecord",
    "GuildSettingsRecord",
    "GuildSettingsRepository",
    "InvalidTransitionError",
    "JobChanges",
    "JobKind",
    "JobRecord",
    "JobRepository",
    "JobState",
    "KeyOwner",
    "NotFoundError",
    "SQLiteStorage",
    "SQLiteURL",
    "SchemaError",
    "Storage",
    "StorageError",
    "UserRecord",
    "UserRepository",
    "new_job_id",
    "open_storage",
    "parse_database_url",
]
