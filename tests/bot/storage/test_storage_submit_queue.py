"""The bot's one submit queue (migration 8, ``bot/storage/submit_queue.py``): fair order across
servers and members, one budget of sliding windows, several owners (processes). Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

from test_storage_jobs import job

from bot.storage import JobState
from bot.storage.sql import SQLStorage
from bot.storage.submit_queue import OWNER_TTL_S

pytest_plugins = ("storage_fixtures",)

# A budget that never stands in the way, for the tests of the order.
OPEN = ((1_000, 1.0),)


async def drain(storage: SQLStorage[Any], owner: str, *, now: float = 100.0) -> list[str]:
    granted = []
    while (claim := await storage.submit_queue.claim(owner, OPEN, now=now)).job_id is not None:
        granted.append(claim.job_id)
        now += 0.001
    return granted


async def test_servers_then_members_take_turns_whatever_their_backlog(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    for i in range(5):  # one member's backlog from a DM, first in line
        await queue.enqueue(f"dm-{i}", owner="p", user_id=1, guild_id=None)
    for i in range(3):  # two members of one server
        await queue.enqueue(f"a1-{i}", owner="p", user_id=2, guild_id=10)
    await queue.enqueue("a2-0", owner="p", user_id=3, guild_id=10)
    await queue.enqueue("b-0", owner="p", user_id=4, guild_id=20)  # another server, last to come

    assert await drain(storage, "p") == [
        "dm-0", "a1-0", "b-0",  # every server once, in the order they came
        "dm-1", "a2-0",  # then again, the server's member served least recently first
        "dm-2", "a1-1",
        "dm-3", "a1-2",
        "dm-4",
    ]  # fmt: skip


async def test_places_follow_the_fair_order_of_the_whole_bot(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    for i in range(3):
        await queue.enqueue(f"dm-{i}", owner="p", user_id=1, guild_id=None)
    await queue.enqueue("other", owner="q", user_id=2, guild_id=5)
    assert await queue.positions("p") == {"dm-0": 1, "dm-1": 3, "dm-2": 4}
    assert await queue.positions("q") == {"other": 2}
    # /jobs asks by job, whichever process queued it.
    assert await queue.places(["dm-1", "other", "gone"]) == {"dm-1": 3, "other": 2}
    assert await queue.places([]) == {}


async def test_the_budget_holds_every_window_for_all_owners_together(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    windows = ((2, 1.0), (3, 60.0))
    for i in range(6):
        await queue.enqueue(f"p-{i}", owner="p", user_id=1, guild_id=1)
        await queue.enqueue(f"q-{i}", owner="q", user_id=2, guild_id=2)
    first = await queue.claim("p", windows, now=10.0, margin=0.0)
    assert first.job_id == "p-0"
    second = await queue.claim("q", windows, now=10.1, margin=0.0)
    assert second.job_id == "q-0"
    # Two in this second, whoever asks: the next waits until a second after the first.
    third = await queue.claim("p", windows, now=10.2, margin=0.0)
    assert (third.job_id, round(third.wait_s, 3)) == (None, 0.8)
    assert (await queue.claim("p", windows, now=11.0, margin=0.0)).job_id == "p-1"
    # Three in a minute: the fourth waits for the minute after the first.
    fourth = await queue.claim("q", windows, now=12.0, margin=0.0)
    assert (fourth.job_id, round(fourth.wait_s, 3)) == (None, 58.0)
    assert (await queue.claim("q", windows, now=70.0, margin=0.0)).job_id == "q-1"


async def test_an_owner_never_takes_another_owners_turn(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    await queue.claim("q", OPEN, now=1.0)  # q is alive
    await queue.enqueue("q-0", owner="q", user_id=2, guild_id=2)  # and its ticket is next
    await queue.enqueue("p-0", owner="p", user_id=1, guild_id=1)
    waiting = await queue.claim("p", OPEN, now=1.1)
    assert (waiting.job_id, waiting.wait_s) == (None, 0.0)
    assert (await queue.claim("q", OPEN, now=1.2)).job_id == "q-0"
    assert (await queue.claim("p", OPEN, now=1.3)).job_id == "p-0"


async def test_a_dead_owners_tickets_are_dropped(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    await queue.claim("q", OPEN, now=1.0)
    await queue.enqueue("q-0", owner="q", user_id=2, guild_id=2)
    await queue.enqueue("p-0", owner="p", user_id=1, guild_id=1)
    assert (await queue.claim("p", OPEN, now=2.0)).job_id is None  # q's turn: q may still come
    assert (await queue.claim("p", OPEN, now=2.0 + OWNER_TTL_S)).job_id == "p-0"
    assert await queue.positions("q") == {}


async def test_a_ticket_removed_or_left_is_gone(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    await queue.enqueue("a", owner="p", user_id=1, guild_id=1)
    await queue.enqueue("b", owner="p", user_id=1, guild_id=1)
    await queue.enqueue("c", owner="q", user_id=2, guild_id=1)
    await queue.remove("a")
    assert await queue.positions("p") == {"b": 1}
    await queue.leave("p")
    assert await queue.positions("p") == {}
    assert await drain(storage, "q") == ["c"]


async def test_grants_stamped_by_a_clock_that_restarted_are_forgotten(storage: SQLStorage[Any]) -> None:
    queue = storage.submit_queue
    for i in range(2):
        await queue.enqueue(f"p-{i}", owner="p", user_id=1, guild_id=1)
    assert (await queue.claim("p", ((1, 3600.0),), now=50_000.0)).job_id == "p-0"
    # The host rebooted: its monotonic clock starts again near zero.
    assert (await queue.claim("p", ((1, 3600.0),), now=10.0)).job_id == "p-1"


async def test_a_ticket_whose_job_ended_unsent_is_skipped_and_dropped(storage: SQLStorage[Any]) -> None:
    # A process died with this job waiting; its next start failed the job (never sent).
    dead = await storage.jobs.create(job(user_id=1, guild_id=1))
    queue = storage.submit_queue
    await queue.enqueue(dead.id, owner="gone", user_id=1, guild_id=1)
    await queue.enqueue("fresh", owner="p", user_id=2, guild_id=2)
    assert (await queue.claim("p", OPEN, now=1.0)).job_id is None  # still pending: its turn first
    await storage.jobs.update(dead.id, state=JobState.FAILED, error="restarted")
    assert (await queue.claim("p", OPEN, now=1.1)).job_id == "fresh"
    assert await queue.positions("gone") == {}
