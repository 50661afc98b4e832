"""Load (issue #6): members run /imagine at the same time against the simulator.

The Horde lets one IP submit 2 generations a second and 90 a minute, so 200 submissions take
over a minute of the Horde's time. Both sides run on SimCord's virtual clock, so that minute
passes in seconds of real time without lifting any limit:

- inside the bot, ``time.monotonic`` and the loop's time are SimCord's, so its rate limiter and
  poll scheduler reserve and sleep in virtual seconds;
- the simulator gets the same clock (:class:`VirtualClock`), so its rate limits, its workers and
  its ``created`` times count the same seconds.

Requests cross real loopback HTTP; only the waiting is virtual. SimCord runs one action at a time
(it refuses overlapping operations), so :func:`slash_together` starts every slash command in one
go and then waits once for the bot, as Discord delivers simultaneous interactions.

The edit budget here is the suite's (50 edits per 5 s per channel) and SimCord enforces no Discord
limit: Discord's limits and the production budget are tests/reliability/test_delivery_under_limits.py
(80 members) and bench/bot_path.py (200 in one channel, 1,000 in 50); at 200 members they take over
three minutes, too long for the suite.

This is the suite's slowest test (about two minutes): SimCord's settlement looks at every pending
bot task against every pending timer on each pass, and each job waiting for its submission is two
tasks and a timer, so its cost grows faster than the number of members (100 take 15-20 s).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import simcord
from discord_limits import LimitedDiscord

from bot.app import HordeBot
from bot.config import ProgressSettings, Settings
from bot.horde import PollPolicy
from bot.horde.consts import (
    ASYNC_RATE_LIMIT_PER_ANON_KEY,
    ASYNC_RATE_LIMITS_PER_IP,
    CHECK_RATE_LIMIT_PER_ID,
    IMAGE_STATUS_RATE_LIMIT_PER_ID,
    RateLimit,
)
from bot.storage import JobState
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

N_MEMBERS = 200
PROMPT = "a lighthouse at dusk"
# Virtual seconds a simulated worker spends on one image; every job gets a worker at once.
JOB_SECONDS = (1.0, 5.0)
# The bound on how much this process's RSS may grow (peak minus start) while the jobs run: the
# bot, SimCord (which keeps every message and attachment) and the simulator (every request and
# image) together. Measured: about 19 MiB for 200 jobs of one 64×64 image (12 MiB for 100). 48 MiB
# leaves room for allocator arenas and CPython versions, and still fails if a job kept, say, a decoded
# bitmap or its responses around (a few hundred KiB a job).
MEMORY_BOUND_BYTES = 48 * 1024 * 1024
# How long one advance_time may take in real seconds (SimCord's settle timeout). Every wait
# below is inside advance_time, where SimCord fires timers in virtual time, never waiting for the
# real clock; the bound only stops a hang.
pytestmark = pytest.mark.simcord(settle_timeout=60.0)

_SIMCORD_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class VirtualClock:
    """SimCord's virtual clock in seconds, for the simulator (which runs outside the bot's scope,
    where ``time.monotonic`` is the real one). Zero until the environment exists."""

    def __init__(self) -> None:
        self.env: simcord.Env | None = None

    def __call__(self) -> float:
        return 0.0 if self.env is None else (self.env.now() - _SIMCORD_EPOCH).total_seconds()


@dataclass(frozen=True, slots=True)
class HordeCall:
    at: float
    method: str
    path: str


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def horde_sim_config(clock: VirtualClock) -> SimulatorConfig:
    # The Horde's rate limits, unchanged (Knobs' defaults); as many workers as members.
    knobs = Knobs(speed=JOB_SECONDS, worker_threads=N_MEMBERS)
    return SimulatorConfig(clock=clock, knobs=knobs, seed=20261127)


@pytest.fixture
def horde_calls() -> list[HordeCall]:
    """Every HTTP request the bot made to the simulator, with its virtual start time."""
    return []


@pytest.fixture
async def simcord_bot(
    settings: Settings, clock: VirtualClock, horde_calls: list[HordeCall]
) -> AsyncIterator[HordeBot]:
    from conftest import build_bot

    async def on_request_start(
        _session: aiohttp.ClientSession, _context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        horde_calls.append(HordeCall(clock(), params.method, params.url.path))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        # The production poll policy: the fixtures' fast one would add a SimCord timer every
        # 50 ms per job, each a step of advance_time, for the run's ~70 virtual seconds.
        bot = await build_bot(settings, http_session=session, poll_policy=PollPolicy())
        try:
            yield bot
        finally:
            await bot.close()


async def slash_together(env: simcord.Env, actions: Sequence[Coroutine[Any, Any, Any]]) -> None:
    """Start every slash command before the bot handles any, then wait until it is idle.

    A SimCord action creates its interaction, then settles (waits for the bot). Stepping each
    action once creates the interaction; closing it skips that action's own settling, which one
    ``env.advance_time(0)`` then does for all of them.
    """
    for action in actions:
        try:
            action.send(None)
        except StopIteration:
            pytest.fail("a slash command finished before the bot saw it; SimCord changed")
    for action in actions:
        action.close()
    # Settles without letting virtual time pass: the bot answers every one, while the rate limiter
    # holds most submissions back. (A plain settle would let the limiter's short waits fire in
    # real time, one after another.)
    await env.advance_time(0)


def most_in_window(times: Sequence[float], period: float) -> int:
    """The largest number of ``times`` within any half-open window of ``period`` seconds."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, start + period) - i for i, start in enumerate(ordered)), default=0
    )


def assert_within(times: Sequence[float], limit: RateLimit, what: str) -> None:
    busiest = most_in_window(times, limit.period_s)
    assert busiest <= limit.calls, (
        f"{what}: {busiest} calls within {limit.period_s:g} s (limit {limit.calls})"
    )


def rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of this process, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def reset_peak_rss() -> bool:
    """Make ``VmHWM`` start again from the current RSS (Linux); False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The production edit budget (5 edits per 5 s per channel), not the suite's 50.
    return settings.model_copy(update={"progress": ProgressSettings()})


async def test_members_imagine_at_once(
    server: Server,
    horde_sim: Simulator,
    clock: VirtualClock,
    horde_calls: list[HordeCall],
    discord_limits: LimitedDiscord,
) -> None:
    clock.env = server.env
    members = [server.guild.add_member(server.env.create_user(f"member{i:03}")) for i in range(N_MEMBERS)]
    rss_before = rss_bytes("VmRSS")
    peak_resettable = reset_peak_rss()
    rss_samples = [rss_before]

    await slash_together(
        server.env,
        [member.slash(server.channel, "imagine", prompt=PROMPT, width=64, height=64) for member in members],
    )
    # Everyone was answered and journalled in that instant; the rate limiter holds back all but
    # the first two submissions (2 a second per IP).
    assert len(server.bot.jobs.active_jobs()) == N_MEMBERS
    assert horde_sim.counters.calls("generate_async") == 2

    for _ in range(30):  # at most 300 virtual seconds; about 70 are needed
        if not server.bot.jobs.active_jobs():
            break
        await server.env.advance_time(10)
        rss_samples.append(rss_bytes("VmRSS"))
    # The last results may still wait for their turn in the channel's edit budget.
    for _ in range(60):
        if not server.bot.jobs.deliveries_pending():
            break
        await server.env.advance_time(10)
    rss_peak = rss_bytes("VmHWM") if peak_resettable else max(rss_samples)

    # Every job delivered: the journal says done, and each member's message holds the image.
    assert server.bot.jobs.active_jobs() == []
    assert await server.bot.storage.jobs.list_unfinished() == []
    by_message = {message.id: message for message in server.channel.history()}
    for member in members:
        [job] = await server.bot.storage.jobs.list_recent(member.id)
        assert job.state is JobState.DONE, (job.state, job.error)
        assert job.message_id is not None
        message = by_message[job.message_id]
        assert [attachment.filename.startswith("imagine_1") for attachment in message.attachments] == [True]

    # The Horde's limits held. The simulator refused nothing: it enforces every limit as the Horde
    # does (flask-limiter's fixed windows) on the same clock...
    counters = horde_sim.counters
    assert counters.status(429) == 0, counters.snapshot()["statuses"]
    assert counters.calls("generate_async") == N_MEMBERS
    # One status per job, or a few: the poll aimed at a job's end fetches the status in place of a
    # check, and again (at most final_status_polls times) when the job outlived its countdown.
    assert N_MEMBERS <= counters.calls("generate_status") <= N_MEMBERS * (1 + PollPolicy().final_status_polls)
    # ...and the stricter sliding windows hold too: submissions by the simulator's own clock,
    # polls by the virtual time each request left the bot.
    created = [request.created for request in horde_sim.state.requests.values()]
    assert len(created) == N_MEMBERS
    for limit in ASYNC_RATE_LIMITS_PER_IP:
        assert_within(created, limit, "generate/async per IP")
    assert_within(created, ASYNC_RATE_LIMIT_PER_ANON_KEY, "generate/async per (anonymous) key")
    # More than 90 submissions: the per-minute window was reached and waited for.
    assert max(created) - min(created) > 60
    per_id: dict[tuple[str, str], list[float]] = defaultdict(list)
    for call in horde_calls:
        parts = call.path.strip("/").split("/")
        if parts[:3] == ["api", "v2", "generate"] and parts[3] in ("check", "status"):
            per_id[(f"{call.method} {parts[3]}", parts[4])].append(call.at)
    assert {kind for kind, _ in per_id} == {"GET check", "GET status"}
    assert len(per_id) == 2 * N_MEMBERS
    for (kind, gen_id), times in per_id.items():
        limit = CHECK_RATE_LIMIT_PER_ID if kind == "GET check" else IMAGE_STATUS_RATE_LIMIT_PER_ID
        assert_within(times, limit, f"{kind} of {gen_id}")

    # Discord's limits held too, through discord.py's own handling: nothing reached the bot.
    assert discord_limits.stats.escaped_429 == 0, discord_limits.stats
    assert discord_limits.stats.total_429 == 0, discord_limits.stats

    growth = rss_peak - rss_before
    assert growth < MEMORY_BOUND_BYTES, f"RSS grew by {growth / 2**20:.1f} MiB"
