"""One bot process of the shared-budget test (run as a script, not collected)::

    python tests/reliability/budget_process.py --database URL --horde URL --key KEY \
        --guild G --first-user U --members M --jobs-each J

It builds the production bot with :func:`bot.app.create_bot` (no cogs, never logged in to Discord:
the budget and the fair queue are the jobs engine's and the storage's) on the shared database, and
connects its storage. On ``go`` (a line on stdin) it starts ``J`` image jobs for each of ``M``
members of guild ``G`` through ``bot.jobs.start_job``, as the cogs do, with ``KEY``; once every job
has ended it prints one JSON line: how each ended and the places it was shown, when this process
sent its ``generate/async`` requests (``time.monotonic()``: the host's clock, the same in every
process), and every answer the Horde gave to ``generate/async`` by status. Then it shuts the bot down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
from pydantic import SecretStr

from bot.app import create_bot
from bot.config import DatabaseSettings, HordeSettings, Settings
from bot.crypto import KeyRing, generate_key_value
from bot.horde import ImageGenerateAsyncRequest, ImageGenerationInputPayload
from bot.services.jobs import DeliveredImage, JobOutcome, JobProgress
from bot.storage import JobRecord

CLIENT_AGENT = "horde-discord-bot-budget-test:1:tests@example.invalid"


class Listener:
    def __init__(self) -> None:
        self.outcome: JobOutcome | None = None
        self.done = asyncio.Event()
        self.places: list[int] = []

    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        if progress.state == "in_bot_queue":
            self.places.append(progress.queue_position)

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        self.outcome = outcome
        self.done.set()


def tracing(answers: Counter[int], sent: list[float]) -> aiohttp.TraceConfig:
    def submit(method: str, url: Any) -> bool:
        return method == "POST" and str(url.path).endswith("/generate/async")

    async def on_start(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        if submit(params.method, params.url):
            sent.append(time.monotonic())

    async def on_end(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        if submit(params.method, params.url):
            answers[params.response.status] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace


async def run(args: argparse.Namespace) -> None:
    settings = Settings(
        horde=HordeSettings(api_url=args.horde, client_agent=CLIENT_AGENT),
        database=DatabaseSettings(url=args.database),
        discord_token=SecretStr("x" * 59),
        secret_keys=KeyRing.from_env_value(generate_key_value(1)),
    )
    answers: Counter[int] = Counter()
    sent: list[float] = []
    async with aiohttp.ClientSession(trace_configs=[tracing(answers, sent)]) as http:
        bot = await create_bot(settings, http_session=http, extensions=())
        await bot.storage.connect()
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        jobs: list[tuple[JobRecord, Listener, int]] = []
        for index in range(args.jobs_each):
            for member in range(args.members):
                user_id = args.first_user + member
                listener = Listener()
                record = await bot.jobs.start_job(
                    "image",
                    request=ImageGenerateAsyncRequest(
                        prompt=f"fox {user_id} number {index}",
                        params=ImageGenerationInputPayload(n=1, steps=10, width=512, height=512),
                    ),
                    key=args.key,
                    key_owner="user",
                    user_id=user_id,
                    guild_id=args.guild,
                    channel_id=args.guild,
                    message_id=None,
                    params={"prompt": "fox", "n": 1},
                    listener=listener,
                )
                jobs.append((record, listener, user_id))
        await asyncio.wait_for(asyncio.gather(*(listener.done.wait() for _, listener, _ in jobs)), 600)
        report = []
        for record, listener, user_id in jobs:
            stored = await bot.storage.jobs.get(record.id)
            assert stored is not None
            assert listener.outcome is not None
            report.append(
                {
                    "user": user_id,
                    "state": stored.state.value,
                    "error": stored.error,
                    "places": listener.places,
                }
            )
        print(json.dumps({"jobs": report, "answers": dict(answers), "sent": sent}), flush=True)
        await bot.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--database", "--horde", "--key"):
        parser.add_argument(name, required=True)
    for name in ("--guild", "--first-user", "--members", "--jobs-each"):
        parser.add_argument(name, type=int, required=True)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
