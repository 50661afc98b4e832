"""A member's own defaults (/settings), stored as one JSON document per member.

The storage keeps the document as text and knows nothing of its fields: what they mean, and which
are allowed, is :mod:`bot.services.member_settings`'s (a field added there needs no migration).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.storage.sql import Clock, Database


class SQLMemberSettings:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, discord_id: int) -> str | None:
        row = await self._db.fetchone(
            "SELECT settings_json FROM member_settings WHERE discord_id = $1", (discord_id,)
        )
        return None if row is None else str(row["settings_json"])

    async def set(self, discord_id: int, settings_json: str) -> None:
        await self._db.execute(
            """
            INSERT INTO member_settings (discord_id, settings_json, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (discord_id) DO UPDATE SET
                settings_json = excluded.settings_json, updated_at = excluded.updated_at
            """,
            (discord_id, settings_json, self._clock()),
        )

    async def delete(self, discord_id: int) -> bool:
        return await self._db.execute("DELETE FROM member_settings WHERE discord_id = $1", (discord_id,)) > 0
