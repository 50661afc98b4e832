"""/imagine's Horde styles and its Advanced form (CLIP skip, seed variation, sharing), end to end on
SimCord against the AI Horde simulator (its styles: ``sim-photoreal`` on stable_diffusion,
``sim-sketch`` on Deliberate at 768×512)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    journal_of,
    only_job,
    response_of,
    settings,
)

from bot.storage import JobState
from cogs.imagine._advanced import CLIP_SKIP_INPUT_ID, SEED_VARIATION_INPUT_ID, SHARE_INPUT_ID
from cogs.imagine._views import PROMPT_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=3))


async def configure(server: Server, setting: str, value: str) -> None:
    result = await server.admin.slash(server.channel, "config set", setting=setting, value=value)
    assert "`" in response_of(result).content, response_of(result).content


# -- styles ----------------------------------------------------------------------------------------


async def test_the_style_autocompletes_with_its_model(server: Server) -> None:
    choices = await server.alice.autocomplete(server.channel, "imagine", "style", "sim", prompt="x")

    assert [(choice["name"], choice["value"]) for choice in choices] == [
        ("sim-photoreal — stable_diffusion", "sim-photoreal"),
        ("sim-sketch — Deliberate", "sim-sketch"),
    ]


async def test_a_style_applies_its_template_model_and_params_and_details_name_it(
    server: Server, horde_sim: Simulator
) -> None:
    message = response_of(
        await server.alice.slash(
            server.channel, "imagine", prompt="a lighthouse", negative_prompt="fog", style="sim-sketch"
        )
    )

    job = await only_job(server, server.alice)
    assert job.state is JobState.DONE
    sent = json.loads(job.request_json)
    # The Horde's own rule: {p} the prompt, {np} "###" and the negative prompt.
    assert sent["prompt"] == "pencil sketch of a lighthouse ### fog"
    assert sent["models"] == ["Deliberate"]
    assert (sent["params"]["steps"], sent["params"]["width"], sent["params"]["height"]) == (20, 768, 512)
    assert sent["params"]["sampler_name"] == "k_euler_a"
    assert "style" not in sent  # applied by the bot: the Horde's `style` would drop the member's options
    record = horde_sim.state.requests[job.horde_id or ""]
    assert record.models == ["Deliberate"]
    assert record.prompt == "pencil sketch of a lighthouse ### fog"
    fields = {field.name: field.value for field in message.embeds[0].fields}
    assert fields["Style"] == "sim-sketch"

    details = response_of(await server.alice.click(message, label="Details"))
    assert {field.name: field.value for field in details.embeds[0].fields}["Style"] == "sim-sketch"


async def test_what_the_member_sets_wins_over_the_style(server: Server) -> None:
    await server.alice.slash(
        server.channel,
        "imagine",
        prompt="a lighthouse",
        style="sim-sketch",
        steps=7,
        width=512,
        model="stable_diffusion",
    )

    sent = json.loads((await only_job(server, server.alice)).request_json)
    assert (sent["params"]["steps"], sent["params"]["width"], sent["params"]["height"]) == (7, 512, 512)
    assert sent["models"] == ["stable_diffusion"]
    assert sent["params"]["sampler_name"] == "k_euler_a"  # not set by the member: the style's


async def test_the_servers_default_style_applies_and_edit_keeps_it(server: Server) -> None:
    await configure(server, "style", "sim-photoreal")
    message = response_of(await server.alice.slash(server.channel, "imagine", prompt="a fox"))
    first = await only_job(server, server.alice)
    assert json.loads(first.request_json)["prompt"] == "a fox, photorealistic, sharp focus"

    shown = await server.alice.click(message, label="Edit")
    await server.alice.submit_modal(shown, {PROMPT_INPUT_ID: "a wolf"})

    edited = [job for job in await journal_of(server, server.alice) if job.id != first.id]
    assert json.loads(edited[0].request_json)["prompt"] == "a wolf, photorealistic, sharp focus"

    await server.bob.slash(server.channel, "imagine", prompt="a hare", style="None")  # opting out
    plain = await only_job(server, server.bob)
    assert json.loads(plain.request_json)["prompt"] == "a hare"
    assert json.loads(plain.params_json)["style"] is None


async def test_a_blocked_style_is_refused_privately_and_left_out_of_the_choices(
    server: Server, horde_sim: Simulator
) -> None:
    await configure(server, "blocked_styles", "sim-sketch")

    result = await server.alice.slash(server.channel, "imagine", prompt="x", style="SIM-SKETCH")

    assert result.ephemeral
    assert response_of(result).content == "The style “SIM-SKETCH” isn't allowed on this server."
    assert horde_sim.counters.calls("generate_async") == 0
    choices = await server.alice.autocomplete(server.channel, "imagine", "style", "", prompt="x")
    assert [choice["value"] for choice in choices] == ["sim-photoreal"]


async def test_only_allowed_styles_and_the_default_must_be_one(server: Server) -> None:
    await configure(server, "allowed_styles", "sim-photoreal")
    refused = await server.admin.slash(server.channel, "config set", setting="style", value="sim-sketch")
    assert "must be allowed and not blocked" in response_of(refused).content

    result = await server.alice.slash(server.channel, "imagine", prompt="x", style="sim-sketch")
    assert "isn't allowed on this server" in response_of(result).content


async def test_an_unknown_style_says_so(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="x", style="no-such-style")

    assert result.ephemeral
    assert "has no image style called “no-such-style”" in response_of(result).content
    assert horde_sim.counters.calls("generate_async") == 0


# -- the Advanced form -----------------------------------------------------------------------------


async def test_the_advanced_form_sets_clip_skip_seed_variation_and_sharing(
    server: Server, horde_sim: Simulator
) -> None:
    shown = await server.alice.slash(
        server.channel, "imagine", prompt="a fox", seed="100", count=3, advanced=True
    )
    assert shown.modal is not None
    assert horde_sim.counters.calls("generate_async") == 0  # nothing before the form is sent

    submitted = await server.alice.submit_modal(
        shown, {CLIP_SKIP_INPUT_ID: "2", SEED_VARIATION_INPUT_ID: "5", SHARE_INPUT_ID: "yes"}
    )

    job = await only_job(server, server.alice)
    assert job.state is JobState.DONE
    sent = json.loads(job.request_json)
    assert (sent["params"]["clip_skip"], sent["params"]["seed_variation"], sent["shared"]) == (2, 5, True)
    seeds = sorted(int(image["seed"]) for image in json.loads(job.result_json or "{}")["images"])
    assert seeds == [100, 105, 110]  # the Horde adds the variation for each image
    details = response_of(await server.alice.click(response_of(submitted), label="Details"))
    fields = {field.name: field.value for field in details.embeds[0].fields}
    assert (fields["CLIP skip"], fields["Seed variation"], fields["Shared with LAION"]) == ("2", "5", "asked")


async def test_the_advanced_form_refuses_bad_values_privately(server: Server, horde_sim: Simulator) -> None:
    shown = await server.alice.slash(server.channel, "imagine", prompt="a fox", advanced=True)

    submitted = await server.alice.submit_modal(
        shown, {CLIP_SKIP_INPUT_ID: "13", SEED_VARIATION_INPUT_ID: "x", SHARE_INPUT_ID: "maybe"}
    )

    assert submitted.ephemeral
    assert response_of(submitted).content.splitlines() == [
        "CLIP skip must be a whole number between 1 and 12.",
        "Seed variation must be a whole number between 1 and 1000.",
        "Share must be yes or no.",
    ]
    assert horde_sim.counters.calls("generate_async") == 0


async def test_options_are_checked_before_the_form_opens(server: Server) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox", steps=500, advanced=True)

    assert result.modal is None
    assert result.ephemeral
    assert "Steps must be between" in response_of(result).content
