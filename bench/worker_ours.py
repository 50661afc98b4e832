"""Benchmark worker: N generations through the bot's own AIHordeAPIAsyncSimpleClient.

Run from the repository root: ``python -m bench.worker_ours --url … --apikey … --n …``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from bench._worker import Options, RunOne, main
from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)
from bot.horde.consts import RateLimit
from bot.horde.ratelimit import DEFAULT_RATE_LIMITS

# The simulator lifts the submission limits for the benchmark (see BENCHMARKS.md); the client
# must not hold submissions back below what the server allows. Every other limit is the Horde's.
SUBMIT_LIMIT = RateLimit(100_000, 1.0)
RATE_LIMITS = dataclasses.replace(
    DEFAULT_RATE_LIMITS, generate_async_per_key=SUBMIT_LIMIT, generate_async_per_ip=(SUBMIT_LIMIT,)
)


@contextlib.asynccontextmanager
async def make_runner(options: Options) -> AsyncIterator[RunOne]:
    request = ImageGenerateAsyncRequest(
        prompt="a lighthouse at dusk",
        models=["stable_diffusion"],
        params=ImageGenerationInputPayload(width=options.width, height=options.height),
    )
    async with AIHordeAPIAsyncClientSession(
        base_url=options.url, apikey=options.apikey, rate_limits=RATE_LIMITS
    ) as session:
        client = AIHordeAPIAsyncSimpleClient(session)

        async def run_one() -> tuple[str, int]:
            status, gen_id = await client.image_generate_request(request)
            return gen_id, len(status.generations)

        yield run_one


def _version() -> str:
    try:
        return version("horde-discord-bot")
    except PackageNotFoundError:
        return "working tree"


if __name__ == "__main__":
    main(make_runner, "ours", _version())
