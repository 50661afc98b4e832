"""/horde status, modes and news, /models and /styles on SimCord, against the AI Horde simulator."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from test_horde_workers import FIXTURES, assert_within_embed_limits
from test_imagine_support import response_of

from bot.errors import HordeUnavailableError
from bot.horde import HordeModesResponse, Newspiece, NewsResponse
from cogs.horde_info import MODE_OFF, MODE_ON, MODE_UNKNOWN, NEWS_PER_PAGE, NewsPager, modes_embed
from horde_simulator import Fault, Knobs, Simulator, SimulatorConfig
from horde_simulator import _serialize as sim_serialize

if TYPE_CHECKING:
    from conftest import Server

# GET v2/status/modes of the real AI Horde 5.1.5 on loopback, without a key.
REAL_STATUS_MODES = '{"maintenance_mode": false, "invite_only_mode": false}'
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


async def test_horde_modes_shows_maintenance_and_invite_only(server: Server, horde_sim: Simulator) -> None:
    normal = await server.alice.slash(server.channel, "horde modes")
    horde_sim.state.knobs.maintenance_mode = True
    maintenance = await server.alice.user.slash("horde modes")  # in a DM too

    assert normal.ephemeral
    assert maintenance.ephemeral
    shown = {field.name: field.value for field in response_of(normal).embeds[0].fields}
    assert shown == {
        "Maintenance": f"{MODE_OFF} — new generations are accepted.",
        "Invite-only": f"{MODE_OFF} — anyone may run a worker.",
    }
    maintained = response_of(maintenance).embeds[0].fields[0].value or ""
    assert maintained.startswith(f"{MODE_ON} — the AI Horde takes no new generations")
    assert horde_sim.counters.calls("status_modes") == 2


def test_modes_the_horde_leaves_out_are_not_guessed() -> None:
    # The real server's answer without a moderator key has no raid_mode; nothing may be assumed.
    real = HordeModesResponse.model_validate_json(REAL_STATUS_MODES)
    assert (real.maintenance_mode, real.invite_only_mode, real.raid_mode) == (False, False, None)

    embed = modes_embed(HordeModesResponse.model_validate({"invite_only_mode": True}))
    assert [field.value for field in embed.fields] == [
        MODE_UNKNOWN,
        f"{MODE_ON} — only workers the AI Horde's team invited may join.",
    ]


async def test_horde_news_pages_newest_first(
    server: Server, horde_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [
        {
            "date_published": f"2025-0{month}-01",
            "title": f"Piece {month}",
            "newspiece": f"Text {month}",
            "importance": "Information",
            "tags": None,
            "more_info_urls": [],
        }
        for month in range(1, 7)
    ]
    monkeypatch.setattr(sim_serialize, "NEWS", tuple(pieces))

    result = await server.alice.user.slash("horde news")  # a DM: news is for everyone
    first = response_of(result).embeds[0]
    assert [field.name for field in first.fields] == [
        f"Piece {month} (2025-0{month}-01 · Information)" for month in (6, 5, 4, 3)
    ]
    assert first.footer.text == "Page 1/2 · 6 news items"

    await server.alice.user.click(response_of(result), label="Next")
    second = response_of(result).embeds[0]
    assert [field.value for field in second.fields] == ["Text 2", "Text 1"]
    assert horde_sim.counters.calls("news") == 1


def test_the_real_news_feed_fits_every_page() -> None:
    news = NewsResponse.model_validate_json((FIXTURES / "real" / "news_200.json").read_text()).root
    pager = NewsPager(sorted(news, key=lambda piece: piece.date_published or "", reverse=True), owner_id=1)

    assert pager.page_count() == math.ceil(len(news) / NEWS_PER_PAGE)
    for page in range(pager.page_count()):
        pager.page = page
        assert_within_embed_limits(pager.embed())


async def test_news_when_the_horde_fails(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.faults.script("news", Fault.http(503), times=10)

    result = await server.alice.slash(server.channel, "horde news")

    assert result.ephemeral
    assert response_of(result).content == HordeUnavailableError.default_message


def test_a_page_of_the_longest_news_still_fits() -> None:
    longest = Newspiece.model_validate(
        {
            "date_published": "2025-12-16",
            "importance": "Information",
            "title": "T" * 400,
            "newspiece": "n " * 3000,
        }
    )
    pager = NewsPager([longest] * (NEWS_PER_PAGE * 2), owner_id=1)

    assert_within_embed_limits(pager.embed())
