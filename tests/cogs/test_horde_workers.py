"""/workers and /team on SimCord, against the AI Horde simulator's workers and teams; and every
real worker of a production capture (``tests/fixtures/horde/``) drawn within Discord's limits."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import discord
import pytest
import simcord
from test_imagine_support import response_of

from bot.errors import HordeUnavailableError
from bot.horde import AllWorkersDetailsResponse, WorkerDetailsResponse
from bot.services.delivery.limits import fit_embed
from bot.services.horde_workers import WorkerSearch
from cogs.horde_workers import WorkerPager, WorkersPager, worker_embed, worker_line
from horde_simulator import Fault, Simulator
from horde_simulator._records import SimWorker
from horde_simulator._teams import form_team

if TYPE_CHECKING:
    from conftest import Server


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "horde"


def real_workers(name: str) -> list[WorkerDetailsResponse]:
    return AllWorkersDetailsResponse.model_validate_json((FIXTURES / name).read_text()).root


def assert_within_embed_limits(embed: discord.Embed) -> None:
    """What Discord accepts in one embed: nothing that ``fit_embed`` would have to cut."""

    def shown(embed: discord.Embed) -> dict[str, object]:
        return {key: value for key, value in copy.deepcopy(embed.to_dict()).items() if value != []}

    before = shown(embed)
    assert shown(fit_embed(embed)) == before


def embed_of(result: simcord.InteractionResult) -> discord.Embed:
    assert result.ephemeral
    [embed] = response_of(result).embeds
    return embed


def fields(embed: discord.Embed) -> dict[str | None, str | None]:
    return {field.name: field.value for field in embed.fields}


def footer(embed: discord.Embed) -> str:
    return embed.footer.text or ""


def error_of(result: simcord.InteractionResult) -> str:
    assert result.ephemeral
    message = response_of(result)
    assert not message.embeds
    return message.content or ""


@pytest.fixture(autouse=True)
def teams(horde_sim: Simulator) -> None:
    form_team(horde_sim.state, "Sim Dreamers", ["Sim Dreamer 1", "Sim Dreamer 2"])
    form_team(horde_sim.state, "Sim Scribes", ["Sim Scribe"])


def add_workers(horde_sim: Simulator, count: int) -> None:
    for index in range(count):
        worker = SimWorker(f"extra-{index:02d}", f"Extra Painter {index:02d}", "image", horde_sim.state.now())
        horde_sim.state.workers.append(worker)


# -- /workers -----------------------------------------------------------------------------------


async def test_workers_lists_every_worker_online(server: Server, horde_sim: Simulator) -> None:
    embed = embed_of(await server.alice.slash(server.channel, "workers"))

    assert embed.title == "Workers online"
    lines = (embed.description or "").splitlines()
    assert [line.split("**")[1] for line in lines] == [
        "Sim Alchemist",
        "Sim Dreamer 1",
        "Sim Dreamer 2",
        "Sim Scribe",
    ]
    assert "🟢 **Sim Scribe** · text · " in lines[3]
    assert footer(embed).startswith("Page 1/1 · 4 workers")
    assert horde_sim.counters.calls("workers") == 1


async def test_workers_filters_by_kind(server: Server) -> None:
    embed = embed_of(await server.alice.slash(server.channel, "workers", type="interrogation"))

    assert embed.title == "Alchemy workers online"
    assert (embed.description or "").startswith("🟢 **Sim Alchemist** · alchemy")
    assert len((embed.description or "").splitlines()) == 1


async def test_part_of_a_name_shows_that_workers_details(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.advertised_text_models = ("koboldcpp/SimLlama-8B", "koboldcpp/Tiny_Model")

    embed = embed_of(await server.alice.slash(server.channel, "workers", name="SCRIBE"))

    assert embed.title == "🟢 Sim Scribe"
    shown = fields(embed)
    assert shown["Kind"] == "text"
    assert "tokens per second" in str(shown["Speed"])
    assert shown["Trusted"] == "yes"
    assert shown["Maintenance"] == "off"
    assert shown["Team"] == "Sim Scribes"
    assert shown["Tokens"] == "512 out, 8,192 context"
    # Owner-chosen names are escaped: the underscore shows, it does not start italics.
    assert shown["Models (2)"] == "• koboldcpp/SimLlama-8B\n• koboldcpp/Tiny\\_Model"
    assert {"Uptime", "Kudos", "Requests done"} <= set(shown)


async def test_a_worker_with_many_models_pages_through_them(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.advertised_image_models = tuple(f"model-{index:02d}" for index in range(30))

    result = await server.alice.slash(server.channel, "workers", name="sim dreamer 1")
    assert "Models (1–20 of 30)" in fields(embed_of(result))

    await server.alice.click(response_of(result), label="Next")
    models = fields(response_of(result).embeds[0])["Models (21–30 of 30)"]
    assert str(models).splitlines()[0] == "• model-20"


async def test_a_name_several_workers_share_lists_them(server: Server) -> None:
    embed = embed_of(await server.alice.slash(server.channel, "workers", name="dreamer"))

    assert embed.title == "Workers matching “dreamer”"
    assert len((embed.description or "").splitlines()) == 2


async def test_an_unknown_worker_is_a_short_private_answer(server: Server) -> None:
    unknown = await server.alice.slash(server.channel, "workers", name="*nobody*")
    wrong_kind = await server.alice.slash(server.channel, "workers", type="image", name="scribe")

    assert error_of(unknown) == (
        "No worker online is called “\\*nobody\\*”. /workers lists the workers online now."
    )
    assert error_of(wrong_kind).startswith("No image worker online is called “scribe”.")


async def test_a_long_list_pages(server: Server, horde_sim: Simulator) -> None:
    add_workers(horde_sim, 8)  # 12 in all: two pages of 10

    result = await server.alice.slash(server.channel, "workers")
    message = response_of(result)
    assert footer(message.embeds[0]).startswith("Page 1/2 · 12 workers")

    await server.alice.click(message, label="Next")
    second = response_of(result).embeds[0]
    assert footer(second).startswith("Page 2/2")
    assert len((second.description or "").splitlines()) == 2

    await server.alice.click(message, label="Previous")
    assert footer(response_of(result).embeds[0]).startswith("Page 1/2")
    assert horde_sim.counters.calls("workers") == 1  # pages come from the one answer


async def test_workers_and_team_work_in_a_dm(server: Server) -> None:
    workers = await server.alice.user.slash("workers", name="alchemist")
    team = await server.alice.user.slash("team", name="scribes")

    assert embed_of(workers).title == "🟢 Sim Alchemist"
    assert fields(embed_of(workers))["Team"] == "none"
    assert embed_of(team).title == "Sim Scribes"


async def test_a_horde_failure_says_the_horde_is_unavailable(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.faults.script("workers", Fault.http(503), times=10)
    horde_sim.state.faults.script("teams", Fault.http(503), times=10)

    workers = await server.alice.slash(server.channel, "workers")
    team = await server.alice.slash(server.channel, "team", name="dreamers")

    assert error_of(workers) == HordeUnavailableError.default_message
    assert error_of(team) == HordeUnavailableError.default_message


# -- /team --------------------------------------------------------------------------------------


async def test_team_by_part_of_its_name(server: Server, horde_sim: Simulator) -> None:
    embed = embed_of(await server.alice.slash(server.channel, "team", name="dream"))

    assert embed.title == "Sim Dreamers"
    shown = fields(embed)
    assert shown["Workers"] == "2 (2 online)"
    assert shown["Created by"] == "db0#1"
    assert shown["Workers (2)"] == "• 🟢 Sim Dreamer 1\n• 🟢 Sim Dreamer 2"
    assert "×2" in str(shown["Models (3)"])
    assert horde_sim.counters.calls("teams") == 1


@pytest.mark.parametrize(
    ("typed", "answer"),
    [
        ("sim", "Several teams match “sim”: “Sim Dreamers”, “Sim Scribes”. Type more of the name."),
        ("zzz", "No team is called “zzz”. /team without a name lists every team."),
    ],
)
async def test_a_name_that_points_at_no_single_team(server: Server, typed: str, answer: str) -> None:
    assert error_of(await server.alice.slash(server.channel, "team", name=typed)) == answer


async def test_team_without_a_name_lists_every_team(server: Server) -> None:
    embed = embed_of(await server.alice.slash(server.channel, "team"))

    assert embed.title == "AI Horde teams"
    assert (embed.description or "").splitlines() == [
        "**Sim Dreamers** · 2 workers · 0 kudos",
        "**Sim Scribes** · 1 worker · 0 kudos",
    ]


# -- real workers -------------------------------------------------------------------------------


def test_every_real_worker_and_page_fits_in_an_embed() -> None:
    workers = real_workers("workers_get_200_real.json")
    busiest = max(workers, key=lambda worker: len(worker.models))
    assert len(busiest.models) == 227  # the capture has a worker with many models

    for worker in workers:
        pager = WorkerPager(worker, owner_id=1)
        for page in range(pager.page_count()):
            assert_within_embed_limits(worker_embed(worker, page=page))
    listing = WorkersPager(WorkerSearch(kind=None, workers=tuple(workers)), owner_id=1, name=None)
    assert listing.page_count() == 12
    for page in range(listing.page_count()):
        listing.page = page
        assert_within_embed_limits(listing.embed())
    assert listing.page_count() * 10 >= len(workers)


def test_a_real_worker_of_each_kind_shows_what_the_horde_sent() -> None:
    image, text, alchemist = real_workers("real/workers_200_three_kinds.json")

    image_fields = fields(worker_embed(image))
    assert image_fields["Kudos"] == "44 (44 generating)"  # kudos_details.uptime is null
    assert image_fields["Can do"] == "img2img, inpainting, post-processing, LoRA"  # controlnet false
    assert image_fields["Largest image"] == "2048×2048"
    assert fields(worker_embed(text))["Tokens"] == "4,096 out, 32,768 context"
    alchemy_fields = fields(worker_embed(alchemist))
    assert alchemy_fields["Kind"] == "alchemy"
    assert "Models (0)" not in alchemy_fields
    assert alchemy_fields["Forms"]


def test_a_worker_in_maintenance_says_so() -> None:
    raw = json.loads((FIXTURES / "workers_get_200_real.json").read_text())[0]
    worker = WorkerDetailsResponse.model_validate({**raw, "maintenance_mode": True, "trusted": False})

    shown = fields(worker_embed(worker))
    assert (shown["Maintenance"], shown["Trusted"]) == ("🔧 on", "no")
    assert "🔧 maintenance" in worker_line(worker)
