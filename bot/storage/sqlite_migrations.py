"""The SQLite schema as numbered migrations, tracked with ``PRAGMA user_version``.

Append new migrations; never edit one that has shipped. Kept in Python rather than ``.sql`` files so
they need no package-data configuration to be installed.
"""

from __future__ import annotations

from typing import Final

from bot.storage.sql import Migration
from bot.storage.submit_queue import SUBMIT_QUEUE_SCHEMA

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "initial",
        """
        CREATE TABLE users (
            discord_id INTEGER PRIMARY KEY,
            encrypted_api_key TEXT NOT NULL,
            horde_user_id INTEGER NOT NULL,
            horde_username TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;

        CREATE TABLE guild_settings (
            guild_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value_json TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by INTEGER NOT NULL,
            PRIMARY KEY (guild_id, key)
        ) STRICT;

        CREATE TABLE guild_settings_audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            old_value_json TEXT,
            new_value_json TEXT,
            actor_id INTEGER NOT NULL,
            at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX guild_settings_audit_by_guild ON guild_settings_audit (guild_id, id);

        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('image', 'text', 'alchemy')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'submitted', 'done', 'cancelled', 'failed')),
            guild_id INTEGER,
            channel_id INTEGER NOT NULL,
            message_id INTEGER,
            user_id INTEGER NOT NULL,
            key_owner TEXT NOT NULL CHECK (key_owner IN ('user', 'anonymous', 'sponsor')),
            horde_id TEXT,
            request_json TEXT NOT NULL,
            params_json TEXT NOT NULL,
            result_json TEXT,
            error TEXT,
            kudos REAL,
            shard_id INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;
        CREATE UNIQUE INDEX jobs_by_horde_id ON jobs (horde_id) WHERE horde_id IS NOT NULL;
        CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE state IN ('pending', 'submitted');
        CREATE INDEX jobs_by_user ON jobs (user_id, created_at);
        """,
    ),
    Migration(
        2,
        "guild_sponsor_keys",
        """
        CREATE TABLE guild_sponsor_keys (
            guild_id INTEGER PRIMARY KEY,
            encrypted_api_key TEXT NOT NULL,
            horde_username TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by INTEGER NOT NULL
        ) STRICT;

        CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at);
        """,
    ),
    Migration(
        3,
        "split_max_text_length",
        # max_text_length capped an image's prompt characters and /write's tokens; each stored
        # value keeps doing both, under the two settings that now mean one thing each.
        """
        INSERT INTO guild_settings (guild_id, key, value_json, updated_at, updated_by)
        SELECT guild_id, 'max_text_tokens', value_json, updated_at, updated_by
        FROM guild_settings WHERE key = 'max_text_length';

        UPDATE guild_settings SET key = 'max_prompt_length' WHERE key = 'max_text_length';
        """,
    ),
    Migration(
        4,
        "job_delivery",
        # Whether a finished job's end reached its member, apart from the generation's state: a
        # restart delivers the jobs still pending. Older rows stay NULL (never redelivered).
        """
        ALTER TABLE jobs ADD COLUMN delivery TEXT
            CHECK (delivery IN ('pending', 'delivered', 'failed'));
        ALTER TABLE jobs ADD COLUMN delivery_error TEXT;
        CREATE INDEX jobs_undelivered ON jobs (created_at) WHERE delivery = 'pending';
        """,
    ),
    Migration(
        5,
        "bound_api_keys",
        # Keys are now AES-GCM tokens bound to their row ("a<version>:…", bot/crypto.py). Rows
        # written before stay readable as they are (unbound Fernet "v<version>:…" tokens) until
        # rotate-key binds them; from now on no unbound token may be written, nor moved to a row.
        """
        CREATE TRIGGER users_key_bound_insert BEFORE INSERT ON users
        WHEN substr(NEW.encrypted_api_key, 1, 1) <> 'a'
        BEGIN
            SELECT RAISE(ABORT, 'users.encrypted_api_key: keys must be bound to their row');
        END;
        CREATE TRIGGER users_key_bound_update BEFORE UPDATE OF encrypted_api_key ON users
        WHEN substr(NEW.encrypted_api_key, 1, 1) <> 'a' AND NEW.encrypted_api_key IS NOT OLD.encrypted_api_key
        BEGIN
            SELECT RAISE(ABORT, 'users.encrypted_api_key: keys must be bound to their row');
        END;

        CREATE TRIGGER guild_sponsor_keys_key_bound_insert BEFORE INSERT ON guild_sponsor_keys
        WHEN substr(NEW.encrypted_api_key, 1, 1) <> 'a'
        BEGIN
            SELECT RAISE(ABORT, 'guild_sponsor_keys.encrypted_api_key: keys must be bound to their row');
        END;
        CREATE TRIGGER guild_sponsor_keys_key_bound_update
        BEFORE UPDATE OF encrypted_api_key ON guild_sponsor_keys
        WHEN substr(NEW.encrypted_api_key, 1, 1) <> 'a' AND NEW.encrypted_api_key IS NOT OLD.encrypted_api_key
        BEGIN
            SELECT RAISE(ABORT, 'guild_sponsor_keys.encrypted_api_key: keys must be bound to their row');
        END;
        """,
    ),
    Migration(
        6,
        "user_profile_shared",
        # Whether other members may see a member's AI Horde account with /user: an opt-in, so every
        # member who logged in before it existed starts private.
        """
        ALTER TABLE users ADD COLUMN profile_shared INTEGER NOT NULL DEFAULT 0
            CHECK (profile_shared IN (0, 1));
        """,
    ),
    Migration(
        7,
        "member_settings",
        # A member's own defaults (/settings): one JSON document, so that a new field needs no
        # migration; deleted with /settings reset or /logout forget.
        """
        CREATE TABLE member_settings (
            discord_id INTEGER PRIMARY KEY,
            settings_json TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;
        """,
    ),
    # SQLite reads the same types (double precision: REAL affinity; bigint: INTEGER).
    Migration(8, "submit_queue", SUBMIT_QUEUE_SCHEMA),
)

__all__ = ["MIGRATIONS", "Migration"]
