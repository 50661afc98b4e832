"""Two clients on one IP against the real AI Horde (``../shared/real-horde``): production limits.

Runs only when ``REAL_HORDE_URL`` names a real Horde on loopback (``http://127.0.0.1:7001/api/``)
started with ``HORDE_TEST_APIKEYS=1`` (``start.sh`` does): the test mints its own plain users
through ``POST /v2/dev/test-user``, which answers loopback callers only. It spends the IP's
submission budget (2 a second, 90 a minute) for about half a minute.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import aiohttp
import pytest

from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncDryRunResponse,
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)

REAL_HORDE_URL = os.environ.get("REAL_HORDE_URL", "")

pytestmark = pytest.mark.skipif(not REAL_HORDE_URL, reason="REAL_HORDE_URL is not set (no real AI Horde)")


async def mint_plain_user(http: aiohttp.ClientSession, name: str) -> str:
    body = {"username": name, "oauth_id": name, "kudos": 1000, "moderator": False, "trusted": False}
    async with http.post(REAL_HORDE_URL.rstrip("/") + "/v2/dev/test-user", json=body) as response:
        response.raise_for_status()
        data = await response.json()
    assert data["trusted"] is False  # a trusted user's generation would lift the IP's limits
    return str(data["api_key"])


async def test_two_clients_on_one_ip_both_get_every_submission_through() -> None:
    """Each client submits every 0.6 s, under the Horde's 2 a second; together they send 3.3 a
    second. The Horde refuses the excess (429, often ``Retry-After: 0``); every refused
    submission is sent again once the window has reset, and all go through."""
    per_client, gap_s = 14, 0.5
    request = ImageGenerateAsyncRequest(
        prompt="a lighthouse",
        models=["stable_diffusion"],
        dry_run=True,
        params=ImageGenerationInputPayload(width=64, height=64, steps=10),
    )
    async with aiohttp.ClientSession() as http:
        keys = [await mint_plain_user(http, f"ratelimit-{uuid.uuid4().hex[:8]}") for _ in range(2)]
        sessions = [AIHordeAPIAsyncClientSession(base_url=REAL_HORDE_URL, apikey=key) for key in keys]
        clients = [AIHordeAPIAsyncSimpleClient(session) for session in sessions]

        async def submit_every(client: AIHordeAPIAsyncSimpleClient) -> list[object]:
            submissions = []
            for _ in range(per_client):
                submissions.append(asyncio.ensure_future(client.image_generate_request_dry_run(request)))
                await asyncio.sleep(gap_s)
            return list(await asyncio.gather(*submissions, return_exceptions=True))

        try:
            results = [
                result for batch in await asyncio.gather(*map(submit_every, clients)) for result in batch
            ]
        finally:
            for session in sessions:
                await session.close()
    failures = [result for result in results if not isinstance(result, ImageGenerateAsyncDryRunResponse)]
    assert failures == []
