"""Benchmark worker: generations through horde_sdk's AIHordeAPIAsyncSimpleClient.

Runs in ``bench/.venv-sdk`` (Python 3.12, horde_sdk 0.33.3 from PyPI), from the repository root:
``AI_HORDE_URL=… python -m bench.worker_sdk --url … --keys … --lanes …``. horde_sdk reads
``AI_HORDE_URL`` when it is imported, so the environment, not ``--url``, points it at the Horde.
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

from bench._worker import Finished, Options, RunOne, main

# horde_sdk logs every submit and check at DEBUG/PROGRESS to stderr by default; a bot would not
# ship that, and our client logs nothing below WARNING either.
logger.remove()
logger.add(sys.stderr, level="WARNING")


@contextlib.asynccontextmanager
async def make_runner(options: Options, trace: aiohttp.TraceConfig) -> AsyncIterator[RunOne]:
    params = ImageGenerationInputPayload(
        width=options.width,
        height=options.height,
        steps=options.steps,
        sampler_name="k_euler",
        karras=True,
        n=1,
    )
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as http,
        AIHordeAPIAsyncClientSession(http) as session,
    ):
        client = AIHordeAPIAsyncSimpleClient(aiohttp_session=http, horde_client_session=session)

        requests: dict[str, ImageGenerateAsyncRequest] = {}  # one per key, as the caller's own

        async def run_one(apikey: str) -> Finished:
            request = requests.get(apikey)
            if request is None:
                request = requests[apikey] = ImageGenerateAsyncRequest(
                    apikey=apikey, prompt="a lighthouse at dusk", models=["stable_diffusion"], params=params
                )
            status, gen_id = await client.image_generate_request(request)
            return Finished(
                str(gen_id), len(status.generations), tuple(str(g.id_) for g in status.generations)
            )

        yield run_one


if __name__ == "__main__":
    main(make_runner, "horde_sdk", version("horde_sdk"))
