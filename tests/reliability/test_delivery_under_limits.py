"""Results under Discord's rate limits (issue #14): members run /imagine in one channel with the
production edit budget (5 edits per 5 s per channel), while tests/discord_limits.py applies
Discord's limits and discord.py handles them itself. Every result is delivered, past the budget's
old 30 s queue and the jobs engine's 60 s listener limit, and no 429 reaches the bot's code.

The larger scales (200 members in one channel, 1,000 across 50 channels) are in
bench/bot_path.py: they take minutes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
from discord_limits import LimitedDiscord
from test_load import VirtualClock, slash_together

from bot.app import HordeBot
from bot.config import ProgressSettings, Settings
from bot.horde import ANON_API_KEY, PollPolicy
from bot.storage import JobState
from horde_simulator import Knobs, Simulator, SimulatorConfig, SimUser, default_users

if TYPE_CHECKING:
    from conftest import Server

N_MEMBERS = 80
"""The workers start once every request is in (40 s at the Horde's 2 submissions a second), so the
results arrive within seconds of each other, and at one result edit a second (the channel's
budget) the last one waits over 60 s for its turn."""
PROMPT = "a lighthouse at dusk"
JOB_SECONDS = (1.0, 5.0)
pytestmark = pytest.mark.simcord(settle_timeout=60.0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def horde_sim_config(clock: VirtualClock) -> SimulatorConfig:
    # No worker until the test says so; meanwhile every request waits on the Horde, so the shared
    # anonymous key may have all of them in flight (the Horde's default is 30).
    users = (*default_users(), SimUser("Anonymous", 0, ANON_API_KEY, kudos=0.0, concurrency=N_MEMBERS))
    knobs = Knobs(speed=JOB_SECONDS, worker_threads=0)
    return SimulatorConfig(clock=clock, knobs=knobs, users=users, seed=1114)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The production budget, not the suite's 50 edits per 5 s.
    return settings.model_copy(update={"progress": ProgressSettings()})


@pytest.fixture
async def simcord_bot(settings: Settings) -> AsyncIterator[HordeBot]:
    from conftest import build_bot

    async with aiohttp.ClientSession() as session:
        bot = await build_bot(settings, http_session=session, poll_policy=PollPolicy())
        try:
            yield bot
        finally:
            await bot.close()


async def test_every_result_is_delivered_under_the_channel_limit(
    server: Server,
    horde_sim: Simulator,
    clock: VirtualClock,
    discord_limits: LimitedDiscord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock.env = server.env
    members = [server.guild.add_member(server.env.create_user(f"member{i:03}")) for i in range(N_MEMBERS)]

    await slash_together(
        server.env,
        [member.slash(server.channel, "imagine", prompt=PROMPT, width=64, height=64) for member in members],
    )
    for _ in range(10):  # 40 virtual seconds are needed
        if horde_sim.counters.calls("generate_async") == N_MEMBERS:
            break
        await server.env.advance_time(10)
    assert horde_sim.counters.calls("generate_async") == N_MEMBERS
    horde_sim.state.knobs.worker_threads = N_MEMBERS
    for _ in range(60):  # at most 600 virtual seconds; about 100 are needed
        await server.env.advance_time(10)
        if not server.bot.jobs.active_jobs() and server.bot.jobs.deliveries_pending() == 0:
            break

    by_message = {message.id: message for message in server.channel.history()}
    undelivered = []
    for member in members:
        [job] = await server.bot.storage.jobs.list_recent(member.id)
        assert job.state is JobState.DONE, (job.state, job.error)
        message = by_message[job.message_id] if job.message_id is not None else None
        if message is None or not message.content.startswith("✅ **Done**") or len(message.attachments) != 1:
            undelivered.append(job.id)
    assert undelivered == []
    assert discord_limits.stats.escaped_429 == 0, discord_limits.stats
    # The bot kept inside the channel's bucket itself: Discord refused nothing (each 429 counts
    # towards the invalid requests for which Discord bans a bot for an hour).
    assert discord_limits.stats.total_429 == 0, discord_limits.stats
    # The queue crossed the old limits: results waited over 30 s for their turn, and over the 60 s
    # the engine once gave a listener call.
    assert server.bot.delivery.budget.longest_wait_s > 60.0
    assert "skipped" not in caplog.text
    assert horde_sim.counters.status(429) == 0
