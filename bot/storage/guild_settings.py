"""Server settings, their audit trail and sponsor keys in SQL, written once for both backends
(``storage.guild_settings``, ``storage.sponsor_keys``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from bot.storage.base import GuildSettingAuditRecord, GuildSettingsRecord, GuildSponsorKeyRecord
from bot.storage.encrypted_column import SQLEncryptedColumn

if TYPE_CHECKING:
    from bot.storage.sql import Clock, Database

SPONSOR_AUDIT_KEY: Final = "sponsor_key"


def _encode_setting(key: str, value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"guild setting {key!r}: the value is not JSON-serialisable") from None


def _check_setting_key(key: str) -> str:
    if not key.strip():
        raise ValueError("a guild setting needs a non-empty name")
    if not key.isprintable():
        # PostgreSQL text cannot hold NUL; no setting name needs control or separator characters.
        raise ValueError("a guild setting name must be printable (no control or separator characters)")
    return key


async def _audit(
    db: Database[Any],
    guild_id: int,
    key: str,
    old_json: str | None,
    new_json: str | None,
    actor_id: int,
    at: datetime,
) -> None:
    await db.execute(
        "INSERT INTO guild_settings_audit (guild_id, key, old_value_json, new_value_json, actor_id, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        (guild_id, key, old_json, new_json, actor_id, at),
    )


def _username_json(record: GuildSponsorKeyRecord | None) -> str | None:
    return None if record is None else _encode_setting(SPONSOR_AUDIT_KEY, record.horde_username)


class SQLGuildSettings:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int) -> GuildSettingsRecord:
        rows = await self._db.fetch(
            "SELECT key, value_json, updated_at FROM guild_settings WHERE guild_id = $1 ORDER BY key",
            (guild_id,),
        )
        return GuildSettingsRecord(
            guild_id=guild_id,
            values={row["key"]: json.loads(row["value_json"]) for row in rows},
            updated_at=max((row["updated_at"] for row in rows), default=None),
        )

    async def get_all(self, guild_id: int) -> dict[str, Any]:
        return dict((await self.get(guild_id)).values)

    async def set(self, guild_id: int, key: str, value: Any, actor_id: int) -> bool:
        return bool(await self.set_many(guild_id, {key: value}, actor_id))

    async def set_many(self, guild_id: int, values: Mapping[str, Any], actor_id: int) -> list[str]:
        encoded = {_check_setting_key(key): _encode_setting(key, value) for key, value in values.items()}
        async with self._db.transaction():
            return [
                key
                for key, value_json in encoded.items()
                if await self._write(guild_id, key, value_json, actor_id)
            ]

    async def reset(self, guild_id: int, key: str, actor_id: int) -> bool:
        async with self._db.transaction():
            return await self._write(guild_id, _check_setting_key(key), None, actor_id)

    async def audit(self, guild_id: int, limit: int = 50) -> list[GuildSettingAuditRecord]:
        rows = await self._db.fetch(
            "SELECT * FROM guild_settings_audit WHERE guild_id = $1 ORDER BY id DESC LIMIT $2",
            (guild_id, limit),
        )
        return [GuildSettingAuditRecord.model_validate(row) for row in rows]

    async def _write(self, guild_id: int, key: str, value_json: str | None, actor_id: int) -> bool:
        """Set (or, with ``None``, remove) one value and audit it; must run inside a transaction."""
        row = await self._db.fetchone(
            "SELECT value_json FROM guild_settings WHERE guild_id = $1 AND key = $2", (guild_id, key)
        )
        old_json = None if row is None else row["value_json"]
        if old_json == value_json:
            return False
        now = self._clock()
        if value_json is None:
            await self._db.execute(
                "DELETE FROM guild_settings WHERE guild_id = $1 AND key = $2", (guild_id, key)
            )
        else:
            await self._db.execute(
                """
                INSERT INTO guild_settings (guild_id, key, value_json, updated_at, updated_by)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (guild_id, key) DO UPDATE SET
                    value_json = excluded.value_json,
                    updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by
                """,
                (guild_id, key, value_json, now, actor_id),
            )
        await _audit(self._db, guild_id, key, old_json, value_json, actor_id, now)
        await self._db.guild_settings_changed(guild_id)
        return True


class SQLSponsorKeys:
    """Sponsor keys; each change is audited in ``guild_settings_audit`` under :data:`SPONSOR_AUDIT_KEY`
    with the Horde username as the value, never the key."""

    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.api_key_column: Final = SQLEncryptedColumn(
            db, "guild_sponsor_keys", "encrypted_api_key", "guild_id", "guild"
        )

    async def get(self, guild_id: int) -> GuildSponsorKeyRecord | None:
        row = await self._db.fetchone("SELECT * FROM guild_sponsor_keys WHERE guild_id = $1", (guild_id,))
        return None if row is None else GuildSponsorKeyRecord.model_validate(row)

    async def set(self, record: GuildSponsorKeyRecord) -> None:
        async with self._db.transaction():
            old = await self.get(record.guild_id)
            now = self._clock()
            await self._db.execute(
                """
                INSERT INTO guild_sponsor_keys
                    (guild_id, encrypted_api_key, horde_username, updated_at, updated_by)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (guild_id) DO UPDATE SET
                    encrypted_api_key = excluded.encrypted_api_key,
                    horde_username = excluded.horde_username,
                    updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by
                """,
                (record.guild_id, record.encrypted_api_key, record.horde_username, now, record.updated_by),
            )
            await _audit(
                self._db,
                record.guild_id,
                SPONSOR_AUDIT_KEY,
                _username_json(old),
                _encode_setting(SPONSOR_AUDIT_KEY, record.horde_username),
                record.updated_by,
                now,
            )
            await self._db.guild_settings_changed(record.guild_id)

    async def delete(self, guild_id: int, actor_id: int) -> bool:
        async with self._db.transaction():
            old = await self.get(guild_id)
            if old is None:
                return False
            await self._db.execute("DELETE FROM guild_sponsor_keys WHERE guild_id = $1", (guild_id,))
            await _audit(
                self._db, guild_id, SPONSOR_AUDIT_KEY, _username_json(old), None, actor_id, self._clock()
            )
            await self._db.guild_settings_changed(guild_id)
        return True
