"""``source_processing`` (img2img, inpainting, outpainting) on the real AI Horde and the simulator:
the same refusals word for word, the same "no worker can paint" answer, and an outpainting request
as a worker that can paint receives it (the real server's pop payload: the source image, its mask
and ``source_processing``), then generated on both."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import PIL.Image
from horde_sides import (
    CLIENT_AGENT,
    IMAGE_MODELS,
    Exchange,
    Side,
    both,
    needs_real_horde,
    read_keys,
    real_side,
    set_worker,
    sides_fixture,  # noqa: F401 - the fixture `sides`
    sim_config,
)

from horde_simulator import run_simulator

pytestmark = needs_real_horde

INPAINTING = "Deliberate Inpainting"
REGEN = "AI Horde Worker reGen:9.0.1-fake:https://github.com/Haidra-Org/horde-worker-reGen"
RED_WEBP = (
    "UklGRlQAAABXRUJQVlA4IEgAAADQAwCdASpAAEAAPm02mEkkIyKhIggAgA2JZwB2AAAgbqagCvELcgAA/vA4Q//i1rcLSw"
    "//+0s/+pZ/9Sz/GG1uSzydWgoAAAA="
)


def webp(mode: str, size: tuple[int, int] = (64, 64)) -> str:
    out = io.BytesIO()
    PIL.Image.new(mode, size).save(out, format="WEBP", lossless=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def painting(processing: str, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "a red square",
        "models": [model],
        "params": {"width": 64, "height": 64, "steps": 10},
        "source_image": webp("RGBA"),
        "source_mask": webp("L"),
        "source_processing": processing,
        **extra,
    }


def refusal(answer: Exchange) -> tuple[int, Any]:
    return answer.status, answer.body


async def test_painting_refusals_are_the_servers(sides: tuple[Side, Side]) -> None:
    controlnet = painting("inpainting", "Deliberate")
    controlnet["params"]["control_type"] = "canny"
    no_mask = painting("inpainting", "Deliberate", source_image=webp("RGB"))
    del no_mask["source_mask"]

    async def scenario(side: Side) -> list[tuple[int, Any]]:
        return [refusal(await side.submit("image", body)) for body in (controlnet, no_mask)]

    real, sim = await both(sides, scenario)

    assert sim == real
    assert [body["rc"] for _, body in real] == ["ControlNetInpaintingMismatch", "InpaintingMissingMask"]


async def test_without_an_inpainting_model_no_worker_can_paint(sides: tuple[Side, Side]) -> None:
    async def scenario(side: Side) -> tuple[list[str], list[str], bool]:
        await side.start_worker(1.0)
        outpaint = await side.submit("image", painting("outpainting", "Deliberate"))
        img2img = await side.submit("image", painting("img2img", "Deliberate"))
        check = await side.call("GET", f"v2/generate/check/{outpaint.body['id']}")
        codes = [
            [warning["code"] for warning in answer.body.get("warnings", [])] for answer in (outpaint, img2img)
        ]
        return codes[0], codes[1], check.body["is_possible"]

    real, sim = await both(sides, scenario)

    assert sim == real == (["NoAvailableWorker"], [], False)


@contextlib.asynccontextmanager
async def painter(
    base_url: str, key: str, http: aiohttp.ClientSession
) -> AsyncIterator[list[dict[str, Any]]]:
    """A worker serving only an inpainting model that may paint, on the real server: every pop
    payload it received, each answered with a red image."""
    popped: list[dict[str, Any]] = []
    headers = {"apikey": key, "Client-Agent": CLIENT_AGENT}
    pop = {
        "name": "Conformance Painter",
        "models": [INPAINTING],
        "bridge_agent": REGEN,
        "nsfw": True,
        "amount": 1,
        "max_pixels": 4194304,
        "threads": 1,
        "allow_img2img": True,
        "allow_painting": True,
    }

    async def run() -> None:
        while True:
            async with http.post(base_url + "v2/generate/pop", json=pop, headers=headers) as response:
                job = await response.json() if response.status == 200 else {}
            if not job.get("id"):
                await asyncio.sleep(0.5)
                continue
            popped.append(job)
            submit = {"id": job["id"], "generation": RED_WEBP, "state": "ok", "seed": 1}
            async with http.post(base_url + "v2/generate/submit", json=submit, headers=headers):
                pass

    task = asyncio.create_task(run())
    try:
        yield popped
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_done(side: Side, request_id: str) -> dict[str, Any]:
    for _ in range(60):
        check = await side.call("GET", f"v2/generate/check/{request_id}")
        if check.body.get("done"):
            body: dict[str, Any] = check.body
            return body
        await asyncio.sleep(1.0)
    raise AssertionError(f"{side.name}: {request_id} not done: {check.body}")


async def test_an_outpainting_request_reaches_a_worker_that_can_paint() -> None:
    keys = read_keys(os.environ["REAL_HORDE_KEYS"])
    config = sim_config()
    config.knobs.advertised_image_models = (*IMAGE_MODELS, INPAINTING)
    async with aiohttp.ClientSession() as http, real_side(http) as real, run_simulator(config) as sim:
        set_worker(sim, threads=1, delay=1.0)
        sim_keys = {user.alias: user.api_key for user in sim.state.users.values()}
        simulated = Side("sim", sim.base_url, sim_keys, http, real.start_worker, real.stop_worker)
        body = painting("outpainting", INPAINTING)
        async with painter(real.base_url, keys["WORKER_KEY"], http) as popped:

            async def scenario(side: Side) -> dict[str, Any]:
                await asyncio.sleep(1.1)  # the async endpoint's 2 per second, spent by earlier tests
                answer = await side.submit("image", body)
                assert answer.status == 202, answer.body
                assert "warnings" not in answer.body, answer.body
                return await _until_done(side, answer.body["id"])

            try:
                real_done, sim_done = await asyncio.gather(scenario(real), scenario(simulated))
            finally:
                await simulated.clean_up()

        assert (real_done["finished"], sim_done["finished"]) == (1, 1)
        [job] = popped
        assert job["model"] == INPAINTING
        assert job["source_processing"] == "outpainting"
        # As URLs or base64, the worker gets both.
        assert job["source_image"]
        assert job["source_mask"]
        assert sim.state.requests[next(iter(sim.state.requests))].source_processing == "outpainting"
