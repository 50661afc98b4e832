"""The job journal's SQL, written once for both backends (``storage.jobs``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Unpack

from bot.storage.base import (
    UNFINISHED_STATES,
    ConstraintError,
    DeliveryState,
    JobChanges,
    JobRecord,
    KeyOwner,
    NotFoundError,
    StorageError,
    check_transition,
)

if TYPE_CHECKING:
    from bot.storage.sql import Clock, Database

JOB_CHANGEABLE: Final = frozenset(JobChanges.__annotations__)
_UNFINISHED_SQL: Final = ", ".join(f"'{state.value}'" for state in UNFINISHED_STATES)


class SQLJobs:
    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, record: JobRecord) -> JobRecord:
        values = record.model_dump()
        columns = ", ".join(values)
        placeholders = ", ".join(f"${index}" for index in range(1, len(values) + 1))
        try:
            await self._db.execute(
                f"INSERT INTO jobs ({columns}) VALUES ({placeholders})", list(values.values())
            )
        except ConstraintError as exc:
            raise StorageError(f"cannot create job {record.id}: {exc}") from exc
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE id = $1", job_id)

    async def get_by_horde_id(self, horde_id: str) -> JobRecord | None:
        return await self._one("SELECT * FROM jobs WHERE horde_id = $1", horde_id)

    async def get_by_message(self, channel_id: int, message_id: int) -> JobRecord | None:
        return await self._one(
            "SELECT * FROM jobs WHERE channel_id = $1 AND message_id = $2 "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            channel_id,
            message_id,
        )

    async def update(self, job_id: str, **changes: Unpack[JobChanges]) -> JobRecord:
        unknown = sorted(set(changes) - JOB_CHANGEABLE)
        if unknown:
            raise ValueError(f"job fields cannot be updated: {', '.join(unknown)}")
        async with self._db.transaction():
            old = await self.get(job_id)
            if old is None:
                raise NotFoundError(f"job {job_id} does not exist")
            new = JobRecord.model_validate(old.model_dump() | dict(changes) | {"updated_at": self._clock()})
            check_transition(old.state, new.state)
            values = {name: value for name, value in new.model_dump().items() if name in JOB_CHANGEABLE}
            values["updated_at"] = new.updated_at
            assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(values, start=2))
            await self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = $1", [job_id, *values.values()])
        return new

    async def kudos_spent(
        self,
        *,
        since: datetime,
        guild_id: int | None = None,
        user_id: int | None = None,
        key_owners: Sequence[KeyOwner] | None = None,
    ) -> float:
        if key_owners is not None and not key_owners:
            return 0.0
        conditions = ["created_at >= $1"]
        params: list[Any] = [since]
        for column, value in (("guild_id", guild_id), ("user_id", user_id)):
            if value is not None:
                params.append(value)
                conditions.append(f"{column} = ${len(params)}")
        if key_owners is not None:
            first = len(params) + 1
            params.extend(key_owners)
            placeholders = ", ".join(f"${index}" for index in range(first, len(params) + 1))
            conditions.append(f"key_owner IN ({placeholders})")
        row = await self._db.fetchone(
            f"SELECT coalesce(sum(kudos), 0) AS spent FROM jobs WHERE {' AND '.join(conditions)}", params
        )
        return 0.0 if row is None else float(row["spent"])

    async def list_unfinished(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        return await self._list(f"state IN ({_UNFINISHED_SQL})", shard_ids)

    async def list_undelivered(self, shard_ids: Collection[int] | None = None) -> list[JobRecord]:
        return await self._list(f"delivery = '{DeliveryState.PENDING.value}'", shard_ids)

    async def count_unfinished(self, guild_id: int | None, user_id: int) -> tuple[int, int]:
        where = "guild_id IS NULL" if guild_id is None else "guild_id = $2"
        params: list[int] = [user_id] if guild_id is None else [user_id, guild_id]
        row = await self._db.fetchone(
            "SELECT coalesce(sum(CASE WHEN user_id = $1 THEN 1 ELSE 0 END), 0) AS mine, count(*) AS everyone "
            f"FROM jobs WHERE state IN ({_UNFINISHED_SQL}) AND {where}",
            params,
        )
        return (0, 0) if row is None else (int(row["mine"]), int(row["everyone"]))

    async def _list(self, condition: str, shard_ids: Collection[int] | None) -> list[JobRecord]:
        sql = f"SELECT * FROM jobs WHERE {condition}"
        params: list[int] = []
        if shard_ids is not None:
            params = sorted({int(shard) for shard in shard_ids})
            if not params:
                return []
            placeholders = ", ".join(f"${index}" for index in range(1, len(params) + 1))
            # Rows journalled before sharding have no shard: they are shard 0's (see the protocol).
            sql += f" AND coalesce(shard_id, 0) IN ({placeholders})"
        return await self._many(sql + " ORDER BY created_at, id", *params)

    async def list_recent(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        return await self._many(
            "SELECT * FROM jobs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", user_id, limit
        )

    async def _one(self, sql: str, *params: Any) -> JobRecord | None:
        row = await self._db.fetchone(sql, params)
        return None if row is None else JobRecord.model_validate(row)

    async def _many(self, sql: str, *params: Any) -> list[JobRecord]:
        return [JobRecord.model_validate(row) for row in await self._db.fetch(sql, params)]
