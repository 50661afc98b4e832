"""The bot's fair queue in the jobs engine (``bot/services/jobs/turns.py``): one member's backlog
never delays another server's member, and a waiting job is shown its place in the bot's queue.
Against the simulator (its rate limits on) and a real SQLite file; the budget is the Horde's 2 a
second, counted in real seconds."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.services.jobs import CancelReason, JobManager
from bot.services.jobs.turns import SubmitTurns
from bot.storage import JobRecord, JobState, Storage
from horde_simulator import Simulator
from tests.bot.services.jobs.test_engine import ALICE_KEY, BOB_KEY, MakeManager, Recorder, image_request

pytest_plugins = ("tests.bot.services.jobs.test_engine",)

HORDE_BUDGET = ((2, 1.0), (90, 60.0))
BACKLOG = 12


async def imagine(
    manager: JobManager, listener: Recorder, *, key: str, user_id: int, guild_id: int | None
) -> JobRecord:
    return await manager.start_job(
        "image",
        request=image_request(),
        key=key,
        key_owner="user",
        user_id=user_id,
        guild_id=guild_id,
        channel_id=guild_id or user_id,
        message_id=None,
        params={"prompt": "a lighthouse at dusk", "n": 1},
        listener=listener,
    )


def turns_for(storage: Storage) -> SubmitTurns:
    return SubmitTurns(storage.submit_queue, HORDE_BUDGET, poll_s=0.05, place_interval_s=0.2)


async def test_a_members_backlog_from_a_dm_never_delays_another_servers_member(
    make_manager: MakeManager, storage: Storage, horde_sim: Simulator
) -> None:
    manager = make_manager(turns=turns_for(storage))
    backlog = [Recorder() for _ in range(BACKLOG)]
    for listener in backlog:  # 12 /imagine from one member's DMs, all at once
        await imagine(manager, listener, key=ALICE_KEY, user_id=1, guild_id=None)
    other = Recorder()
    started = time.monotonic()
    await imagine(manager, other, key=BOB_KEY, user_id=2, guild_id=500)

    await asyncio.wait_for(other.submitted_to_horde.wait(), 10.0)
    waited = time.monotonic() - started
    ahead = sum(listener.submitted_to_horde.is_set() for listener in backlog)
    # Served right after the backlog's turn in progress: at most the two of this second ahead of it.
    assert ahead <= 2, (ahead, waited)
    assert horde_sim.counters.rate_limited() == 0


async def test_a_waiting_job_sees_its_place_in_the_bots_queue_go_down(
    make_manager: MakeManager, storage: Storage
) -> None:
    manager = make_manager(turns=turns_for(storage))
    backlog = [Recorder() for _ in range(10)]
    for listener in backlog:
        await imagine(manager, listener, key=ALICE_KEY, user_id=1, guild_id=7)
    last = backlog[-1]
    await asyncio.wait_for(last.submitted_to_horde.wait(), 15.0)
    places = [p.queue_position for p in last.progress if p.state == "in_bot_queue"]
    assert places, last.progress
    assert places[0] >= 8, places
    # Shown again each time it halved (2 a second go out: every second or so), never more often.
    assert len(places) >= 2, places
    assert all(later * 2 <= earlier for earlier, later in itertools.pairwise(places)), places


async def test_a_job_cancelled_or_shut_down_while_it_waits_ends_without_asking_the_horde(
    make_manager: MakeManager, storage: Storage, horde_sim: Simulator
) -> None:
    turns = turns_for(storage)
    manager = make_manager(turns=turns)
    listeners = [Recorder() for _ in range(8)]
    records = [await imagine(manager, each, key=ALICE_KEY, user_id=1, guild_id=7) for each in listeners]
    assert await manager.cancel(records[-1].id)
    outcome = await listeners[-1].finished()
    assert outcome.state is JobState.CANCELLED
    assert outcome.cancel_reason is CancelReason.USER
    assert records[-1].id not in await storage.submit_queue.positions(turns.owner)

    await manager.shutdown(2.0)
    ended = [job for record in records if (job := await storage.jobs.get(record.id)) is not None]
    assert all(job.state in (JobState.DONE, JobState.CANCELLED) for job in ended), ended
    # A few went out in the first second; the rest never reached the Horde and ended cancelled.
    never_sent = [job for job in ended if job.horde_id is None]
    assert len(never_sent) >= 4
    assert all(job.state is JobState.CANCELLED for job in never_sent)
    assert horde_sim.counters.calls("generate_async") == len(ended) - len(never_sent)
    assert await storage.submit_queue.positions(turns.owner) == {}
