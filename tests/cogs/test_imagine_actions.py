"""/imagine estimate:True, and the Edit and Upscale buttons of a result, on SimCord and the simulator."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import PIL.Image
import pytest
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    journal_of,
    response_of,
    settings,
)

from bot.storage import JobState
from cogs.imagine._views import NEGATIVE_INPUT_ID, PROMPT_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


# -- estimate --------------------------------------------------------------------------------------


async def test_estimate_shows_a_price_and_submits_nothing(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox", steps=20, estimate=True)

    assert result.ephemeral
    content = response_of(result).content
    assert content.startswith("This would cost about **")
    assert "kudos**" in content
    assert horde_sim.counters.calls("generate_async") == 1  # the dry run
    assert horde_sim.state.requests == {}
    assert await journal_of(server, server.alice) == []
    assert server.channel.history(viewer=server.bob) == []


async def test_estimate_prices_the_options_given(server: Server, horde_sim: Simulator) -> None:
    small = await server.alice.slash(server.channel, "imagine", prompt="a fox", steps=10, estimate=True)
    large = await server.alice.slash(
        server.channel, "imagine", prompt="a fox", steps=30, count=4, estimate=True
    )

    def price(text: str) -> float:
        return float(text.split("**")[1].removesuffix(" kudos").replace(",", ""))

    assert price(response_of(large).content) > price(response_of(small).content) > 0


async def test_estimate_refuses_invalid_options_like_a_run(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(
        server.channel, "imagine", prompt="a fox", width=64, aspect="wide", estimate=True
    )

    assert result.ephemeral
    assert "aspect preset or a width and height" in response_of(result).content
    assert horde_sim.counters.calls("generate_async") == 0


# -- Edit ------------------------------------------------------------------------------------------


async def test_edit_runs_the_new_prompt_with_the_same_options(server: Server) -> None:
    posted = await server.alice.slash(
        server.channel, "imagine", prompt="a fox", negative_prompt="blur", steps=9
    )
    message = response_of(posted)

    shown = await server.bob.click(message, label="Edit")
    assert shown.modal is not None
    inputs = {
        component["custom_id"]: component.get("value")
        for row in shown.modal["components"]
        for component in row["components"]
    }
    assert inputs == {PROMPT_INPUT_ID: "a fox", NEGATIVE_INPUT_ID: "blur"}

    submitted = await server.bob.submit_modal(shown, {PROMPT_INPUT_ID: "a wolf", NEGATIVE_INPUT_ID: "rain"})

    [job] = await journal_of(server, server.bob)
    assert job.state is JobState.DONE
    request = json.loads(job.request_json)
    assert request["prompt"] == "a wolf ### rain"
    assert request["params"]["steps"] == 9
    assert json.loads(job.params_json)["prompt"] == "a wolf"
    edited = response_of(submitted)
    assert edited.id == job.message_id != message.id
    assert not edited.ephemeral
    assert len(edited.attachments) == 1


async def test_edit_refuses_an_empty_prompt_privately(server: Server) -> None:
    message = response_of(await server.alice.slash(server.channel, "imagine", prompt="a fox"))
    shown = await server.alice.click(message, label="Edit")

    submitted = await server.alice.submit_modal(shown, {PROMPT_INPUT_ID: "   "})

    assert submitted.ephemeral
    assert response_of(submitted).content == "The prompt must not be empty."
    assert len(await journal_of(server, server.alice)) == 1


# -- Upscale ---------------------------------------------------------------------------------------


async def test_upscale_attaches_the_upscaled_image_that_was_picked(server: Server) -> None:
    message = response_of(
        await server.alice.slash(server.channel, "imagine", prompt="a fox", count=2, width=64, height=128)
    )
    second = next(a for a in message.attachments if a.filename.startswith("imagine_2_"))

    picked = await server.bob.click(message, label="U2")

    upscaled = response_of(picked)
    assert not upscaled.ephemeral
    [attachment] = upscaled.attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (128, 256)  # RealESRGAN_x2plus
    [job] = await journal_of(server, server.bob)
    assert job.kind == "alchemy"
    assert json.loads(job.params_json)["filename"] == second.filename
