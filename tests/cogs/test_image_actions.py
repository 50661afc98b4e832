"""The per-image actions of an /imagine result through SimCord and the simulator: U1 … (Upscale #n
and its reply's buttons), V1 … (Vary), Zoom out and Pan (outpainting); each request checked
field by field, and the buttons still answer after a restart."""

from __future__ import annotations

import base64
import io
import json
from typing import TYPE_CHECKING, Any

import discord
import PIL.Image
import pytest
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    journal_of,
    response_of,
    settings,
)

from bot.services.image.actions import VARY_STRONG, VARY_SUBTLE
from bot.services.image.inpainting import NO_INPAINTING_WORKER
from bot.storage import JobRecord
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

INPAINTING = "Deliberate Inpainting"


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    models = ("stable_diffusion", "Deliberate", INPAINTING)
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2, advertised_image_models=models))


def _image(b64: str) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(base64.b64decode(b64)))


async def _imagine(server: Server, **options: Any) -> Any:
    options = {"prompt": "a fox", "count": 4, "width": 64, "height": 128, "seed": "7", **options}
    return response_of(await server.alice.slash(server.channel, "imagine", **options))


async def _newest(server: Server, member: Any) -> JobRecord:
    return (await journal_of(server, member))[0]


def _sent(job: JobRecord) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(job.request_json)
    return body


async def test_a_result_of_four_has_u_and_v_for_each_image(server: Server) -> None:
    message = await _imagine(server)
    labels = [[button["label"] for button in row["components"]] for row in message.components]

    assert labels == [
        ["U1", "U2", "U3", "U4"],
        ["V1", "V2", "V3", "V4"],
        ["Rerun", "Same seed", "Edit", "Details", "Delete"],
    ]


async def test_vary_sends_that_image_as_img2img_with_the_same_prompt_and_settings(
    server: Server, horde_sim: Simulator
) -> None:
    message = await _imagine(server, negative_prompt="rain", steps=12)
    [original] = await journal_of(server, server.alice)
    third = next(a for a in message.attachments if a.filename.startswith("imagine_3_"))

    result = await server.bob.click(message, label="V3")

    assert not result.ephemeral
    varied = await _newest(server, server.bob)
    sent, before = _sent(varied), _sent(original)
    assert sent["prompt"] == before["prompt"] == "a fox ### rain"
    assert sent["models"] == before["models"]
    assert sent["source_processing"] == "img2img"
    assert "source_mask" not in sent
    assert sent["params"]["denoising_strength"] == VARY_STRONG
    assert "seed" not in sent["params"]  # a new set: a new seed
    for name in ("steps", "width", "height", "n", "sampler_name", "cfg_scale", "karras"):
        assert sent["params"][name] == before["params"][name], name
    with _image(sent["source_image"]) as source, PIL.Image.open(io.BytesIO(await third.read())) as shown:
        assert source.size == (64, 128)
        assert source.convert("RGB").getpixel((32, 64)) == pytest.approx(
            shown.convert("RGB").getpixel((32, 64)), abs=12
        )
    assert "kudos" in response_of(result).content
    assert horde_sim.state.requests[varied.horde_id or ""].source_processing == "img2img"


async def test_upscale_n_upscales_that_image_and_its_reply_has_its_own_buttons(server: Server) -> None:
    message = await _imagine(server)
    [original] = await journal_of(server, server.alice)

    upscaled = response_of(await server.bob.click(message, label="U2"))

    [attachment] = upscaled.attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (128, 256)  # RealESRGAN_x2plus
    job = await _newest(server, server.bob)
    assert job.kind == "alchemy"
    assert _sent(job)["forms"] == [{"name": "RealESRGAN_x2plus"}]
    assert json.loads(job.params_json)["origin"] == {"job_id": original.id, "number": 2}
    assert "0 kudos" in upscaled.content
    labels = [[button["label"] for button in row["components"]] for row in upscaled.components]
    assert labels == [
        ["Vary (Subtle)", "Vary (Strong)", "Zoom out 1.5×", "Zoom out 2×", "Details"],
        ["Pan", "Pan", "Pan", "Pan"],
    ]


async def _upscaled(server: Server) -> Any:
    message = await _imagine(server)
    return response_of(await server.alice.click(message, label="U1"))


async def test_vary_subtle_on_the_upscaled_image_sends_it_at_the_jobs_size(server: Server) -> None:
    upscaled = await _upscaled(server)

    await server.bob.click(upscaled, label="Vary (Subtle)")

    sent = _sent(await _newest(server, server.bob))
    assert sent["params"]["denoising_strength"] == VARY_SUBTLE
    with _image(sent["source_image"]) as source:
        assert source.size == (64, 128)  # the 128×256 upscale, back at the job's size


async def test_zoom_out_2x_outpaints_the_image_centred_on_an_inpainting_model(
    server: Server, horde_sim: Simulator
) -> None:
    upscaled = await _upscaled(server)

    result = await server.bob.click(upscaled, label="Zoom out 2×")

    job = await _newest(server, server.bob)
    sent = _sent(job)
    assert sent["models"] == [INPAINTING]
    assert sent["source_processing"] == "outpainting"
    assert (sent["params"]["width"], sent["params"]["height"]) == (128, 256)
    assert sent["params"]["denoising_strength"] == 1.0
    assert sent["prompt"] == "a fox"
    with _image(sent["source_image"]) as source, _image(sent["source_mask"]) as mask:
        assert source.mode == "RGBA"
        assert source.size == mask.size == (128, 256)
        # The image in the middle (opaque, kept: black in the mask), the border new (transparent, white).
        assert source.getpixel((64, 128))[3] == 255
        assert mask.convert("L").getpixel((64, 128)) < 10
        assert source.getpixel((4, 4))[3] == 0
        assert mask.convert("L").getpixel((4, 4)) > 245
    assert horde_sim.state.requests[job.horde_id or ""].source_processing == "outpainting"
    assert "kudos" in response_of(result).content


async def test_pan_left_extends_the_canvas_on_the_left(server: Server) -> None:
    upscaled = await _upscaled(server)

    await server.bob.click(
        upscaled,
        custom_id=next(
            button["custom_id"]
            for row in upscaled.components
            for button in row["components"]
            if button.get("emoji", {}).get("name") == "⬅️"
        ),
    )

    sent = _sent(await _newest(server, server.bob))
    assert (sent["params"]["width"], sent["params"]["height"]) == (64, 128)  # 96 rounds down to 64
    with _image(sent["source_mask"]) as mask:
        grey = mask.convert("L")
        assert grey.getpixel((0, 64)) > 245  # new on the left
        assert grey.getpixel((63, 64)) < 10  # the image kept on the right


@pytest.mark.parametrize("horde_sim_config", [SimulatorConfig(knobs=Knobs(speed=0.05))])
async def test_zoom_out_without_an_inpainting_worker_says_so_plainly(
    server: Server, horde_sim: Simulator
) -> None:
    upscaled = await _upscaled(server)
    before = len(horde_sim.state.requests)

    result = await server.bob.click(upscaled, label="Zoom out 1.5×")

    assert result.ephemeral
    assert response_of(result).content == NO_INPAINTING_WORKER
    assert len(horde_sim.state.requests) == before


@pytest.mark.parametrize("horde_sim_config", [SimulatorConfig(knobs=Knobs(speed=0.05))])
async def test_an_inpainting_worker_that_came_up_since_the_list_was_cached_is_found(
    server: Server, horde_sim: Simulator
) -> None:
    upscaled = await _upscaled(server)
    refused = await server.bob.click(upscaled, label="Zoom out 1.5×")
    assert response_of(refused).content == NO_INPAINTING_WORKER
    horde_sim.state.knobs.advertised_image_models += (INPAINTING,)
    await server.env.advance_time(10)  # within the cache's minute, past the re-check's 5 s

    await server.bob.click(upscaled, label="Zoom out 1.5×")

    assert _sent(await _newest(server, server.bob))["models"] == [INPAINTING]


async def test_the_buttons_of_an_old_result_work_after_a_restart(server: Server) -> None:
    message = await _imagine(server, count=2)
    await server.restart()

    await server.bob.click(message, label="V2")

    assert _sent(await _newest(server, server.bob))["source_processing"] == "img2img"


async def test_six_images_get_selects_that_still_answer_after_a_restart(server: Server) -> None:
    await server.bot.guild_settings.set(server.guild.id, "max_count", "6", server.admin.id)
    message = await _imagine(server, count=6)
    [upscale_pick, vary_pick] = [row["components"][0] for row in message.components[:2]]
    assert [option["label"] for option in vary_pick["options"]] == [f"Vary image #{n}" for n in range(1, 7)]
    await server.restart()

    await server.bob.select(message, ["6"], custom_id=vary_pick["custom_id"])
    varied = await _newest(server, server.bob)
    await server.bob.select(message, ["5"], custom_id=upscale_pick["custom_id"])
    upscaled = await _newest(server, server.bob)

    assert varied.kind == "image"
    assert json.loads(varied.params_json)["source_image"] == "image #6 (Vary Strong)"
    assert json.loads(upscaled.params_json)["origin"]["number"] == 5


async def test_the_upscale_button_of_an_older_result_still_opens_its_picker(server: Server) -> None:
    """Results posted before U1 … carry ``imagine:upscale:<job id>``: it keeps working."""
    from cogs._jobs import job_view
    from cogs.imagine._views import UPSCALE_SELECT_ID, Action, ImagineButton

    message = await _imagine(server, count=2)
    [job] = await journal_of(server, server.alice)
    channel = server.bot.get_channel(server.channel.id)
    assert isinstance(channel, discord.TextChannel)
    old = await channel.fetch_message(job.message_id or 0)
    await old.edit(view=job_view(ImagineButton(Action.upscale, job.id)))

    picker = await server.bob.click(message, label="Upscale")
    picked = await server.bob.select(response_of(picker), ["1"], custom_id=UPSCALE_SELECT_ID)

    assert len(response_of(picked).attachments) == 1
    assert (await _newest(server, server.bob)).kind == "alchemy"
