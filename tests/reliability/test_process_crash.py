"""A real bot process with jobs in flight: killed (SIGKILL) and started again, or stopped (SIGTERM).

Each bot is its own OS process (``bot_process.py``: production settings, logging, ``create_bot`` and
signal handling; Discord simulated by a SimCord of its own whose state outlives the process). The
AI Horde simulator runs here, in the test process, on a manual clock: its workers finish a job only
when the test moves that clock, so jobs stay in flight for as long as the test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web
from bot_process_driver import (
    BotProcess,
    BotProcesses,
    bot_processes,
    eventually,
    journal,
    reading_journal,
    saved_message,
    write_config,
)

from bot.crypto import generate_key_value
from bot.storage import JobRecord, JobState, Storage
from horde_simulator import Knobs, ManualClock, RateLimits, Simulator, SimulatorConfig

N: Final = 8
JOB_S: Final = 10.0
SHUTDOWN_DEADLINE_S: Final = 5.0
GUILD_ID: Final = 1_300_000_000_000_000_000
MEMBERS: Final = tuple(f"member{i}" for i in range(N))
WORLD: Final = {
    "guilds": [{"id": GUILD_ID, "name": "Crash test", "channels": ["general"], "members": list(MEMBERS)}]
}
TERMINAL: Final = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def horde_sim_config(sim_clock: ManualClock) -> SimulatorConfig:
    # One worker per job, JOB_S seconds of the simulator's clock each; the rate limits would count
    # on that clock too, which stands still while the bots submit.
    knobs = Knobs(speed=JOB_S, worker_threads=N, rate_limits=RateLimits(enabled=False))
    return SimulatorConfig(clock=sim_clock, knobs=knobs)


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    async with bot_processes(tmp_path) as started:
        yield started


class Deployment:
    """One bot's config, database and virtual Discord; every process of it starts the same way."""

    def __init__(self, processes: BotProcesses, api_url: str, tmp_path: Path) -> None:
        self.processes = processes
        self.database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        self.config = write_config(
            tmp_path / "config.toml",
            api_url=api_url,
            database_url=self.database_url,
            shutdown_deadline_s=SHUTDOWN_DEADLINE_S,
        )
        self.discord_state = tmp_path / "discord.pickle"
        self.keys = generate_key_value(1)
        self.resources = contextlib.AsyncExitStack()
        self._journal: Storage | None = None

    async def start(self, name: str) -> BotProcess:
        return await self.processes.start(
            config=self.config, discord_state=self.discord_state, world=WORLD, name=name, keys=self.keys
        )

    async def jobs(self, channel_id: int, messages: list[dict[str, Any]]) -> list[JobRecord]:
        """The journalled job of each message, read through the test's own connection."""
        if self._journal is None:
            self._journal = await self.resources.enter_async_context(reading_journal(self.database_url))
        return await journal(self._journal, [(channel_id, message["id"]) for message in messages])


@pytest.fixture
async def deployment(
    processes: BotProcesses, horde_sim: Simulator, tmp_path: Path
) -> AsyncIterator[Deployment]:
    deployment = Deployment(processes, horde_sim.base_url, tmp_path)
    async with deployment.resources:
        yield deployment


class HangingDeletes:
    """A loopback stub in front of the simulator whose DELETEs never answer (until the test ends);
    every other request is passed through as it is."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.deletes = 0
        self.released = asyncio.Event()
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.deletes += 1
            await self.released.wait()
            return web.json_response({"message": "gone"}, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + str(request.rel_url), headers=headers, data=body
            ) as answer,
        ):
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
            return web.Response(status=answer.status, body=body, headers=kept)


@pytest.fixture
async def hanging_deletes(horde_sim: Simulator) -> AsyncIterator[HangingDeletes]:
    stub = HangingDeletes(horde_sim.root_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stub.base_url = f"http://127.0.0.1:{port}/api/"
    try:
        yield stub
    finally:
        stub.released.set()
        await runner.cleanup()


async def imagine_everyone(bot: BotProcess) -> tuple[int, list[dict[str, Any]]]:
    """/imagine by each member; returns the channel and the N public progress messages."""
    channel_id = (await bot.request("world"))[str(GUILD_ID)]["channels"]["general"]
    messages = []
    for index, member in enumerate(MEMBERS):
        result = await bot.slash(GUILD_ID, member, "general", "imagine", prompt=f"fox number {index}")
        assert not result["ephemeral"], result
        messages.append(result["response"])
    return channel_id, messages


async def shown_progress(
    bot: BotProcess, channel_id: int, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The messages once the bot has polled every job at least once (a few poll rounds at most)."""

    async def everyone_polled() -> bool:
        shown = [await bot.message(channel_id, message["id"]) for message in messages]
        return all(each["custom_ids"] for each in shown)  # the Cancel button comes with the first poll

    await eventually(everyone_polled, step=bot.advance, tries=4)
    return [await bot.message(channel_id, message["id"]) for message in messages]


async def test_sigkill_with_jobs_in_flight_then_a_restart_delivers_or_reports_every_job(
    deployment: Deployment, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    first = await deployment.start("first")
    channel_id, messages = await imagine_everyone(first)
    submitted = await deployment.jobs(channel_id, messages)
    assert [job.state for job in submitted] == [JobState.SUBMITTED] * N
    horde_ids = [job.horde_id or "" for job in submitted]
    assert len(set(horde_ids)) == N
    assert set(horde_ids) <= set(horde_sim.state.requests)
    sim_clock.advance(JOB_S / 2)  # every worker is half-way
    progress = await shown_progress(first, channel_id, messages)
    for shown in progress:
        assert "🎨 Generating" in shown["content"], shown
        assert [custom_id.split(":")[1] for custom_id in shown["custom_ids"]] == ["cancel"]
        assert shown["attachments"] == []
    await first.assert_no_errors()
    await first.request("snapshot")

    assert await first.kill() == -9

    # While the bot is dead the Horde finishes every job but one, which it forgets (it expired).
    horde_sim.state.expire(horde_ids[0])
    sim_clock.advance(JOB_S)
    second = await deployment.start("second")
    assert second.ready["restored"]
    assert second.ready["bot_id"] == first.ready["bot_id"]  # the same bot account, finding its messages

    async def all_ended() -> bool:
        return all(job.state in TERMINAL for job in await deployment.jobs(channel_id, messages))

    await eventually(all_ended, step=second.advance, tries=4)
    await second.advance()  # the last results may wait for their turn in the channel's edit budget
    ended = await deployment.jobs(channel_id, messages)
    assert [job.state for job in ended] == [JobState.FAILED] + [JobState.DONE] * (N - 1)
    assert [job.horde_id for job in ended] == horde_ids  # followed by the ids journalled before the kill
    assert "expired on the AI Horde" in (ended[0].error or "")
    # Reported or delivered in the very message each member got before the crash.
    lost = await second.message(channel_id, messages[0]["id"])
    assert lost["content"].startswith("❌"), lost
    assert "expired on the AI Horde" in lost["content"]
    for index, message in enumerate(messages[1:], start=1):
        shown = await second.message(channel_id, message["id"])
        assert shown["content"].startswith("✅ **Done** — 1 image"), shown
        assert shown["embeds"][0]["description"] == f"fox number {index}"
        assert len(shown["attachments"]) == 1
        assert f"imagine:rerun:{ended[index].id}" in shown["custom_ids"]
    assert horde_sim.counters.calls("generate_async") == N  # nothing was submitted twice
    await second.assert_no_errors()
    assert await second.terminate(SHUTDOWN_DEADLINE_S * 2) == 0


async def test_sigterm_with_jobs_in_flight_cancels_every_one_on_the_horde_within_the_deadline(
    deployment: Deployment, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    bot = await deployment.start("bot")
    channel_id, messages = await imagine_everyone(bot)
    sim_clock.advance(JOB_S / 2)
    await shown_progress(bot, channel_id, messages)
    in_flight = await deployment.jobs(channel_id, messages)
    assert [job.state for job in in_flight] == [JobState.SUBMITTED] * N
    assert not any(request.cancelled for request in horde_sim.state.requests.values())
    await bot.assert_no_errors()

    started = time.monotonic()
    status = await bot.terminate(SHUTDOWN_DEADLINE_S * 2)
    took = time.monotonic() - started

    assert status == 0, bot.log()[-4000:]
    assert took < SHUTDOWN_DEADLINE_S, took  # the whole exit, not only the jobs' share of it
    log = bot.log()
    assert "Received SIGTERM; shutting down" in log
    assert "Traceback" not in log
    cancelled = await deployment.jobs(channel_id, messages)
    for job in cancelled:
        assert job.horde_id is not None
        assert horde_sim.counters.deletes(job.horde_id) == 1
        assert horde_sim.state.requests[job.horde_id].cancelled
        assert job.state is JobState.CANCELLED
        assert job.error == "Cancelled because the bot was shut down. Please run it again."
    # The members were told, in Discord as the process left it.
    for message in messages:
        shown = saved_message(deployment.discord_state, channel_id, message["id"])
        assert shown["content"].startswith("🛑 **Cancelled**"), shown
        assert "Cancelled because the bot was shut down. Please run it again." in shown["content"]


async def test_sigterm_while_the_hordes_delete_hangs_holds_the_deadline_and_the_next_start_delivers(
    processes: BotProcesses,
    hanging_deletes: HangingDeletes,
    horde_sim: Simulator,
    sim_clock: ManualClock,
    tmp_path: Path,
) -> None:
    deployment = Deployment(processes, hanging_deletes.base_url, tmp_path)
    async with deployment.resources:
        first = await deployment.start("first")
        channel_id, messages = await imagine_everyone(first)
        sim_clock.advance(JOB_S / 2)
        await shown_progress(first, channel_id, messages)
        await first.request("snapshot")

        started = time.monotonic()
        status = await first.terminate(SHUTDOWN_DEADLINE_S * 8)
        took = time.monotonic() - started

        assert status == 0, first.log()[-4000:]
        # The whole exit holds the one deadline (hooks, Discord, the session's own cleanup, storage),
        # with a margin for the process's own exit.
        assert took < SHUTDOWN_DEADLINE_S + 1.5, took
        assert hanging_deletes.deletes >= 1  # it did try
        left = await deployment.jobs(channel_id, messages)
        # Not "Cancelled because the bot was shut down": the Horde still runs every one of them.
        assert [job.state for job in left] == [JobState.SUBMITTED] * N, [(j.state, j.error) for j in left]
        assert not any(request.cancelled for request in horde_sim.state.requests.values())

        sim_clock.advance(JOB_S)
        second = await deployment.start("second")

        async def all_ended() -> bool:
            return all(job.state in TERMINAL for job in await deployment.jobs(channel_id, messages))

        await eventually(all_ended, step=second.advance, tries=4)
        await second.advance()
        ended = await deployment.jobs(channel_id, messages)
        assert [job.state for job in ended] == [JobState.DONE] * N
        assert [job.horde_id for job in ended] == [job.horde_id for job in left]
        for index, message in enumerate(messages):
            shown = await second.message(channel_id, message["id"])
            assert shown["content"].startswith("✅ **Done** — 1 image"), shown
            assert shown["embeds"][0]["description"] == f"fox number {index}"
        assert horde_sim.counters.calls("generate_async") == N  # resumed, never submitted again
        await second.assert_no_errors()
        assert await second.terminate(SHUTDOWN_DEADLINE_S * 2) == 0
