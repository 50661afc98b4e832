"""/imagine end to end on SimCord, against the AI Horde simulator (fast workers: a whole job fits in
one action). Jobs that must stay in flight are in ``test_imagine_inflight.py``."""

from __future__ import annotations

import base64
import io
import itertools
import json
from typing import TYPE_CHECKING

import PIL.Image
import pytest
import simcord
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    NO_MENTIONS_JSON,
    custom_ids,
    journal_of,
    message_edits,
    only_job,
    payload,
    phone_photo,
    response_of,
    settings,
    until,
)

from bot.horde import AIHordeAPIAsyncManualClient, ImageGenerateAsyncResponse
from bot.services.delivery.render import LOGIN_HINT
from bot.services.image.render import CENSORED_NOTE
from bot.services.image.request import ImagineOptions, build_request
from bot.storage import JobRecord, JobState
from cogs.accounts import APIKEY_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
RESULT_BUTTONS = ["rerun", "seed", "edit", "details", "delete"]


def result_ids(job_id: str, images: int) -> list[str]:
    """The custom ids under a result of ``images`` images: U1 …, V1 …, then the whole result's."""
    per_image = [f"image:{action}:{n}:{job_id}" for action in "uv" for n in range(1, images + 1)]
    return per_image + [f"imagine:{action}:{job_id}" for action in RESULT_BUTTONS]


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    # Three simulated workers, so a batch is processed in parallel; each takes 0.1 s.
    return SimulatorConfig(knobs=Knobs(speed=0.1, worker_threads=3))


async def imagine(
    server: Server,
    member: simcord.MemberActor | None = None,
    channel: simcord.ChannelHandle | None = None,
    **options: object,
) -> simcord.ResponseMessage:
    result = await (member or server.alice).slash(channel or server.channel, "imagine", **options)
    assert not result.ephemeral
    return response_of(result)


async def login(server: Server, member: simcord.MemberActor, key: str) -> None:
    shown = await member.slash(server.channel, "login")
    await member.submit_modal(shown, {APIKEY_INPUT_ID: key})


def sim_request(horde_sim: Simulator, job: JobRecord):  # type: ignore[no-untyped-def]
    assert job.horde_id is not None
    return horde_sim.state.requests[job.horde_id]


# -- the happy path ------------------------------------------------------------------------------


async def test_one_message_shows_the_progress_then_the_images(server: Server, horde_sim: Simulator) -> None:
    message = await imagine(server, prompt="a red fox in the snow", count=3)

    job = await only_job(server, server.alice)
    assert job.state is JobState.DONE
    assert job.message_id == message.id
    edits = message_edits(server, message.id)
    contents = [payload(edit)["content"] for edit in edits]
    progress = [content for content in contents if "finished ·" in content]
    assert len(progress) >= 2
    # Each edit shows something new: other text, or more images.
    shown = [(payload(edit)["content"], len(payload(edit).get("attachments", []))) for edit in edits]
    assert all(before != after for before, after in itertools.pairwise(shown))
    assert all("a red fox in the snow" in content for content in progress)
    assert all("`" in content and "kudos" in content and "elapsed" in content for content in progress)
    # The Cancel button is on the progress message, the result buttons on the final one.
    assert any(f"imagine:cancel:{job.id}" in json.dumps(payload(edit)) for edit in edits[:-1])
    assert custom_ids(message) == result_ids(job.id, 3)
    assert message.content.startswith("✅ **Done** — 3 images")
    # Every image as the worker made it: webp, byte for byte.
    result = json.loads(job.result_json or "{}")
    assert len(message.attachments) == 3
    for attachment, image in zip(message.attachments, result["images"], strict=True):
        assert attachment.filename.endswith(f"_{image['seed']}.webp")
        assert await attachment.read() == horde_sim.state.get_image(image["id"])
    fields = {field.name: field.value for field in message.embeds[0].fields}
    assert message.embeds[0].description == "a red fox in the snow"
    assert fields["Seeds"] == "\n".join(
        f"#{i + 1} `{image['seed']}`" for i, image in enumerate(result["images"])
    )
    assert fields["Workers"]
    assert float(fields["Kudos"]) == pytest.approx(job.kudos)


async def test_each_image_is_attached_as_soon_as_it_is_ready(server: Server, horde_sim: Simulator) -> None:
    # One image after the other, 0.3 s each; the bot polls every 0.1 s meanwhile.
    horde_sim.state.knobs.worker_threads = 1
    horde_sim.state.knobs.speed = 0.3

    message = await imagine(server, prompt="a lighthouse", count=3)

    uploads = [payload(edit) for edit in message_edits(server, message.id) if "attachments" in payload(edit)]
    first = uploads[0]
    assert "finished ·" in first["content"]  # still in progress when the first image went up
    assert 0 < len(first["attachments"]) < 3
    assert len(message.attachments) == 3


async def test_the_options_reach_the_horde(server: Server, horde_sim: Simulator) -> None:
    await imagine(
        server,
        prompt="a castle",
        negative_prompt="fog",
        model="Deliberate",
        sampler="k_heun",
        steps=12,
        cfg_scale=6.5,
        aspect="wide",
        seed="1234",
        karras=False,
        hires_fix=True,
        upscaler="RealESRGAN_x2plus",
        face_fixer="GFPGANv1.3",
        loras="glow:0.5, 12345",
        textual_inversions="7808",
        tiling=True,
    )

    job = await only_job(server, server.alice)
    request = sim_request(horde_sim, job)
    assert request.prompt == "a castle ### fog"
    assert request.models == ["Deliberate"]
    assert (request.nsfw, request.censor_nsfw) == (False, True)
    params = json.loads(job.request_json)["params"]
    assert params["sampler_name"] == "k_heun"
    assert (params["steps"], params["cfg_scale"], params["width"], params["height"]) == (12, 6.5, 704, 384)
    assert (params["seed"], params["karras"], params["hires_fix"], params["tiling"]) == (
        "1234",
        False,
        True,
        True,
    )
    assert params["post_processing"] == ["RealESRGAN_x2plus", "GFPGANv1.3"]
    assert params["loras"] == [{"name": "glow", "model": 0.5}, {"name": "12345", "model": 1.0}]
    assert params["tis"] == [{"name": "7808", "strength": 1.0, "inject_ti": "prompt"}]
    assert json.loads(job.params_json)["prompt"] == "a castle"


# -- bad options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 100}, "Width must be a multiple of 64 between 64 and 3072."),
        ({"steps": 60}, "Steps must be between 1 and 50."),
        ({"count": 5}, "Count must be between 1 and 4."),
        ({"width": 2048, "height": 1024}, "Width × height may be at most 1,048,576 pixels here"),
        (
            {"aspect": "square", "width": 512},
            "Choose either an aspect preset or a width and height, not both.",
        ),
        ({"loras": ",".join("abcdef")}, "At most 5 LoRAs per request; you gave 6."),
        ({"strength": 0.5}, "Strength only applies to a source image"),
    ],
)
async def test_bad_options_get_a_private_answer_and_nothing_is_sent(
    server: Server, horde_sim: Simulator, options: dict[str, object], message: str
) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox", **options)

    assert result.ephemeral
    assert response_of(result).content.startswith(message)
    assert horde_sim.counters.calls("generate_async") == 0
    assert server.channel.history(viewer=server.bob) == []
    assert await journal_of(server, server.alice) == []


async def test_discord_enforces_the_hordes_own_bounds(server: Server) -> None:
    with pytest.raises(simcord.OptionError):
        await server.alice.slash(server.channel, "imagine", prompt="a fox", steps=501)
    with pytest.raises(simcord.OptionError):
        await server.alice.slash(server.channel, "imagine", prompt="a fox", width=32)


# -- NSFW and censorship ---------------------------------------------------------------------------


async def test_a_censored_image_is_shown_as_censored(server: Server, horde_sim: Simulator) -> None:
    message = await imagine(server, prompt="a censor-me fox")

    job = await only_job(server, server.alice)
    request = sim_request(horde_sim, job)
    assert (request.nsfw, request.censor_nsfw) == (False, True)
    [attachment] = message.attachments
    [image] = json.loads(job.result_json or "{}")["images"]
    assert image["censored"] is True
    assert attachment.filename == f"SPOILER_imagine_1_{image['seed']}.webp"
    assert f"Image 1 (seed {image['seed']}) was {CENSORED_NOTE}." in message.content


async def test_nsfw_is_allowed_in_an_age_restricted_channel(server: Server, horde_sim: Simulator) -> None:
    message = await imagine(server, channel=server.nsfw_channel, prompt="a censor-me fox")

    job = await only_job(server, server.alice)
    assert (sim_request(horde_sim, job).nsfw, sim_request(horde_sim, job).censor_nsfw) == (True, False)
    [attachment] = message.attachments
    assert not attachment.filename.startswith("SPOILER_")
    assert CENSORED_NOTE not in message.content


# -- mentions, keys ----------------------------------------------------------------------------------


async def test_a_prompt_with_mentions_pings_nobody(server: Server) -> None:
    prompt = f"@everyone look {server.bob.mention} <@&{server.guild.id}>"

    message = await imagine(server, prompt=prompt)

    edits = message_edits(server, message.id)
    assert edits
    assert all(payload(edit)["allowed_mentions"] == NO_MENTIONS_JSON for edit in edits)
    assert prompt in payload(edits[0])["content"]
    stored = server.env.backend.get_message(server.channel.id, message.id)
    assert stored.ping_user_ids == []
    assert not message.message.mention_everyone


async def test_an_anonymous_user_is_told_how_to_log_in(server: Server, horde_sim: Simulator) -> None:
    message = await imagine(server, prompt="a fox")

    job = await only_job(server, server.alice)
    assert job.key_owner == "anonymous"
    assert sim_request(horde_sim, job).user.alias == "Anonymous"
    assert LOGIN_HINT in message.content
    assert "/login" in LOGIN_HINT


async def test_a_logged_in_user_generates_with_their_own_key(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)

    message = await imagine(server, prompt="a fox")

    job = await only_job(server, server.alice)
    assert job.key_owner == "user"
    assert sim_request(horde_sim, job).user.alias == "alice"
    assert LOGIN_HINT not in message.content
    assert ALICE_KEY not in job.request_json


# -- the model option ------------------------------------------------------------------------------


async def test_the_model_autocompletes_with_workers_and_queue(server: Server, horde_sim: Simulator) -> None:
    choices = await server.alice.autocomplete(server.channel, "imagine", "model", "albedo", prompt="x")

    [first, *_] = choices
    assert first["value"] == "AlbedoBase XL (SDXL)"
    assert first["name"].startswith("AlbedoBase XL (SDXL) — ")
    assert " workers, " in first["name"] or " worker, " in first["name"]
    assert first["name"].endswith(" queued")

    everything = await server.alice.autocomplete(server.channel, "imagine", "model", "", prompt="x")
    assert {choice["value"] for choice in everything} == {
        "stable_diffusion",
        "AlbedoBase XL (SDXL)",
        "Deliberate",
    }
    assert horde_sim.counters.calls("status_models") == 1  # the second one came from the cache


# -- img2img ---------------------------------------------------------------------------------------


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", size, (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


async def test_a_source_image_is_sent_as_webp(server: Server, horde_sim: Simulator) -> None:
    await imagine(server, prompt="make it blue", source_image=("cat.png", png()), strength=0.6)

    job = await only_job(server, server.alice)
    body = json.loads(job.request_json)
    source = PIL.Image.open(io.BytesIO(base64.b64decode(body["source_image"])))
    assert source.format == "WEBP"
    assert source.size == (64, 64)
    assert body["params"]["denoising_strength"] == 0.6
    assert json.loads(job.params_json)["source_image"] == "cat.png"


async def test_a_phone_photo_keeps_its_orientation(server: Server, horde_sim: Simulator) -> None:
    await imagine(server, prompt="make it blue", source_image=("phone.jpg", phone_photo(128, 64)))

    job = await only_job(server, server.alice)
    source = PIL.Image.open(io.BytesIO(base64.b64decode(json.loads(job.request_json)["source_image"])))
    assert source.size == (64, 128)  # upright, as the phone showed it
    red, _, blue = source.convert("RGB").getpixel((32, 16))
    assert (red > 200, blue < 60) == (True, True)  # the stored left half is on top


async def test_a_file_that_is_not_an_image_is_refused_privately(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(
        server.channel, "imagine", prompt="x", source_image=("notes.txt", b"hello, not an image")
    )

    assert result.ephemeral
    assert "isn't an image" in response_of(result).content
    assert horde_sim.counters.calls("generate_async") == 0


async def test_a_decompression_bomb_is_refused_privately(server: Server, horde_sim: Simulator) -> None:
    bomb = png((4000, 4000))  # a small file that would decode to 16 million pixels

    result = await server.alice.slash(server.channel, "imagine", prompt="x", source_image=("bomb.png", bomb))

    [answer] = [*([result.response] if result.response else []), *result.followups]
    assert answer.ephemeral
    assert "too large" in answer.content
    assert server.channel.history(viewer=server.bob) == []
    assert horde_sim.counters.calls("generate_async") == 0


# -- the result buttons ----------------------------------------------------------------------------


async def test_details_show_the_journalled_parameters(server: Server) -> None:
    message = await imagine(server, prompt="a fox", seed="77", steps=9)

    clicked = await server.bob.click(message, label="Details")

    assert clicked.ephemeral
    [embed] = response_of(clicked).embeds
    fields = {field.name: field.value for field in embed.fields}
    assert (embed.description, fields["Seed"], fields["Steps"]) == ("a fox", "77", "9")
    assert fields["Seeds"].startswith("#1 `77`")


async def test_rerun_uses_the_clicking_members_key_and_a_new_seed(
    server: Server, horde_sim: Simulator
) -> None:
    await login(server, server.alice, ALICE_KEY)
    message = await imagine(server, prompt="a fox", seed="42")

    clicked = await server.bob.click(message, label="Rerun")

    assert not clicked.ephemeral
    rerun = response_of(clicked)
    [job] = await journal_of(server, server.bob)
    assert rerun.id == job.message_id != message.id
    assert job.state is JobState.DONE
    assert job.key_owner == "anonymous"
    assert sim_request(horde_sim, job).user.alias == "Anonymous"
    assert "seed" not in json.loads(job.request_json)["params"]
    assert json.loads(job.request_json)["prompt"] == "a fox"
    assert len(rerun.attachments) == 1


def shown_seeds(job: JobRecord) -> list[str]:
    images = sorted(json.loads(job.result_json or "{}")["images"], key=lambda image: image["index"])
    return [image["seed"] for image in images]


async def test_same_seed_makes_the_set_again_each_image_with_its_own_seed(
    server: Server, horde_sim: Simulator
) -> None:
    message = await imagine(server, prompt="a fox", count=2)
    [original] = await journal_of(server, server.alice)
    seeds = shown_seeds(original)
    assert len(set(seeds)) == 2

    clicked = await server.alice.click(message, label="Same seed")

    reruns = sorted(
        (job for job in await journal_of(server, server.alice) if job.id != original.id),
        key=lambda job: job.created_at,
    )
    # The Horde gives every image of one request the same seed: one request per image, in order.
    assert [json.loads(job.request_json)["params"]["seed"] for job in reruns] == seeds
    assert [json.loads(job.request_json)["params"]["n"] for job in reruns] == [1, 1]
    assert [shown_seeds(job) for job in reruns] == [[seeds[0]], [seeds[1]]]
    assert response_of(clicked).id == reruns[0].message_id
    assert reruns[1].message_id == server.channel.last_message.id  # type: ignore[union-attr]


async def test_same_seed_with_an_asked_seed_is_one_request(server: Server) -> None:
    message = await imagine(server, prompt="a fox", count=2, seed="77")

    await server.alice.click(message, label="Same seed")

    rerun, _ = await journal_of(server, server.alice)
    assert (
        json.loads(rerun.request_json)["params"]["seed"],
        json.loads(rerun.request_json)["params"]["n"],
    ) == (
        "77",
        2,
    )
    assert shown_seeds(rerun) == ["77", "77"]


async def test_delete_is_for_the_requester_or_a_moderator(server: Server) -> None:
    message = await imagine(server, prompt="a fox")

    refused = await server.bob.click(message, label="Delete")
    assert refused.ephemeral
    assert "Only the member who started this generation or a moderator" in response_of(refused).content
    assert message.id in [seen.id for seen in server.channel.history(viewer=server.alice)]

    await server.moderator.click(message, label="Delete")
    assert message.id not in [seen.id for seen in server.channel.history(viewer=server.alice)]


async def test_the_requester_may_delete_their_images(server: Server) -> None:
    message = await imagine(server, prompt="a fox")

    await server.alice.click(message, label="Delete")

    assert server.channel.history(viewer=server.alice) == []


async def test_the_buttons_work_after_a_restart(server: Server) -> None:
    message = await imagine(server, prompt="a fox", seed="5")

    await server.restart()

    details = await server.bob.click(message, label="Details")
    assert {field.name: field.value for field in response_of(details).embeds[0].fields}["Seed"] == "5"
    rerun = await server.alice.click(message, label="Same seed")
    assert response_of(rerun).content.startswith("✅ **Done** — 1 image")
    assert len(await journal_of(server, server.alice)) == 2


# -- resume after a restart ------------------------------------------------------------------------


async def test_a_job_left_running_by_a_crash_is_delivered_after_the_restart(
    server: Server, horde_sim: Simulator
) -> None:
    # A message of the bot, and a job journalled as SUBMITTED into it whose Horde request keeps
    # running: what a bot process that died mid-job leaves behind.
    message = await imagine(server, prompt="a first fox")
    horde_sim.state.knobs.speed = 0.3
    built = build_request(
        ImagineOptions(prompt="a fox after the crash", n=2), server.settings.defaults, allow_nsfw=False
    )
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(built.request, ImageGenerateAsyncResponse)
    assert isinstance(accepted, ImageGenerateAsyncResponse)
    crashed = await server.bot.storage.jobs.create(
        JobRecord(
            kind="image",
            state=JobState.SUBMITTED,
            horde_id=accepted.id_,
            guild_id=server.guild.id,
            channel_id=server.channel.id,
            message_id=message.id,
            user_id=server.alice.id,
            key_owner="anonymous",
            request_json=json.dumps(built.request.to_wire().json),
            params_json=built.params_json,
        )
    )
    assert horde_sim.state.requests[accepted.id_].finished < 2

    await server.restart()
    await until(lambda: message.content.startswith("✅"))

    resumed = await server.bot.storage.jobs.get(crashed.id)
    assert resumed is not None
    assert resumed.state is JobState.DONE
    assert message.content.startswith("✅ **Done** — 2 images")
    assert message.embeds[0].description == "a fox after the crash"
    assert custom_ids(message) == result_ids(crashed.id, 2)
    assert len(message.attachments) == 2
    assert horde_sim.counters.calls("generate_async") == 2  # nothing was submitted again
