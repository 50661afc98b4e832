"""The bot's whole path under load: /imagine in SimCord → the simulator over loopback HTTP → the
Discord edits SimCord records. Not part of the tests.

    python bench/bot_path.py                 # 1, 30, 100, 200 in one channel, 1,000 in 50 channels
    python bench/bot_path.py --sizes 1,100,1000x50

N members run /imagine in the same instant (as in tests/reliability/test_load.py), spread evenly over
C channels (``NxC``; one channel when C is left out), each case in a fresh process (``--one NxC``),
with the real bot (``create_bot``: production poll policy and edit budget, SQLite, the Horde's own
rate limits in client and simulator). SimCord's virtual clock drives the bot, and the in-process
simulator is given the same clock, so the Horde's 2 submissions a second per IP (90 a minute) cost
virtual seconds, not real ones. Discord's rate limits are applied by tests/discord_limits.py, with
discord.py's own rate-limit handling running (issue #14). Figures:

- *virtual* latency: from the command to the last edit of the member's message (the result), on
  the shared virtual clock: the Horde's limits, the workers (1-5 s) and the polling;
- *wall* latency: real seconds from the command until the result was seen (sampled after every
  5 virtual seconds); mostly SimCord's settlement, which re-examines every pending task at each
  step, not the bot;
- Horde calls per job (the simulator's counters), Discord REST calls per job (SimCord's log),
  edits per message, the busiest channel's message edits in the busiest 5 and 10 virtual seconds
  (each request stamped with the virtual time as SimCord logs it), and the longest a result waited
  for its channel's turn;
- Discord's answers: 429s (route buckets and global), and 429s that reached the bot's code (must
  be 0: discord.py handles the others itself);
- CPU seconds per job and peak RSS of the whole process: bot, SimCord and simulator together.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # cogs/ is not installed, only importable from the repository

import discord  # noqa: E402
import simcord  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bot.app import create_bot  # noqa: E402
from bot.config import DatabaseSettings, HordeSettings, Settings  # noqa: E402
from bot.crypto import KeyRing, generate_key_value  # noqa: E402
from horde_simulator import Knobs, SimulatorConfig, run_simulator  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))  # the Discord rate-limit model is the tests' own
from discord_limits import install  # noqa: E402

SIZES = ("1", "30", "100", "200", "1000x50")
PROMPT = "a lighthouse at dusk"
JOB_SECONDS = (1.0, 5.0)
# Virtual seconds per advance_time: each call has a fixed cost in SimCord's settlement, so few and
# large; it is also the resolution of the wall-clock latency.
STEP_S = 5.0
CHANNEL_WINDOWS_S = (5.0, 10.0)
DRAIN_S = 60.0
"""How long the run goes on after the last job ended, for results still waiting for their turn."""
SEED = 20_261_127
# Shaped like a bot token; SimCord never checks it.
FAKE_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
_SIMCORD_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_MESSAGE_PATH = re.compile(r"/messages/(\d+|@original)$")


class VirtualClock:
    """SimCord's clock for the simulator, which runs outside the bot's scope (there
    ``time.monotonic`` is the real one)."""

    def __init__(self) -> None:
        self.env: simcord.Env | None = None

    def __call__(self) -> float:
        return 0.0 if self.env is None else (self.env.now() - _SIMCORD_EPOCH).total_seconds()


class StampedRequests(list[Any]):
    """SimCord's log of the bot's REST calls, with the virtual time of each (SimCord keeps none)."""

    def __init__(self, clock: Any, entries: list[Any]) -> None:
        super().__init__(entries)
        self._clock = clock
        self.times: list[float | None] = [None] * len(entries)

    def append(self, entry: Any) -> None:
        self.times.append(self._clock.elapsed)
        super().append(entry)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def slash_together(
    env: simcord.Env, actions: Sequence[Coroutine[Any, Any, Any]], *, batch: int | None = None
) -> None:
    """Every member's /imagine in the same instant (SimCord refuses overlapping actions): each
    action is stepped once, which creates its interaction, then one settle waits for the bot.

    With ``batch``, that many at a time, each batch settled before the next, all at the same
    virtual instant (``advance_time(0)``): SimCord's settlement checks every pending task against
    every pending timer at each pass, which 1,000 interactions at once never get through."""
    size = batch or len(actions) or 1
    for start in range(0, len(actions), size):
        chunk = actions[start : start + size]
        for action in chunk:
            with contextlib.suppress(StopIteration):
                action.send(None)
        for action in chunk:
            action.close()
        await env.advance_time(0)


@contextlib.asynccontextmanager
async def world(n: int, tmp: Path) -> AsyncIterator[tuple[simcord.Env, Any, VirtualClock]]:
    clock = VirtualClock()
    knobs = Knobs(speed=JOB_SECONDS, worker_threads=max(n, 1))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs, seed=SEED)) as sim:
        settings = Settings(
            horde=HordeSettings(
                api_url=sim.base_url, client_agent="horde-discord-bot-bench:0:bench@example.invalid"
            ),
            database=DatabaseSettings(url=f"sqlite:///{tmp / 'bot.sqlite3'}"),
            discord_token=SecretStr(FAKE_TOKEN),
            secret_keys=KeyRing.from_env_value(generate_key_value(1)),
        )
        bot = await create_bot(settings)
        try:
            # A bound on real seconds per settle, against a hang: 1,000 members' first answers are
            # 1,000 journal writes on this machine's disk before the first virtual second.
            async with simcord.run(bot, settle_timeout=max(120.0, n * 0.6)) as env:
                clock.env = env
                await bot.tree.sync()
                yield env, sim, clock
        finally:
            await bot.close()


def parse_size(size: str) -> tuple[int, int]:
    """``"1000x50"`` → (1000 members, 50 channels); ``"200"`` → one channel."""
    members, _, channels = size.partition("x")
    return int(members), int(channels or 1)


async def run_one(n: int, n_channels: int = 1, batch: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bot-path-") as tmp:
        async with world(n, Path(tmp)) as (env, sim, clock):
            guild = env.create_guild("Bench")
            channels = [guild.create_text_channel(f"room{i:02}") for i in range(n_channels)]
            members = [guild.add_member(env.create_user(f"member{i:04}")) for i in range(n)]
            limits = install(env)
            bot: Any = env.bot
            backend: Any = env.backend  # SimCord-internal: the only place its request log lives
            stamped = backend.http_requests = StampedRequests(backend.clock, backend.http_requests)
            usage_before = resource.getrusage(resource.RUSAGE_SELF)
            wall_start, virtual_start = time.perf_counter(), clock()
            requests_before = len(env.http_requests)

            await slash_together(
                env,
                [
                    member.slash(channels[i % n_channels], "imagine", prompt=PROMPT, width=64, height=64)
                    for i, member in enumerate(members)
                ],
                batch=batch,
            )
            answered_wall = time.perf_counter() - wall_start
            seen_wall: dict[int, float] = {}
            ended_at = clock()
            for _ in range(10_000):
                for channel in channels:
                    for message in channel.history():
                        if message.attachments and message.id not in seen_wall:
                            seen_wall[message.id] = time.perf_counter() - wall_start
                # A finished job may still wait for its channel's turn to show the result.
                busy = bot.jobs.active_jobs() or bot.jobs.deliveries_pending()
                if not busy and (len(seen_wall) >= n or clock() - ended_at > DRAIN_S):
                    break
                if busy:
                    ended_at = clock()
                await env.advance_time(STEP_S)
            wall_s = time.perf_counter() - wall_start
            usage = resource.getrusage(resource.RUSAGE_SELF)

            results = [
                message for channel in channels for message in channel.history() if message.attachments
            ]
            jobs = [job for member in members for job in await bot.storage.jobs.list_recent(member.id)]
            virtual_latency = [
                (message.edited_at - _SIMCORD_EPOCH).total_seconds() - virtual_start
                for message in results
                if message.edited_at is not None
            ]
            requests = env.http_requests[requests_before:]
            edits = [e for e in requests if e.method == "PATCH" and _MESSAGE_PATH.search(e.path)]
            counters = sim.counters
            horde_calls = {
                name: counters.calls(endpoint) / n
                for name, endpoint in (
                    ("async", "generate_async"),
                    ("check", "generate_check"),
                    ("status", "generate_status"),
                    ("download", "r2_image"),
                )
            }
            cpu_s = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
            busiest = max(channels, key=lambda channel: len(_channel_edit_times(stamped, channel.id)))
            return {
                "n": n,
                "channels": n_channels,
                "delivered": len(results),
                "jobs_done": sum(job.state.value == "done" for job in jobs),
                "journalled_delivered": sum(
                    job.delivery is not None and job.delivery.value == "delivered" for job in jobs
                ),
                "responses_429": counters.status(429),
                "discord_429": limits.stats.total_429,
                "discord_429_reaching_the_bot": limits.stats.escaped_429,
                "virtual_run_s": clock() - virtual_start,
                "virtual_latency_s": _summary(virtual_latency),
                "wall_run_s": wall_s,
                "wall_all_answered_s": answered_wall,
                "wall_latency_s": _summary(list(seen_wall.values())),
                "horde_calls_per_job": {**horde_calls, "total": sum(horde_calls.values())},
                "discord_requests_per_job": len(requests) / n,
                "discord_requests_by_kind_per_job": {
                    kind: count / n
                    for kind, count in Counter(
                        f"{entry.method} {_kind(entry.path)}" for entry in requests
                    ).most_common()
                },
                "edits_per_message": len(edits) / max(1, len(results)),
                **{
                    f"channel_edits_max_per_{window:g}s": _busiest_window(
                        _channel_edit_times(stamped, busiest.id), window
                    )
                    for window in CHANNEL_WINDOWS_S
                },
                "longest_wait_for_a_turn_s": bot.delivery.budget.longest_wait_s,
                "cpu_s": cpu_s,
                "cpu_s_per_job": cpu_s / n,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }


def _kind(path: str) -> str:
    if path.startswith("/interactions/"):
        return "interaction callback"
    if path.startswith("/webhooks/"):
        return "webhook " + ("message edit" if "/messages/" in path else "followup")
    if "/messages" in path:
        return "channel message"
    return re.sub(r"\d+", "{id}", path)


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _channel_edit_times(stamped: StampedRequests, channel_id: int) -> list[float]:
    """When each message in the channel was edited (not the interactions' own replies, which are
    edited through their webhook)."""
    prefix = f"/channels/{channel_id}/messages/"
    return [
        at
        for at, entry in zip(stamped.times, stamped, strict=True)
        if at is not None and entry.method == "PATCH" and entry.path.startswith(prefix)
    ]


def _busiest_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` in any ``[t, t + window)`` virtual seconds."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, at + window) - i for i, at in enumerate(ordered)), default=0)


# -- the runner --------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}, {platform.platform()}"


def report(results: Sequence[dict[str, Any]]) -> str:
    def row(label: str, pick: Any, fmt: str = "{:.2f}") -> str:
        return f"| {label} | " + " | ".join(fmt.format(pick(r)) for r in results) + " |"

    header = (
        "| measure | "
        + " | ".join(
            f"{r['n']} in {r['channels']} channel{'s' if r['channels'] > 1 else ''}" for r in results
        )
        + " |"
    )
    lines = [
        header,
        "|---|" + "---:|" * len(results),
        row("results delivered / jobs done", lambda r: f"{r['delivered']} / {r['jobs_done']}", "{}"),
        row("… journalled as delivered", lambda r: r["journalled_delivered"], "{}"),
        row("429s from the simulator", lambda r: r["responses_429"], "{}"),
        row("429s from Discord (the model)", lambda r: r["discord_429"], "{}"),
        row("… reaching the bot's code", lambda r: r["discord_429_reaching_the_bot"], "{}"),
        row("latency p50, virtual s", lambda r: r["virtual_latency_s"]["p50"], "{:.1f}"),
        row("latency p95, virtual s", lambda r: r["virtual_latency_s"]["p95"], "{:.1f}"),
        row("whole run, virtual s", lambda r: r["virtual_run_s"], "{:.1f}"),
        row("latency p50, wall s", lambda r: r["wall_latency_s"]["p50"], "{:.1f}"),
        row("latency p95, wall s", lambda r: r["wall_latency_s"]["p95"], "{:.1f}"),
        row("every member answered (deferred), wall s", lambda r: r["wall_all_answered_s"], "{:.2f}"),
        row("whole run, wall s", lambda r: r["wall_run_s"], "{:.1f}"),
        row("Horde calls per job: total", lambda r: r["horde_calls_per_job"]["total"]),
        row("… generate/async", lambda r: r["horde_calls_per_job"]["async"]),
        row("… generate/check", lambda r: r["horde_calls_per_job"]["check"]),
        row("… generate/status", lambda r: r["horde_calls_per_job"]["status"]),
        row("… image download", lambda r: r["horde_calls_per_job"]["download"]),
        row("Discord REST calls per job", lambda r: r["discord_requests_per_job"]),
        row("… edits per message (result message)", lambda r: r["edits_per_message"]),
        row(
            "busiest channel's edits, most in any 5 virtual s", lambda r: r["channel_edits_max_per_5s"], "{}"
        ),
        row(
            "busiest channel's edits, most in any 10 virtual s",
            lambda r: r["channel_edits_max_per_10s"],
            "{}",
        ),
        row(
            "longest wait for a channel's turn, virtual s", lambda r: r["longest_wait_for_a_turn_s"], "{:.1f}"
        ),
        row("CPU s per job (bot + SimCord + simulator)", lambda r: r["cpu_s_per_job"], "{:.3f}"),
        row("peak RSS, MiB (whole process)", lambda r: r["peak_rss_mib"], "{:.0f}"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated N or NxCHANNELS")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one case, in this process
    parser.add_argument(
        "--batch", type=int, help="start the commands this many at a time (same virtual instant)"
    )
    args = parser.parse_args(argv)
    if args.one is not None:
        discord.utils.setup_logging(level=40)  # errors only: the bench prints JSON on stdout
        print(json.dumps(asyncio.run(run_one(*parse_size(args.one), batch=args.batch))))
        return
    results = []
    for size in args.sizes.split(","):
        print(f"{size} …", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--one", size, *(["--batch", str(args.batch)] if args.batch else [])],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr[-5000:], file=sys.stderr)
            raise SystemExit(f"{size} failed")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=1), file=sys.stderr, flush=True)
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
