"""The PostgreSQL schema as numbered migrations, tracked in the ``schema_version`` table.

Append new migrations; never edit one that has shipped. Each one's SQL runs as one multi-statement
script, inside the transaction that applies every pending migration. Keep the column names and
meanings in step with ``sqlite_migrations``: the repositories' SQL is shared.

JSON stays ``text`` (not ``jsonb``) so what is read back is byte-for-byte what was written, as with
SQLite; timestamps are ``timestamptz`` and come back timezone-aware in UTC.
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
            discord_id bigint PRIMARY KEY,
            encrypted_api_key text NOT NULL,
            horde_user_id bigint NOT NULL,
            horde_username text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );

        CREATE TABLE guild_settings (
            guild_id bigint NOT NULL,
            key text NOT NULL,
            value_json text NOT NULL,
            updated_at timestamptz NOT NULL,
            updated_by bigint NOT NULL,
            PRIMARY KEY (guild_id, key)
        );

        CREATE TABLE guild_settings_audit (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            guild_id bigint NOT NULL,
            key text NOT NULL,
            old_value_json text,
            new_value_json text,
            actor_id bigint NOT NULL,
            at timestamptz NOT NULL
        );
        CREATE INDEX guild_settings_audit_by_guild ON guild_settings_audit (guild_id, id);

        CREATE TABLE jobs (
            id text PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('image', 'text', 'alchemy')),
            state text NOT NULL CHECK (state IN ('pending', 'submitted', 'done', 'cancelled', 'failed')),
            guild_id bigint,
            channel_id bigint NOT NULL,
            message_id bigint,
            user_id bigint NOT NULL,
            key_owner text NOT NULL CHECK (key_owner IN ('user', 'anonymous', 'sponsor')),
            horde_id text,
            request_json text NOT NULL,
            params_json text NOT NULL,
            result_json text,
            error text,
            kudos double precision,
            shard_id bigint,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
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
            guild_id bigint PRIMARY KEY,
            encrypted_api_key text NOT NULL,
            horde_username text NOT NULL,
            updated_at timestamptz NOT NULL,
            updated_by bigint NOT NULL
        );

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
        ALTER TABLE jobs ADD COLUMN delivery text
            CHECK (delivery IN ('pending', 'delivered', 'failed'));
        ALTER TABLE jobs ADD COLUMN delivery_error text;
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
        CREATE FUNCTION refuse_unbound_api_key() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF left(NEW.encrypted_api_key, 1) <> 'a' AND (
                TG_OP = 'INSERT' OR NEW.encrypted_api_key IS DISTINCT FROM OLD.encrypted_api_key
            ) THEN
                RAISE EXCEPTION '%.encrypted_api_key: only keys bound to their row may be stored',
                    TG_TABLE_NAME USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$;
        CREATE TRIGGER users_key_bound BEFORE INSERT OR UPDATE OF encrypted_api_key ON users
            FOR EACH ROW EXECUTE FUNCTION refuse_unbound_api_key();
        CREATE TRIGGER guild_sponsor_keys_key_bound
            BEFORE INSERT OR UPDATE OF encrypted_api_key ON guild_sponsor_keys
            FOR EACH ROW EXECUTE FUNCTION refuse_unbound_api_key();
        """,
    ),
    Migration(
        6,
        "user_profile_shared",
        # Whether other members may see a member's AI Horde account with /user: an opt-in, so every
        # member who logged in before it existed starts private.
        """
        ALTER TABLE users ADD COLUMN profile_shared boolean NOT NULL DEFAULT false;
        """,
    ),
    Migration(
        7,
        "member_settings",
        # A member's own defaults (/settings): one JSON document, so that a new field needs no
        # migration; deleted with /settings reset or /logout forget.
        """
        CREATE TABLE member_settings (
            discord_id bigint PRIMARY KEY,
            settings_json text NOT NULL,
            updated_at timestamptz NOT NULL
        );
        """,
    ),
    # SQLite reads the same types (double precision: REAL affinity; bigint: INTEGER).
    Migration(8, "submit_queue", SUBMIT_QUEUE_SCHEMA),
)

__all__ = ["MIGRATIONS", "Migration"]
