"""The bot's one queue for the AI Horde's ``generate/async`` budget, in the database every process
of the bot shares (migration 8).

Each job waiting to be sent has a ticket, owned by the process holding its request (only that
process can send it). :meth:`SQLSubmitQueue.claim` hands out one turn at a time, in one
transaction, to whichever ticket is next in the *fair* order, when the budget's sliding windows
have room:

* round-robin across servers (a member's DMs are a "server" of their own), the one served least
  recently first;
* within a server, round-robin across its members, the one served least recently first;
* a member's own tickets in the order they came.

So one member's backlog never delays anyone else: every other member and server with a ticket
is served before that member's second one. Times are the host's monotonic clock
(``bot.clock.monotonic``), which all processes of one host share; a process that stops claiming
for ``OWNER_TTL_S`` is taken for dead and its tickets are dropped; a ticket whose job is no longer
PENDING in the journal (a restart failed it: it was never sent) is skipped and dropped at once.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from bot.storage.sql import Database

Window = tuple[int, float]
"""``(calls, period_s)``: at most ``calls`` grants in any ``period_s`` seconds."""

# Migration 8, the same for SQLite and PostgreSQL. A ticket per job waiting for its turn (owned by
# the process that holds its request), when each server and member was last served (round-robin),
# the grants of the last minute (the budget's sliding windows), the processes alive, and the one
# row every claim locks first. Times are the host's monotonic clock.
SUBMIT_QUEUE_SCHEMA: Final = """
    CREATE TABLE submit_tickets (
        job_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        member TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq bigint NOT NULL
    );
    CREATE TABLE submit_served (scope TEXT PRIMARY KEY, last_served double precision NOT NULL);
    CREATE TABLE submit_grants (at double precision NOT NULL);
    CREATE INDEX submit_grants_at ON submit_grants (at);
    CREATE TABLE submit_owners (owner TEXT PRIMARY KEY, seen_at double precision NOT NULL);
    CREATE TABLE submit_lock (id INTEGER PRIMARY KEY, n bigint NOT NULL);
    INSERT INTO submit_lock (id, n) VALUES (1, 0);
"""
OWNER_TTL_S: Final = 30.0
# A row stamped this far ahead of now was written before the host's clock restarted (a reboot).
_CLOCK_SKEW_S: Final = 5.0
# Served times older than this order like "never served", so they are forgotten.
_SERVED_TTL_S: Final = 3600.0

_FAIR_ORDER: Final = """
    FROM submit_tickets t
    LEFT JOIN submit_served g ON g.scope = t.grp
    LEFT JOIN submit_served m ON m.scope = t.member
    LEFT JOIN jobs j ON j.id = t.job_id
    WHERE j.id IS NULL OR j.state = 'pending'
    ORDER BY COALESCE(g.last_served, -1), COALESCE(m.last_served, -1), t.seq
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`SQLSubmitQueue.claim` found: the job whose turn it is (``None``: none of this
    process's), or how long until the budget has room again (``wait_s``; 0 when it has room)."""

    job_id: str | None
    wait_s: float


def member_scope(user_id: int) -> str:
    return f"user:{user_id}"


def group_scope(guild_id: int | None, user_id: int) -> str:
    return f"guild:{guild_id}" if guild_id is not None else f"dm:{user_id}"


class SubmitQueue(Protocol):
    async def enqueue(self, job_id: str, *, owner: str, user_id: int, guild_id: int | None) -> None: ...

    async def remove(self, job_id: str) -> None: ...

    async def claim(
        self, owner: str, limits: Sequence[Window], *, now: float, margin: float = 0.05
    ) -> Claim: ...

    async def positions(self, owner: str) -> dict[str, int]: ...

    async def places(self, job_ids: Collection[str]) -> dict[str, int]: ...

    async def leave(self, owner: str) -> None: ...


class SQLSubmitQueue:
    def __init__(self, db: Database[Any]) -> None:
        self._db = db

    async def enqueue(self, job_id: str, *, owner: str, user_id: int, guild_id: int | None) -> None:
        async with self._db.transaction():
            rows = await self._db.execute_returning(
                "UPDATE submit_lock SET n = n + 1 WHERE id = 1 RETURNING n"
            )
            await self._db.execute(
                "INSERT INTO submit_tickets (job_id, owner, member, grp, seq) VALUES ($1, $2, $3, $4, $5)",
                (job_id, owner, member_scope(user_id), group_scope(guild_id, user_id), int(rows[0]["n"])),
            )

    async def remove(self, job_id: str) -> None:
        await self._db.execute("DELETE FROM submit_tickets WHERE job_id = $1", (job_id,))

    async def claim(self, owner: str, limits: Sequence[Window], *, now: float, margin: float = 0.05) -> Claim:
        """Grant the next turn if it is ``owner``'s and the budget allows it; see the module."""
        async with self._db.transaction():
            # The first write takes the lock every claimer takes (a row lock on PostgreSQL, the
            # database's write lock on SQLite), so two processes never grant the same slot.
            await self._db.execute("UPDATE submit_lock SET n = n WHERE id = 1")
            await self._forget(owner, now, max((period for _, period in limits), default=0.0))
            wait = await self._budget_wait(limits, now, margin)
            if wait > 0:
                return Claim(None, wait)
            head = await self._db.fetchone(f"SELECT t.job_id, t.owner, t.member, t.grp {_FAIR_ORDER} LIMIT 1")
            if head is None or head["owner"] != owner:
                return Claim(None, 0.0)
            await self._db.execute("DELETE FROM submit_tickets WHERE job_id = $1", (head["job_id"],))
            await self._db.execute("INSERT INTO submit_grants (at) VALUES ($1)", (now,))
            for scope in (head["grp"], head["member"]):
                await self._db.execute(
                    "INSERT INTO submit_served (scope, last_served) VALUES ($1, $2) "
                    "ON CONFLICT (scope) DO UPDATE SET last_served = excluded.last_served",
                    (scope, now),
                )
            return Claim(str(head["job_id"]), 0.0)

    async def positions(self, owner: str) -> dict[str, int]:
        """Each of ``owner``'s tickets and its place (1 = next) in the fair order of the whole bot,
        if the queue were served from now on with no more tickets coming."""
        return {job_id: place for place, (job_id, its_owner) in await self._ordered() if its_owner == owner}

    async def places(self, job_ids: Collection[str]) -> dict[str, int]:
        """The place of each of ``job_ids`` still waiting, whichever process queued it (/jobs)."""
        wanted = set(job_ids)
        if not wanted:
            return {}
        return {job_id: place for place, (job_id, _) in await self._ordered() if job_id in wanted}

    async def _ordered(self) -> list[tuple[int, tuple[str, str]]]:
        rows = await self._db.fetch(
            "SELECT t.job_id, t.owner, t.member, t.grp, t.seq, "
            f"g.last_served AS g_last, m.last_served AS m_last {_FAIR_ORDER}"
        )
        return list(enumerate(fair_order(rows), 1))

    async def leave(self, owner: str) -> None:
        """A process that stops: its tickets go (its jobs are journalled as they end)."""
        async with self._db.transaction():
            await self._db.execute("DELETE FROM submit_tickets WHERE owner = $1", (owner,))
            await self._db.execute("DELETE FROM submit_owners WHERE owner = $1", (owner,))

    async def _forget(self, owner: str, now: float, longest_period: float) -> None:
        await self._db.execute(
            "INSERT INTO submit_owners (owner, seen_at) VALUES ($1, $2) "
            "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
            (owner, now),
        )
        stale = (now - OWNER_TTL_S, now + _CLOCK_SKEW_S)
        await self._db.execute(
            "DELETE FROM submit_tickets WHERE owner IN "
            "(SELECT owner FROM submit_owners WHERE seen_at < $1 OR seen_at > $2)",
            stale,
        )
        await self._db.execute("DELETE FROM submit_owners WHERE seen_at < $1 OR seen_at > $2", stale)
        # A job that ended without its turn (its process died and the next start failed it).
        await self._db.execute(
            "DELETE FROM submit_tickets WHERE job_id IN (SELECT id FROM jobs WHERE state <> 'pending')"
        )
        await self._db.execute(
            "DELETE FROM submit_grants WHERE at < $1 OR at > $2",
            (now - longest_period - 1.0, now + _CLOCK_SKEW_S),
        )
        await self._db.execute(
            "DELETE FROM submit_served WHERE last_served < $1 OR last_served > $2",
            (now - _SERVED_TTL_S, now + _CLOCK_SKEW_S),
        )

    async def _budget_wait(self, limits: Sequence[Window], now: float, margin: float) -> float:
        if not limits:
            return 0.0
        most = max(calls for calls, _ in limits)
        rows = await self._db.fetch("SELECT at FROM submit_grants ORDER BY at DESC LIMIT $1", (most,))
        latest = [float(row["at"]) for row in rows]
        wait = 0.0
        for calls, period in limits:
            if len(latest) >= calls:
                # The window holds ``calls`` grants: the next may start a period after the oldest.
                wait = max(wait, latest[calls - 1] + period + margin - now)
        return wait


def fair_order(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(job_id, owner)`` of every ticket in the order :meth:`SQLSubmitQueue.claim` would grant
    them: its ORDER BY played forward, each grant making its server and member the most recently
    served. A heap of lanes (a member's tickets in one server), re-keyed lazily: keys only grow."""
    lanes: dict[tuple[str, str], deque[tuple[int, str, str]]] = {}
    group_last: dict[str, float] = {}
    member_last: dict[str, float] = {}
    for row in rows:
        group, member = str(row["grp"]), str(row["member"])
        lanes.setdefault((group, member), deque()).append(
            (int(row["seq"]), str(row["job_id"]), str(row["owner"]))
        )
        group_last[group] = -1.0 if row["g_last"] is None else float(row["g_last"])
        member_last[member] = -1.0 if row["m_last"] is None else float(row["m_last"])
    # Rows come in the claim's ORDER BY, so each lane's tickets are in ``seq`` order already.
    clock = max([0.0, *group_last.values(), *member_last.values()])

    def key(lane: tuple[str, str]) -> tuple[float, float, int]:
        return group_last[lane[0]], member_last[lane[1]], lanes[lane][0][0]

    heap = [(*key(lane), lane) for lane in lanes]
    heapq.heapify(heap)
    order = []
    while heap:
        group_at, member_at, seq, lane = heapq.heappop(heap)
        current = key(lane)
        if current != (group_at, member_at, seq):
            heapq.heappush(heap, (*current, lane))
            continue
        _, job_id, owner = lanes[lane].popleft()
        order.append((job_id, owner))
        clock += 1.0
        group_last[lane[0]] = member_last[lane[1]] = clock
        if lanes[lane]:
            heapq.heappush(heap, (*key(lane), lane))
    return order
