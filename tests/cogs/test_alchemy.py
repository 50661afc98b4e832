"""/alchemy and the image context menus end to end on SimCord, against the AI Horde simulator."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import PIL.Image
import pytest
import simcord
from test_imagine_support import phone_photo, response_of

from bot.services.alchemy.request import NO_IMAGE
from bot.storage import JobState
from horde_simulator import Knobs, Simulator, SimulatorConfig

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


async def test_a_phone_photo_is_upscaled_upright(server: Server) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("phone.jpg", phone_photo(64, 48)), operation="RealESRGAN_x4plus"
    )

    [attachment] = response_of(result).attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (192, 256)


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

    # Found only after the download: answered privately in a followup, the public reply removed.
    [answer] = result.followups
    assert answer.ephemeral
    assert "too large" in (answer.content or "")
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


# -- the server's rules ----------------------------------------------------------------------------


async def config_set(server: Server, setting: str, value: str, **options: object) -> None:
    result = await server.admin.slash(server.channel, "config set", setting=setting, value=value, **options)
    assert result.ephemeral
    assert (response_of(result).content or "").startswith("Changed")


def refusal(result: simcord.InteractionResult) -> str:
    assert result.ephemeral
    return response_of(result).content or ""


async def test_a_blocked_channel_refuses_alchemy_and_the_menus(server: Server, horde_sim: Simulator) -> None:
    posted = await server.bob.send(server.channel, "look", attachments=[("dog.png", png())])
    await config_set(server, "blocked_channels", server.channel.mention)

    results = [
        await server.alice.slash(server.channel, "alchemy", image=("cat.png", png()), operation="caption"),
        await server.alice.context_menu(server.channel, "Describe image", posted),
        await server.alice.context_menu(server.channel, "Upscale image", posted),
    ]

    assert [refusal(result) for result in results] == ["Generating images isn't allowed in this channel."] * 3
    assert horde_sim.counters.calls("interrogate_async") == 0
    assert await server.bot.storage.jobs.list_recent(server.alice.id, limit=5) == []


async def test_alchemy_and_imagines_upscale_button_can_be_turned_off_in_one_channel(
    server: Server, horde_sim: Simulator
) -> None:
    generated = response_of(
        await server.alice.slash(server.channel, "imagine", prompt="a fox", width=64, height=64)
    )
    await config_set(server, "allowed_commands", "imagine", channel=server.channel)

    command = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="caption"
    )
    picked = await server.bob.click(generated, label="U1")

    assert refusal(command) == refusal(picked) == "`/alchemy` isn't allowed in this channel."
    assert horde_sim.counters.calls("interrogate_async") == 0
    assert await server.bot.storage.jobs.list_recent(server.bob.id, limit=5) == []


async def test_without_anonymous_access_a_member_needs_a_key(server: Server, horde_sim: Simulator) -> None:
    await config_set(server, "allow_anonymous", "off")

    result = await server.bob.slash(server.channel, "alchemy", image=("cat.png", png()), operation="caption")

    assert "doesn't allow generating with the anonymous key" in refusal(result)
    assert horde_sim.counters.calls("interrogate_async") == 0


async def test_the_servers_allowed_models_leave_alchemy_alone(server: Server) -> None:
    await config_set(server, "allowed_models", "stable_diffusion")

    result = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="caption"
    )

    assert not result.ephemeral
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    assert job.state is JobState.DONE
