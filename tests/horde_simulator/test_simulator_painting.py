"""The simulator's ``source_processing`` (``_painting.py``) against the real server's rules: what is
refused at submit, and which workers may take inpainting and outpainting."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import PIL.Image
import pytest
from test_simulator_faults import ALICE, call, http_fixture  # noqa: F401 - the fixture http

from horde_simulator import Knobs, RateLimits, Simulator, SimulatorConfig, run_simulator

INPAINTING = "Deliberate Inpainting"


def webp(mode: str) -> str:
    out = io.BytesIO()
    PIL.Image.new(mode, (64, 64)).save(out, format="WEBP", lossless=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def painting(processing: str, *, model: str = INPAINTING, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "a fox",
        "models": [model],
        "params": {"width": 64, "height": 64},
        "source_image": webp("RGB"),
        "source_processing": processing,
        **extra,
    }


async def _sim(models: tuple[str, ...]) -> AsyncIterator[Simulator]:
    knobs = Knobs(
        speed=0.01,
        worker_threads=1,
        advertised_image_models=models,
        rate_limits=RateLimits(enabled=False),
    )
    async with run_simulator(SimulatorConfig(knobs=knobs)) as sim:
        yield sim


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Workers serving a plain model and an inpainting one."""
    async for running in _sim(("Deliberate", INPAINTING)):
        yield running


@pytest.fixture
async def plain_sim() -> AsyncIterator[Simulator]:
    """Workers serving no inpainting model."""
    async for running in _sim(("Deliberate",)):
        yield running


async def test_controlnet_with_inpainting_is_refused(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = painting("inpainting", source_mask=webp("L"))
    body["params"]["control_type"] = "canny"

    status, answer, _ = await call(http, sim, "POST", "v2/generate/async", json=body, headers=ALICE)

    assert (status, answer["rc"]) == (400, "ControlNetInpaintingMismatch")
    assert answer["message"] == "ControlNet cannot be used with inpainting at this time"


async def test_inpainting_needs_a_mask_or_an_alpha_channel(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    status, answer, _ = await call(
        http, sim, "POST", "v2/generate/async", json=painting("inpainting"), headers=ALICE
    )
    assert (status, answer["rc"]) == (400, "InpaintingMissingMask")

    for accepted in (
        painting("inpainting", source_mask=webp("L")),
        painting("inpainting", source_image=webp("RGBA")),
    ):
        status, answer, _ = await call(http, sim, "POST", "v2/generate/async", json=accepted, headers=ALICE)
        assert status == 202, answer


async def test_outpainting_without_a_mask_is_accepted(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, answer, _ = await call(
        http, sim, "POST", "v2/generate/async", json=painting("outpainting"), headers=ALICE
    )

    assert status == 202, answer
    assert "warnings" not in answer


async def test_painting_waits_for_a_worker_with_an_inpainting_model(
    http: aiohttp.ClientSession, plain_sim: Simulator
) -> None:
    body = painting("outpainting", model="Deliberate", source_mask=webp("L"))
    status, answer, _ = await call(http, plain_sim, "POST", "v2/generate/async", json=body, headers=ALICE)

    assert status == 202
    assert [warning["code"] for warning in answer["warnings"]] == ["NoAvailableWorker"]
    _, check, _ = await call(http, plain_sim, "GET", f"v2/generate/check/{answer['id']}")
    assert check["is_possible"] is False
    # The same model without a source image is served.
    plain = {"prompt": "a fox", "models": ["Deliberate"], "params": {"width": 64, "height": 64}}
    status, answer, _ = await call(http, plain_sim, "POST", "v2/generate/async", json=plain, headers=ALICE)
    assert "warnings" not in answer


async def test_outpainting_on_an_inpainting_model_is_generated(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    body = painting("outpainting", source_mask=webp("L"))
    _, answer, _ = await call(http, sim, "POST", "v2/generate/async", json=body, headers=ALICE)

    request = sim.state.requests[answer["id"]]
    assert request.source_processing == "outpainting"
    _, check, _ = await call(http, sim, "GET", f"v2/generate/check/{answer['id']}")
    assert check["is_possible"] is True
