"""Two bot processes on different shards of one bot, sharing one PostgreSQL database (issue #8).

``[bot] shard_count = 2``: process A runs shard 0, process B shard 1 (``shard_ids``). Each is a real
OS process (``bot_process.py``) with a virtual Discord of its own holding its shard's server; the
AI Horde simulator runs here on a manual clock, so jobs stay in flight until the test moves it.

PostgreSQL: ``TEST_DATABASE_URL`` when set, else a throwaway server (``tests/pg_server.py``) for
this module; each test gets a fresh schema. Without PostgreSQL the tests are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
from bot_process_driver import (
    BotProcess,
    BotProcesses,
    bot_processes,
    eventually,
    fresh_schema,
    journal,
    reading_journal,
    write_config,
)

from bot.crypto import generate_key_value
from bot.storage import JobRecord, JobState, Storage
from horde_simulator import Knobs, ManualClock, RateLimits, Simulator, SimulatorConfig

SHARD_COUNT: Final = 2
JOBS_PER_SHARD: Final = 3
JOB_S: Final = 10.0
SETTINGS_TTL_S: Final = 3600.0
"""So long that only a pushed invalidation (LISTEN/NOTIFY) can explain another process seeing a
write: the processes' clocks are SimCord's virtual ones, which the settings test never moves."""
MEMBERS: Final = tuple(f"member{i}" for i in range(JOBS_PER_SHARD))
TERMINAL: Final = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


def guild_on_shard(shard_id: int) -> int:
    """A guild id that Discord routes to ``shard_id``: ``(guild_id >> 22) % shard_count``."""
    base = 310_000_000_000  # milliseconds since Discord's epoch, an ordinary 2025-ish id
    return (base * SHARD_COUNT + shard_id) << 22


def world(shard_id: int) -> dict[str, Any]:
    guild = {
        "id": guild_on_shard(shard_id),
        "name": f"Shard {shard_id} server",
        "channels": ["general"],
        "admins": ["admin"],
        "members": list(MEMBERS),
    }
    # Each process has a virtual Discord of its own; apart in time, so their ids never collide.
    return {"guilds": [guild], "clock_offset_s": shard_id * 86_400.0}


# -- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture
async def journal_storage(database_url: str) -> AsyncIterator[Storage]:
    async with reading_journal(database_url) as storage:
        yield storage


@pytest.fixture
async def database_url(postgres_server: str) -> AsyncIterator[str]:
    async with fresh_schema(postgres_server, "sharded") as url:
        yield url


# -- the simulator and the processes -----------------------------------------------------------------


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def horde_sim_config(sim_clock: ManualClock) -> SimulatorConfig:
    knobs = Knobs(
        speed=JOB_S, worker_threads=SHARD_COUNT * JOBS_PER_SHARD, rate_limits=RateLimits(enabled=False)
    )
    return SimulatorConfig(clock=sim_clock, knobs=knobs)


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    async with bot_processes(tmp_path) as started:
        yield started


class Shard:
    """One process of the sharded bot: its config (its ``shard_ids``) and its virtual Discord."""

    def __init__(
        self,
        processes: BotProcesses,
        tmp_path: Path,
        *,
        shard_id: int,
        api_url: str,
        database_url: str,
        keys: str,
    ) -> None:
        self.processes = processes
        self.shard_id = shard_id
        self.guild_id = guild_on_shard(shard_id)
        self.keys = keys
        self.config = write_config(
            tmp_path / f"shard{shard_id}.toml",
            api_url=api_url,
            database_url=database_url,
            bot={"shard_count": SHARD_COUNT, "shard_ids": [shard_id], "settings_cache_ttl_s": SETTINGS_TTL_S},
        )
        self.discord_state = tmp_path / f"discord-shard{shard_id}.pickle"
        self.world = world(shard_id)

    async def start(self) -> BotProcess:
        return await self.processes.start(
            config=self.config,
            discord_state=self.discord_state,
            world=self.world,
            name=f"shard{self.shard_id}",
            keys=self.keys,
        )


@pytest.fixture
def shards(
    processes: BotProcesses, tmp_path: Path, horde_sim: Simulator, database_url: str
) -> tuple[Shard, Shard]:
    keys = generate_key_value(1)  # one bot: every process has the same secrets
    a, b = (
        Shard(
            processes,
            tmp_path,
            shard_id=shard,
            api_url=horde_sim.base_url,
            database_url=database_url,
            keys=keys,
        )
        for shard in range(SHARD_COUNT)
    )
    return a, b


async def imagine_in(shard: Shard, bot: BotProcess) -> tuple[int, list[int]]:
    """/imagine by each member of the shard's server; returns the channel and the messages."""
    channel_id = (await bot.request("world"))[str(shard.guild_id)]["channels"]["general"]
    message_ids = []
    for member in MEMBERS:
        result = await bot.slash(
            shard.guild_id, member, "general", "imagine", prompt=f"{member} on shard {shard.shard_id}"
        )
        message_ids.append(result["response"]["id"])
    return channel_id, message_ids


# -- the tests -----------------------------------------------------------------------------------------


async def test_a_setting_written_through_one_process_is_seen_by_the_other(
    shards: tuple[Shard, Shard],
) -> None:
    a, b = shards
    bot_a, bot_b = await asyncio.gather(a.start(), b.start())
    before = await bot_b.guild_settings(a.guild_id)  # now in B's cache
    assert before["steps"] == "30"

    result = await bot_a.slash(a.guild_id, "admin", "general", "config set", setting="steps", value="12")
    assert result["ephemeral"]
    assert "12" in result["response"]["content"], result

    async def b_sees_it() -> bool:
        return (await bot_b.guild_settings(a.guild_id))["steps"] == "12"

    # Pushed, not expired: B's cache lives an hour of a clock that does not move here.
    await eventually(b_sees_it, step=lambda: asyncio.sleep(0.05), tries=100)
    shown = await bot_a.slash(a.guild_id, "admin", "general", "config show")
    fields = {field["name"]: field["value"] for field in shown["response"]["embeds"][0]["fields"]}
    assert "**steps**: 12" in fields["defaults"].splitlines()
    await bot_a.assert_no_errors()
    await bot_b.assert_no_errors()


async def test_after_a_kill_each_process_resumes_only_its_own_shards_jobs(
    shards: tuple[Shard, Shard], journal_storage: Storage, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    a, b = shards
    bot_a, bot_b = await asyncio.gather(a.start(), b.start())
    channel_a, messages_a = await imagine_in(a, bot_a)
    channel_b, messages_b = await imagine_in(b, bot_b)
    jobs_a = await journal(journal_storage, [(channel_a, message) for message in messages_a])
    jobs_b = await journal(journal_storage, [(channel_b, message) for message in messages_b])
    assert {(job.state, job.shard_id) for job in jobs_a} == {(JobState.SUBMITTED, 0)}
    assert {(job.state, job.shard_id) for job in jobs_b} == {(JobState.SUBMITTED, 1)}
    for bot in (bot_a, bot_b):
        await bot.assert_no_errors()
        await bot.request("snapshot")

    assert await bot_a.kill() == -9
    assert await bot_b.kill() == -9
    sim_clock.advance(JOB_S)  # the Horde finishes every job while both are down
    checks_of_b = {job.horde_id: horde_sim.counters.calls("check", id=job.horde_id) for job in jobs_b}

    # Only shard 0 comes back: it delivers its own jobs and leaves shard 1's alone.
    bot_a = await a.start()

    async def ended(channel: int, messages: list[int]) -> list[JobRecord]:
        return await journal(journal_storage, [(channel, message) for message in messages])

    async def a_done() -> bool:
        return all(job.state in TERMINAL for job in await ended(channel_a, messages_a))

    await eventually(a_done, step=bot_a.advance, tries=4)
    await bot_a.advance()  # the last results may wait for their turn in the channel's edit budget
    assert {job.state for job in await ended(channel_a, messages_a)} == {JobState.DONE}
    for message in messages_a:
        shown = await bot_a.message(channel_a, message)
        assert shown["content"].startswith("✅ **Done** — 1 image"), shown
        assert len(shown["attachments"]) == 1
    assert {job.state for job in await ended(channel_b, messages_b)} == {JobState.SUBMITTED}
    assert {job.horde_id: horde_sim.counters.calls("check", id=job.horde_id) for job in jobs_b} == checks_of_b

    # Then shard 1 comes back and delivers its own.
    bot_b = await b.start()

    async def b_done() -> bool:
        return all(job.state in TERMINAL for job in await ended(channel_b, messages_b))

    await eventually(b_done, step=bot_b.advance, tries=4)
    await bot_b.advance()
    assert {job.state for job in await ended(channel_b, messages_b)} == {JobState.DONE}
    for message in messages_b:
        shown = await bot_b.message(channel_b, message)
        assert shown["content"].startswith("✅ **Done** — 1 image"), shown
    assert horde_sim.counters.calls("generate_async") == SHARD_COUNT * JOBS_PER_SHARD
    for bot in (bot_a, bot_b):
        await bot.assert_no_errors()
        assert await bot.terminate(10.0) == 0
