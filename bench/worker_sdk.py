"""Benchmark worker: N generations through horde_sdk's AIHordeAPIAsyncSimpleClient.

Runs in ``bench/.venv-sdk`` (Python 3.12, horde_sdk from PyPI), from the repository root:
``AI_HORDE_URL=… python -m bench.worker_sdk --url … --apikey … --n …``. horde_sdk reads
``AI_HORDE_URL`` when it is imported, so the environment, not ``--url``, points it at the
simulator.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version

import aiohttp
from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from horde_sdk.ai_horde_api.apimodels import ImageGenerateAsyncRequest, ImageGenerationInputPayload
from loguru import logger

from bench._worker import Options, RunOne, main

# horde_sdk logs every submit and check at DEBUG/PROGRESS to stderr by default; a bot would not
# ship that, and our client logs nothing below WARNING either.
logger.remove()
logger.add(sys.stderr, level="WARNING")


@contextlib.asynccontextmanager
async def make_runner(options: Options) -> AsyncIterator[RunOne]:
    request = ImageGenerateAsyncRequest(
        apikey=options.apikey,
        prompt="a lighthouse at dusk",
        models=["stable_diffusion"],
        params=ImageGenerationInputPayload(width=options.width, height=options.height, n=1),
    )
    async with aiohttp.ClientSession() as http, AIHordeAPIAsyncClientSession(http) as session:
        client = AIHordeAPIAsyncSimpleClient(aiohttp_session=http, horde_client_session=session)

        async def run_one() -> tuple[str, int]:
            status, gen_id = await client.image_generate_request(request)
            return str(gen_id), len(status.generations)

        yield run_one


if __name__ == "__main__":
    main(make_runner, "horde_sdk", version("horde_sdk"))
