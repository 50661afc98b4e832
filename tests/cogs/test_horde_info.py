"""/horde status, /models and /styles on SimCord, against the AI Horde simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_imagine_support import response_of

from bot.horde.simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

MODELS = tuple(f"model-{index:02d}" for index in range(13))


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(advertised_image_models=MODELS, worker_threads=2))


async def test_horde_status_shows_the_heartbeat_and_the_load(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.heartbeat_message = "OVERLOADED"

    result = await server.alice.slash(server.channel, "horde status")

    assert result.ephemeral
    embed = response_of(result).embeds[0]
    assert "OVERLOADED" in (embed.description or "")
    assert [field.name for field in embed.fields] == ["Images", "Text", "Alchemy"]
    assert "workers" in embed.fields[0].value
    assert horde_sim.counters.calls("heartbeat") == 1
    assert horde_sim.counters.calls("performance") == 1


async def test_models_pages_with_buttons(server: Server) -> None:
    result = await server.alice.slash(server.channel, "models")
    message = response_of(result)
    first = message.embeds[0]
    assert first.footer.text == f"Page 1/2 · {len(MODELS)} models"
    assert len((first.description or "").splitlines()) == 10

    await server.alice.click(message, label="Next")
    second = response_of(result).embeds[0]
    assert second.footer.text == f"Page 2/2 · {len(MODELS)} models"
    assert len((second.description or "").splitlines()) == 3

    await server.alice.click(message, label="By queue")
    assert response_of(result).embeds[0].title == "Image models by queue"
    assert response_of(result).embeds[0].footer.text.startswith("Page 1/2")


async def test_text_models_are_listed_too(server: Server) -> None:
    result = await server.alice.slash(server.channel, "models", type="text")

    assert "koboldcpp/SimLlama-8B" in (response_of(result).embeds[0].description or "")


async def test_styles_lists_a_page_of_styles(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "styles")

    assert result.ephemeral
    assert response_of(result).embeds[0].title == "Image styles, page 1"
    assert horde_sim.counters.calls("styles_image") == 1
