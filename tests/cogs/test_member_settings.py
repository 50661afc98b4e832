"""/settings on SimCord, against the AI Horde simulator: the panel saves a member's defaults, /imagine
uses them (an option given wins, the server's limits bind), private and DM delivery, reset and
`/logout forget:True`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import simcord
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    only_job,
    response_of,
    settings,
)

from bot.services.delivery.targets import MOVED_FROM_DMS
from bot.services.jobs import JobsShuttingDownError
from bot.services.member_settings import MemberSettings, MemberSettingsService
from bot.storage import JobState
from cogs.member_settings import MODEL_ID, NEGATIVE_ID, STEPS_ID, STYLE_ID

if TYPE_CHECKING:
    from conftest import Server


async def panel(server: Server, member: simcord.MemberActor) -> simcord.ResponseMessage:
    shown = await member.slash(server.channel, "settings show")
    assert shown.ephemeral
    return response_of(shown)


async def saved(server: Server, member: simcord.MemberActor) -> MemberSettings:
    return await MemberSettingsService(server.bot.storage).get(member.id)


def request_of(job: Any) -> dict[str, Any]:
    body = json.loads(job.request_json)
    assert isinstance(body, dict)
    return body


def fields(message: simcord.ResponseMessage) -> dict[str, str]:
    return {field.name: field.value for field in message.embeds[0].fields}


async def fill_in(server: Server, member: simcord.MemberActor, **typed: str) -> simcord.InteractionResult:
    shown = await member.click(await panel(server, member), label="Model, steps, style, negative prompt…")
    assert shown.modal is not None
    return await member.submit_modal(shown, typed)


async def test_the_panel_saves_each_default_and_shows_it(server: Server) -> None:
    message = await panel(server, server.alice)
    assert fields(message)["Count"] == "server default (1)"

    await server.alice.select(message, ["3"], custom_id="member-settings:count")
    await server.alice.select(message, ["aspect:landscape"], custom_id="member-settings:size")
    await server.alice.select(message, ["k_heun"], custom_id="member-settings:sampler")
    await server.alice.select(message, ["private"], custom_id="member-settings:delivery")
    submitted = await fill_in(
        server, server.alice, **{MODEL_ID: "Deliberate", STEPS_ID: "12", NEGATIVE_ID: "blur"}
    )

    assert await saved(server, server.alice) == MemberSettings(
        model="Deliberate",
        aspect="landscape",
        steps=12,
        sampler="k_heun",
        negative_prompt="blur",
        n=3,
        private=True,
    )
    shown = fields(response_of(submitted))
    assert (shown["Count"], shown["Steps"], shown["Private results"]) == ("3", "12", "yes")
    assert await saved(server, server.bob) == MemberSettings()  # per member


async def test_imagine_takes_the_members_defaults_and_an_option_given_wins(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(
        server.alice.id,
        MemberSettings(steps=12, n=2, sampler="k_heun", negative_prompt="blur", aspect="landscape"),
    )

    await server.alice.slash(server.channel, "imagine", prompt="a fox", count=1)

    job = await only_job(server, server.alice)
    request = request_of(job)
    assert job.state is JobState.DONE
    params = request["params"]
    assert (params["steps"], params["n"], params["sampler_name"]) == (12, 1, "k_heun")
    assert params["width"] > params["height"]  # landscape
    assert request["prompt"] == "a fox ### blur"


async def test_the_servers_negative_prefix_stays_in_front_of_the_members(server: Server) -> None:
    await server.bot.guild_settings.set(server.guild.id, "negative_prompt", "lowres", server.admin.id)
    await MemberSettingsService(server.bot.storage).save(
        server.alice.id, MemberSettings(negative_prompt="blur")
    )

    await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert request_of(await only_job(server, server.alice))["prompt"] == "a fox ### lowres, blur"


async def test_a_default_the_server_now_refuses_is_named_and_nothing_starts(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(steps=40))
    await server.bot.guild_settings.set(server.guild.id, "steps", "10", server.admin.id)
    await server.bot.guild_settings.set(server.guild.id, "max_steps", "20", server.admin.id)

    refused = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert refused.ephemeral
    text = response_of(refused).content
    assert "Your default of 40 steps is above this server's 20." in text
    assert "/settings show" in text
    assert await server.bot.storage.jobs.list_recent(server.alice.id) == []

    await server.alice.slash(server.channel, "imagine", prompt="a fox", steps=10)  # the option wins
    assert request_of(await only_job(server, server.alice))["params"]["steps"] == 10


async def test_a_default_style_applies_over_the_servers_and_a_style_given_wins(server: Server) -> None:
    await server.bot.guild_settings.set(server.guild.id, "style", "sim-photoreal", server.admin.id)
    await fill_in(server, server.alice, **{STYLE_ID: "sim-sketch"})
    assert await saved(server, server.alice) == MemberSettings(style="sim-sketch")
    assert fields(await panel(server, server.alice))["Style"] == "sim-sketch"

    await server.alice.slash(server.channel, "imagine", prompt="a fox")
    assert request_of(await only_job(server, server.alice))["prompt"] == "pencil sketch of a fox"

    await server.alice.slash(server.channel, "imagine", prompt="a hare", style="none")
    jobs = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert {request_of(job)["prompt"] for job in jobs} == {"pencil sketch of a fox", "a hare"}


async def test_a_default_style_the_server_blocks_is_named_and_not_saved(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(style="sim-sketch"))
    await server.bot.guild_settings.set(server.guild.id, "blocked_styles", "sim-sketch", server.admin.id)

    refused = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert refused.ephemeral
    assert "Your default style “sim-sketch” isn't allowed on this server." in response_of(refused).content
    assert await server.bot.storage.jobs.list_recent(server.alice.id) == []

    refused = await fill_in(server, server.bob, **{STYLE_ID: "SIM-SKETCH"})
    assert refused.ephemeral
    assert "isn't allowed on this server" in response_of(refused).content
    assert await saved(server, server.bob) == MemberSettings()


async def test_a_default_above_the_servers_limit_is_not_saved(server: Server) -> None:
    message = await panel(server, server.alice)

    refused = await server.alice.select(message, ["10"], custom_id="member-settings:count")

    assert refused.ephemeral
    assert "Your default count of 10 is above this server's 4." in response_of(refused).content
    assert await saved(server, server.alice) == MemberSettings()


async def test_typed_steps_that_are_not_a_number_are_refused(server: Server) -> None:
    refused = await fill_in(server, server.alice, **{STEPS_ID: "ten"})

    assert refused.ephemeral
    assert "Steps must be a whole number" in response_of(refused).content
    assert await saved(server, server.alice) == MemberSettings()


async def test_private_results_answer_privately_where_the_server_shows_them_publicly(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(private=True))

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert result.ephemeral
    assert "✅ **Done**" in response_of(result).content
    assert (await only_job(server, server.alice)).message_id is None  # no channel message
    assert server.channel.history(viewer=server.bob) == []


async def test_results_by_dm_come_to_the_members_dms(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(dm=True))

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    dm = server.alice.user.dm_channel.last_message
    assert dm is not None
    assert result.ephemeral
    assert "in your DMs" in response_of(result).content
    assert dm.content.startswith("✅ **Done**")
    assert len(dm.attachments) == 1
    job = await only_job(server, server.alice)
    assert (job.channel_id, job.message_id, job.guild_id) == (dm.channel.id, dm.id, server.guild.id)
    assert server.channel.history(viewer=server.bob) == []


async def test_closed_dms_are_said_plainly_and_the_result_comes_privately(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(dm=True))
    server.env.inject_error(
        "POST",
        f"/channels/{server.alice.user.dm_channel.id}/messages",
        status=403,
        code=50007,
        message="Cannot send messages to this user",
    )

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert result.ephemeral
    assert "✅ **Done**" in response_of(result).content
    assert len(response_of(result).attachments) == 1
    [notice] = result.followups
    assert "I can't send you DMs" in notice.content
    assert (await only_job(server, server.alice)).state is JobState.DONE


async def test_dms_closing_mid_job_bring_the_result_back_to_the_private_reply(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(dm=True))
    dm_channel = server.alice.user.dm_channel
    server.env.inject_error(  # the DM was sent; every later edit of it is refused
        "PATCH", f"/channels/{dm_channel.id}/messages/*", status=403, code=50007, times=None
    )

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    reply = response_of(result)
    assert result.ephemeral
    assert reply.content.startswith("✅ **Done**")
    assert reply.content.endswith(MOVED_FROM_DMS)
    assert len(reply.attachments) == 1
    assert "Rerun" in [button.get("label") for row in reply.components for button in row["components"]]
    job = await only_job(server, server.alice)
    assert (job.state, job.delivery) == (JobState.DONE, "delivered")
    # A restart goes on in the channel (a private reply can't be edited through it).
    assert (job.channel_id, job.message_id) == (server.channel.id, None)
    assert server.channel.history(viewer=server.bob) == []


async def test_settings_reset_forgets_them(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(steps=12))

    reset = await server.alice.slash(server.channel, "settings reset")
    again = await server.alice.slash(server.channel, "settings reset")

    assert "reset" in response_of(reset).content
    assert "no saved /settings" in response_of(again).content
    assert await server.bot.storage.member_settings.get(server.alice.id) is None


async def test_logout_forget_deletes_the_settings_and_plain_logout_keeps_them(server: Server) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(steps=12))

    await server.alice.slash(server.channel, "logout")
    assert await saved(server, server.alice) == MemberSettings(steps=12)

    forgot = await server.alice.slash(server.channel, "logout", forget=True)

    assert "Your /settings were deleted too." in response_of(forgot).content
    assert await server.bot.storage.member_settings.get(server.alice.id) is None


async def test_a_dm_job_that_cannot_start_leaves_no_dm_behind(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    await MemberSettingsService(server.bot.storage).save(server.alice.id, MemberSettings(dm=True))

    async def refuse(*args: object, **kwargs: object) -> None:
        raise JobsShuttingDownError()

    monkeypatch.setattr(server.bot.jobs, "start_job", refuse)

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")

    assert result.ephemeral
    assert server.alice.user.dm_channel.history(viewer=server.alice) == []
    assert any("restarting" in followup.content for followup in result.followups)
