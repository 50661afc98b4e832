"""/jobs list, /jobs show and the ✉️ reaction on SimCord, against the AI Horde simulator."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import PIL.Image
import pytest
import simcord
from test_alchemy import png
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    custom_ids,
    only_job,
    response_of,
    settings,
)

from bot.services.member_settings import MemberSettings, MemberSettingsService
from bot.services.reposts import EXPIRED
from cogs.member_jobs import DM_SENT_NOWHERE
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    import discord
    from conftest import Server


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05))


async def imagine(
    server: Server, member: simcord.MemberActor, prompt: str, **options: object
) -> discord.Message:
    message = response_of(await member.slash(server.channel, "imagine", prompt=prompt, **options)).message
    assert message is not None
    return message


def section(message: simcord.ResponseMessage, header: str) -> str:
    """The lines under ``header`` (``Running`` or ``Finished``) of a /jobs list."""
    for part in (message.embeds[0].description or "").split("\n\n"):
        first, _, rest = part.partition("\n")
        if first.startswith(f"**{header}**"):
            return rest
    return ""


# -- /jobs list ------------------------------------------------------------------------------------


async def test_jobs_lists_the_members_finished_jobs_with_links_to_their_messages(server: Server) -> None:
    first = await imagine(server, server.alice, "a fox")
    second = await imagine(server, server.alice, "a wolf")
    await imagine(server, server.bob, "a bear")

    listed = await server.alice.slash(server.channel, "jobs list")

    assert listed.ephemeral
    lines = section(response_of(listed), "Finished").splitlines()
    assert len(lines) == 2
    assert "a wolf" in lines[0]
    assert second.jump_url in lines[0]
    assert "a fox" in lines[1]
    assert first.jump_url in lines[1]
    assert "✅ done" in lines[0]
    assert "a bear" not in section(response_of(listed), "Finished")


async def test_jobs_shows_only_the_last_ten_finished(server: Server) -> None:
    for index in range(11):
        await imagine(server, server.alice, f"prompt number {index}")

    lines = section(
        response_of(await server.alice.slash(server.channel, "jobs list")), "Finished"
    ).splitlines()

    assert len(lines) == 10
    assert "prompt number 10" in lines[0]
    assert not any("prompt number 0 " in line or line.endswith("prompt number 0") for line in lines)


# -- /jobs show ------------------------------------------------------------------------------------


async def test_jobs_show_posts_the_result_again_with_its_images_and_buttons(server: Server) -> None:
    original = await imagine(server, server.alice, "a fox", count=2)
    job = await only_job(server, server.alice)

    choices = await server.alice.autocomplete(server.channel, "jobs show", "job", "fox")
    assert [choice["value"] for choice in choices] == [job.id]

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    posted = server.channel.last_message
    assert posted is not None
    assert posted.id != original.id
    assert shown.ephemeral
    assert posted.jump_url in (response_of(shown).content or "")
    assert len(posted.attachments) == 2
    assert [await a.read() for a in posted.attachments] == [await a.read() for a in original.attachments]
    assert posted.content.startswith("✅ **Done**")
    assert f"imagine:rerun:{job.id}" in custom_ids(posted)
    assert posted.embeds[0].description == "a fox"


async def test_jobs_show_refuses_another_members_job(server: Server) -> None:
    await imagine(server, server.bob, "a bear")
    job = await only_job(server, server.bob)

    refused = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert refused.ephemeral
    assert "among yours" in (response_of(refused).content or "")
    assert await server.alice.autocomplete(server.channel, "jobs show", "job", "") == []


async def test_a_private_result_is_shown_again_privately_from_the_horde(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(private=True))
    await server.alice.slash(server.channel, "imagine", prompt="a secret fox")
    job = await only_job(server, server.alice)
    assert job.message_id is None

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert shown.ephemeral
    copy = response_of(shown)  # the first followup takes the deferred reply's place
    assert len(copy.attachments) == 1
    assert "✅ **Done**" in copy.content
    assert server.channel.history(viewer=server.bob) == []


async def test_expired_horde_images_are_said_plainly(server: Server, horde_sim: Simulator) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(private=True))
    await server.alice.slash(server.channel, "imagine", prompt="a secret fox")
    job = await only_job(server, server.alice)
    assert job.horde_id is not None
    horde_sim.state.requests.pop(job.horde_id)  # the Horde forgot it

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert shown.ephemeral
    assert response_of(shown).content == EXPIRED


async def test_a_private_text_is_shown_again_from_the_journal(server: Server, horde_sim: Simulator) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(private=True))
    written = response_of(await server.alice.slash(server.channel, "write", prompt="Once upon a time"))
    job = await only_job(server, server.alice)
    horde_sim.state.requests.clear()  # the Horde forgot it: the journal still has the text

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert shown.ephemeral
    copy = response_of(shown)
    assert copy.content.startswith("**Once upon a time**\n-# any text model\n✅ **Done**")
    assert copy.embeds[0].description == written.embeds[0].description
    assert f"write:continue:{job.id}" in custom_ids(copy)


async def test_a_private_caption_and_upscale_are_shown_again(server: Server, horde_sim: Simulator) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(private=True))
    for operation in ("caption", "RealESRGAN_x4plus"):
        await server.alice.slash(server.channel, "alchemy", image=("cat.png", png()), operation=operation)
    upscale, caption = await server.bot.storage.jobs.list_recent(server.alice.id, limit=2)

    shown_caption = response_of(await server.alice.slash(server.channel, "jobs show", job=caption.id))
    shown_upscale = response_of(await server.alice.slash(server.channel, "jobs show", job=upscale.id))
    horde_sim.state.interrogations.clear()  # the Horde forgot the upscale
    forgotten = response_of(await server.alice.slash(server.channel, "jobs show", job=upscale.id))

    assert shown_caption.embeds[0].description == "a landscape red image, 64x48 pixels"
    [attachment] = shown_upscale.attachments
    with PIL.Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (256, 192)
    assert forgotten.content == EXPIRED


# -- ✉️ --------------------------------------------------------------------------------------------


async def test_the_envelope_reaction_dms_the_reacting_member_a_copy_with_its_buttons(server: Server) -> None:
    original = await imagine(server, server.alice, "a fox")
    job = await only_job(server, server.alice)

    await server.bob.react(original, "✉️")

    dm = server.bob.user.dm_channel.last_message
    assert dm is not None
    assert dm.content.startswith("✅ **Done**")
    assert len(dm.attachments) == 1
    assert f"imagine:rerun:{job.id}" in custom_ids(dm)
    assert original.jump_url in dm.content
    assert server.alice.user.dm_channel.last_message is None


async def test_closed_dms_get_a_short_notice_that_goes_away(server: Server) -> None:
    original = await imagine(server, server.alice, "a fox")
    server.env.inject_error(
        "POST",
        f"/channels/{server.bob.user.dm_channel.id}/messages",
        status=403,
        code=50007,
        message="Cannot send messages to this user",
    )

    await server.bob.react(original, "✉️")

    notice = server.channel.last_message
    assert notice is not None
    assert notice.id != original.id
    assert notice.content == f"<@{server.bob.id}> {DM_SENT_NOWHERE}"
    await server.env.advance_time(30)
    await asyncio.sleep(0)
    assert server.channel.last_message is not None
    assert server.channel.last_message.id == original.id


async def test_jobs_show_is_private_where_the_server_shows_results_privately(server: Server) -> None:
    await imagine(server, server.alice, "a fox")
    job = await only_job(server, server.alice)
    await server.bot.guild_settings.set(server.guild.id, "visibility", "private", server.admin.id)
    before = server.channel.last_message

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert shown.ephemeral
    assert len(response_of(shown).attachments) == 1
    assert server.channel.last_message == before


async def test_an_nsfw_result_is_shown_again_only_privately_outside_an_age_restricted_channel(
    server: Server,
) -> None:
    await server.alice.slash(server.nsfw_channel, "imagine", prompt="a fox")
    job = await only_job(server, server.alice)
    before = server.channel.last_message

    shown = await server.alice.slash(server.channel, "jobs show", job=job.id)

    assert shown.ephemeral
    assert len(response_of(shown).attachments) == 1
    assert server.channel.last_message == before


async def test_a_text_result_is_shown_again_with_its_continue_button(server: Server) -> None:
    original = response_of(
        await server.alice.slash(server.channel, "write", prompt="Once upon a time")
    ).message
    assert original is not None
    job = await only_job(server, server.alice)

    await server.alice.slash(server.channel, "jobs show", job=job.id)

    posted = server.channel.last_message
    assert posted is not None
    assert posted.id != original.id
    assert posted.content.startswith(original.content)
    assert f"write:continue:{job.id}" in custom_ids(posted)


async def test_the_envelope_does_nothing_where_the_server_made_it_the_rerun_emoji(server: Server) -> None:
    await server.bot.guild_settings.set(server.guild.id, "rerun_emoji", "✉️", server.admin.id)
    original = await imagine(server, server.alice, "a fox")

    await server.bob.react(original, "✉️")

    assert server.bob.user.dm_channel.last_message is None
    assert len(await server.bot.storage.jobs.list_recent(server.bob.id)) == 1  # the rerun it means here
