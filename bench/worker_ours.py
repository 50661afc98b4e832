"""Benchmark worker: generations through the bot's own AIHordeAPIAsyncSimpleClient.

Run from the repository root: ``python -m bench.worker_ours --url … --keys … --lanes …``.
With ``--lifted-submit-limits`` (the simulator's submission limits are lifted for the burst
benchmark, see BENCHMARKS.md) the client's own limiter is told the same; every other limit is
the Horde's.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

import aiohttp

from bench._worker import Finished, Options, RunOne, main
from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)
from bot.horde.consts import RateLimit
from bot.horde.ratelimit import DEFAULT_RATE_LIMITS

SUBMIT_LIMIT = RateLimit(100_000, 1.0)
LIFTED_RATE_LIMITS = dataclasses.replace(
    DEFAULT_RATE_LIMITS, generate_async_per_key=SUBMIT_LIMIT, generate_async_per_ip=(SUBMIT_LIMIT,)
)


@contextlib.asynccontextmanager
async def make_runner(options: Options, trace: aiohttp.TraceConfig) -> AsyncIterator[RunOne]:
    params = ImageGenerationInputPayload(
        width=options.width, height=options.height, steps=options.steps, sampler_name="k_euler", karras=True
    )
    limits = LIFTED_RATE_LIMITS if options.lifted_submit_limits else DEFAULT_RATE_LIMITS
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as http,
        AIHordeAPIAsyncClientSession(http, base_url=options.url, rate_limits=limits) as session,
    ):
        client = AIHordeAPIAsyncSimpleClient(session)

        requests: dict[str, ImageGenerateAsyncRequest] = {}  # one per key, as the caller's own

        async def run_one(apikey: str) -> Finished:
            request = requests.get(apikey)
            if request is None:
                request = requests[apikey] = ImageGenerateAsyncRequest(
                    apikey=apikey, prompt="a lighthouse at dusk", models=["stable_diffusion"], params=params
                )
            status, gen_id = await client.image_generate_request(request)
            return Finished(gen_id, len(status.generations), tuple(g.id_ for g in status.generations))

        yield run_one


def _version() -> str:
    try:
        return version("horde-discord-bot")
    except PackageNotFoundError:
        return "working tree"


if __name__ == "__main__":
    main(make_runner, "ours", _version())
