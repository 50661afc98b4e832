"""/alchemy and the image context menus end to end on SimCord, against the AI Horde simulator."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import PIL.Image
import pytest
from test_imagine_support import response_of

from bot.horde.simulator import Knobs, SimulatorConfig
from bot.services.alchemy import NO_IMAGE
from bot.storage import JobState

if TYPE_CHECKING:
    from conftest import Server


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


def png(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def bomb() -> bytes:
    """A small PNG whose header claims 20000×20000 pixels."""
    out = io.BytesIO()
    PIL.Image.new("1", (20_000, 20_000)).save(out, format="PNG")
    return out.getvalue()


async def test_caption_comes_back_in_an_embed(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="caption"
    )

    message = response_of(result)
    assert message.embeds[0].description == "a landscape red image, 64x48 pixels"
    assert "✅ **Done**" in (message.content or "")
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    assert job.kind == "alchemy"
    assert job.state is JobState.DONE
    assert json.loads(job.request_json)["source_image"] == "<omitted>"


async def test_interrogation_lists_the_tags(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="interrogation"
    )

    embed = response_of(result).embeds[0]
    tags = next(field for field in embed.fields if field.name == "Tags")
    assert tags.value == "red (90%), landscape (75%), gradient (50%)"


async def test_upscale_attaches_the_upscaled_image(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="RealESRGAN_x4plus"
    )

    message = response_of(result)
    [attachment] = message.attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (256, 192)
    assert message.embeds[0].image.url == f"attachment://{attachment.filename}"


async def test_a_file_that_is_not_an_image_gets_a_clear_error(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("notes.txt", b"hello"), operation="caption"
    )

    assert result.ephemeral
    assert "isn't an image" in (response_of(result).content or "")
    assert await server.bot.storage.jobs.list_recent(server.alice.id, limit=5) == []


async def test_a_decompression_bomb_is_refused(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("bomb.png", bomb()), operation="caption"
    )

    assert "too large" in (response_of(result).content or "")
    assert await server.bot.storage.jobs.list_recent(server.alice.id, limit=5) == []


async def test_describe_image_menu_captions_a_message_image(server: Server) -> None:
    posted = await server.bob.send(server.channel, "look", attachments=[("dog.png", png(32, 32, "blue"))])

    result = await server.alice.context_menu(server.channel, "Describe image", posted)

    assert response_of(result).embeds[0].description == "a square blue image, 32x32 pixels"


async def test_upscale_image_menu_doubles_the_image(server: Server) -> None:
    posted = await server.bob.send(server.channel, "look", attachments=[("dog.png", png(32, 32, "blue"))])

    result = await server.alice.context_menu(server.channel, "Upscale image", posted)

    [attachment] = response_of(result).attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (64, 64)


async def test_the_menus_explain_a_message_without_an_image(server: Server) -> None:
    posted = await server.bob.send(server.channel, "no picture here")

    result = await server.alice.context_menu(server.channel, "Describe image", posted)

    assert result.ephemeral
    assert response_of(result).content == NO_IMAGE
